"""``hydra/launcher=rq``: each job's folder holds its log, with a failing job's traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rq")

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.redis
@pytest.mark.slow
def test_each_rq_sweep_job_folder_holds_its_log_and_a_failures_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "backtest", "-m", "hydra/launcher=rq", "queue.n_workers=1",
         "+experiment=sma_cross", "data.n_bars=300", "tracking=none", "summary=false",
         "figures=false", "report=false", "hydra.sweep.dir=sweep", "strategy.fast=5,-1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode != 0, done.stderr[-2000:]
    sweep = tmp_path / "sweep"
    # the failing job: its log as the basic launcher writes it (Hydra's job log name)
    failed = (sweep / "1" / "backtest.log").read_text()
    assert "job failed: ConfigError: strategy parameter 'fast' must be >= 1, got -1" in failed
    assert "Traceback (most recent call last)" in failed
    assert "raise ConfigError(" in failed  # the frames themselves, not only the last line
    # the finished job: its log lines
    finished = (sweep / "0" / "backtest.log").read_text()
    assert "result written" in finished and "Traceback" not in finished
