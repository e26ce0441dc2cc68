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


CALLEE = """
from numba import njit

@njit(cache=True)
def bump(x):
    return x + {step}
"""

CALLER = """
from numba import njit
from kpkg.callee import bump

@njit(cache=True)
def run(x):
    return bump(x) * 10
"""

KEYED = """
import os, sys
from pathlib import Path
from backtest import source_keyed_numba_cache
os.environ.pop("NUMBA_CACHE_DIR")  # set by backtest's import for its own kernels
source_keyed_numba_cache(Path(sys.argv[1]) / "kpkg", base=Path(sys.argv[1]) / "keyed")
from kpkg.caller import run
print(run(1.0))
"""


def _kernel_run(folder: Path, script: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    environ.update(PYTHONPATH=str(folder), **env)
    out = subprocess.run(
        [sys.executable, "-c", script, str(folder)],
        capture_output=True, text=True, timeout=300, env=environ,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_a_kernel_changed_in_another_file_is_compiled_again_not_loaded_stale(
    tmp_path: Path,
) -> None:
    """numba checks a cached caller against its own file only; the cache keyed by the
    sources (what ``import backtest`` does for its own kernels) sees the callee change."""
    package = tmp_path / "kpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "caller.py").write_text(CALLER)
    plain = "from kpkg.caller import run; print(run(1.0))"
    for step, expected in ((1, "20.0"), (2, "30.0")):
        (package / "callee.py").write_text(CALLEE.format(step=step))
        assert _kernel_run(tmp_path, KEYED) == expected  # compiled again after the change
        plain_out = _kernel_run(tmp_path, plain, NUMBA_CACHE_DIR=str(tmp_path / "plain"))
        if step == 1:
            assert plain_out == "20.0"
    # the hazard the key removes: numba's own cache kept the caller's old machine code
    assert plain_out == "20.0"
    assert len(list((tmp_path / "keyed").iterdir())) == 2  # one folder per source version


def test_import_backtest_keys_the_kernel_cache_unless_numba_cache_dir_is_set(
    tmp_path: Path,
) -> None:
    show = "import os, backtest; print(os.environ['NUMBA_CACHE_DIR'])"
    keyed = _kernel_run(tmp_path, show, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    assert Path(keyed).parent == tmp_path / "xdg" / "backtest" / "numba"
    assert _kernel_run(tmp_path, show, NUMBA_CACHE_DIR=str(tmp_path / "mine")) == str(
        tmp_path / "mine"
    )
