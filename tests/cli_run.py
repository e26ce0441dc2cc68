"""Run the ``backtest`` command as a user would, in a folder of the test's, without tracking."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m backtest ARGS tracking=none figures=false`` in ``cwd`` (this checkout's package).

    The test process's ``MLFLOW_TRACKING_URI`` is not passed on.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "backtest", *args, "tracking=none", "figures=false"],
        capture_output=True, text=True, timeout=600, cwd=cwd, env=env,
    )  # fmt: skip
