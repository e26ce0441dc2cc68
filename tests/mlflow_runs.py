"""A sqlite MLflow store per test module, a fresh experiment per test, run folders to log.

A test module takes a fixture by name: ``store = mlflow_runs.store``.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from backtest import results


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite MLflow store for the module (creating its tables takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


@pytest.fixture
def experiment() -> str:
    """A new experiment name, so a test sees only its own runs in the module's store."""
    return f"exp-{uuid.uuid4().hex[:10]}"


def write_run(
    run_dir: Path, experiment: str, uri: str, sharpe: float = 1.0, timeout_s: float = 2.0
) -> Path:
    """A complete backtest run folder whose config tracks to ``uri`` (a run that could not log)."""
    record = {
        "task": "backtest",
        "job_id": f"job-{uuid.uuid4().hex[:8]}",
        "name": experiment,
        "params": {"fast": 10},
        "metrics": {"sharpe_ratio": sharpe},
        "seed": 1,
        "config_hash": "a" * 64,
        "data_fingerprint": "b" * 64,
        "version": "0.1.0",
        "started_at": "2026-01-01T00:00:00.000+00:00",
        "ended_at": "2026-01-01T00:00:01.000+00:00",
    }
    tracking = {"enabled": True, "uri": uri, "timeout_s": timeout_s}
    config = {"name": experiment, "tracking": tracking}
    results.write_result(run_dir, record, config_yaml=yaml.safe_dump(config))
    return run_dir


def write_result_dir(
    run_dir: Path,
    record: dict[str, Any],
    config: dict[str, Any],
    tables: dict[str, pd.DataFrame] | None = None,
) -> Path:
    """A run directory written by the real writer, as a task would leave it.

    ``record`` and ``config`` are the test's; the record gets the fields every result has.
    """
    base = {
        "task": "backtest",
        "job_id": f"job-{uuid.uuid4().hex[:8]}",
        "name": "hand",
        "params": {},
        "metrics": {},
        "seed": 7,
        "config_hash": "c" * 64,
        "data_fingerprint": "d" * 64,
        "version": "0.1.0",
        "started_at": "2026-01-02T03:04:05.000+00:00",
        "ended_at": "2026-01-02T03:04:07.500+00:00",
    }
    results.write_result(
        run_dir, {**base, **record}, tables=tables, config_yaml=yaml.safe_dump(config)
    )
    return run_dir
