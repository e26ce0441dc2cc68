"""Run the ``backtest`` command as a user would, in a folder of the test's, with this checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def backtest_command(
    *args: str,
    cwd: Path,
    env: Mapping[str, str | None] | None = None,
    path: Sequence[Path | str] = (),
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """``python -m backtest ARGS`` in ``cwd``, this checkout's package first on the path.

    The environment is the test process's with ``env`` on top (``None`` unsets a name);
    ``path`` goes on ``PYTHONPATH`` before this checkout. ``MLFLOW_TRACKING_URI`` and
    ``HYDRA_FULL_ERROR`` are not passed on unless ``env`` sets them: a run neither logs to
    the developer's server nor prints Hydra's full traces where a user sees one line.
    """
    full = {
        k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")
    }
    full["PYTHONPATH"] = os.pathsep.join([*map(str, path), str(ROOT)])
    for name, value in (env or {}).items():
        if value is None:
            full.pop(name, None)
        else:
            full[name] = value
    return subprocess.run(
        [sys.executable, "-m", "backtest", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd, env=full, check=False,
    )  # fmt: skip


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m backtest ARGS tracking=none figures=false`` in ``cwd``."""
    return backtest_command(*args, "tracking=none", "figures=false", cwd=cwd)
