"""A compilation is announced once, and only when numba really compiles (a cache miss)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from backtest.engine._compiling import NOTICE

KERNELS = """
from numba import njit

@njit(cache=True)
def double(x):
    return 2 * x

@njit(cache=True)
def triple(x):
    return 3 * x
"""

RUN = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
import backtest.engine
import kernels
print(kernels.double(2.0) + kernels.triple(1.0))
"""


def _run(folder: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(folder / "cache"), "PYTHONPATH": str(folder)}
    return subprocess.run(
        [sys.executable, "-c", RUN], capture_output=True, text=True, timeout=300, env=env
    )


def test_the_first_compilation_is_announced_once_and_a_cached_run_says_nothing(
    tmp_path: Path,
) -> None:
    (tmp_path / "kernels.py").write_text(KERNELS)
    cold = _run(tmp_path)
    assert cold.returncode == 0, cold.stderr[-2000:]
    assert cold.stdout.strip() == "7.0"
    assert cold.stderr.count(NOTICE) == 1  # two kernels compiled, one notice
    warm = _run(tmp_path)
    assert warm.returncode == 0, warm.stderr[-2000:]
    assert NOTICE not in warm.stderr  # loaded from the cache: nothing to wait for
