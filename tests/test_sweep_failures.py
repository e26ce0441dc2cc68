"""A sweep with a failed job still reports: summary, traceback in the job's log, exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMON = [
    "+experiment=sma_cross",
    "data.n_bars=300",
    "tracking=none",
    "summary=false",
    "figures=false",
    "hydra.sweep.dir=sweep",
]


def multirun(cwd: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backtest", "-m", *COMMON, *overrides],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_a_sweep_with_a_failed_job_writes_its_summary_and_the_jobs_traceback(
    tmp_path: Path,
) -> None:
    done = multirun(tmp_path, "strategy.fast=5,10,-1,20,30")
    assert done.returncode != 0
    sweep = tmp_path / "sweep"
    table = pd.read_csv(sweep / "summary.csv").set_index("job").sort_index()
    assert list(table.index) == [0, 1, 2, 3, 4]
    assert list(table["status"]) == ["ok", "ok", "failed", "ok", "ok"]
    assert table.loc[2, "overrides"].endswith("strategy.fast=-1")
    assert "ConfigError" in table.loc[2, "error"] and "'fast'" in table.loc[2, "error"]
    job_log = (sweep / "2" / "backtest.log").read_text()
    assert "Traceback (most recent call last)" in job_log
    assert "must be >= 1, got -1" in job_log
    assert (sweep / "summary.parquet").is_file()


@pytest.mark.slow
def test_optuna_sweeper_stopped_by_max_failures_exits_non_zero_naming_the_trials(
    tmp_path: Path,
) -> None:
    done = multirun(
        tmp_path,
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.seed=1",
        "hydra.sweeper.max_failures=2",
        "strategy.fast=choice(-1,-2)",
    )
    assert done.returncode != 0
    err = done.stderr
    assert "stopped after 2 failed trial(s)" in err and "max_failures=2" in err
    named = [line for line in err.splitlines() if line.startswith("  trial ")]
    assert len(named) == 2 and all("strategy.fast=-" in line for line in named)
    table = pd.read_csv(tmp_path / "sweep" / "summary.csv")
    assert len(table) == 2 and set(table["status"]) == {"failed"}
