"""``python -m backtest.compare``: an experiment's runs as a sorted table (real sqlite store)."""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml

from backtest import results
from backtest.config import TrackingConfig
from backtest.errors import BacktestError, ConfigError
from backtest.tracking import log_result
from backtest.tracking._compare import compare_runs, main

SHARPES = [0.4, 1.3, float("nan"), -0.2, 0.9]
DRAWDOWNS = [0.30, 0.10, 0.20, 0.50, 0.15]


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """Five backtests and one search (with two nested trials) in one experiment."""
    root = tmp_path_factory.mktemp("compare")
    uri, experiment = f"sqlite:///{root}/mlflow.db", f"cmp-{uuid.uuid4().hex[:8]}"
    cfg = TrackingConfig(uri=uri, experiment_name=experiment)
    for i, (sharpe, dd) in enumerate(zip(SHARPES, DRAWDOWNS, strict=True)):
        metrics = {"sharpe_ratio": None if math.isnan(sharpe) else sharpe, "max_drawdown": dd}
        record = {
            "task": "backtest",
            "job_id": f"job-{i}",
            "params": {"lookback": 10 * (i + 1)},
            "metrics": metrics,
            "started_at": f"2026-01-01T00:00:0{i}.000+00:00",
        }
        results.write_result(root / f"r{i}", record, config_yaml=yaml.safe_dump({"name": "x"}))
        log_result(root / f"r{i}", cfg)
    trials = pd.DataFrame({"lookback": [5, 7], "sharpe_ratio": [9.0, 8.0]})
    record = {
        "task": "search",
        "job_id": "job-s",
        "params": {"lookback": 5},
        "metrics": {"sharpe_ratio": 0.1, "max_drawdown": 0.4},
    }
    results.write_result(
        root / "s",
        record,
        tables={"trials": trials},
        config_yaml=yaml.safe_dump({"name": "x", "search": {"space": {"lookback": [5, 7]}}}),
    )
    log_result(root / "s", cfg)
    return uri, experiment


def test_runs_are_sorted_by_the_metric_best_first_missing_last(logged: tuple[str, str]) -> None:
    uri, experiment = logged
    table = compare_runs(experiment, uri=uri)
    expected = sorted((s for s in [*SHARPES, 0.1] if not math.isnan(s)), reverse=True)
    assert table["sharpe_ratio"].iloc[:-1].tolist() == expected
    assert math.isnan(table["sharpe_ratio"].iloc[-1])
    assert len(table) == 6  # nested trials are not runs to compare
    assert table["lookback"].tolist() == ["20", "50", "10", "5", "40", "30"]


def test_lower_is_better_metrics_sort_ascending(logged: tuple[str, str]) -> None:
    uri, experiment = logged
    table = compare_runs(experiment, uri=uri, metric="max_drawdown")
    assert table["max_drawdown"].tolist() == sorted([*DRAWDOWNS, 0.4])
    flipped = compare_runs(experiment, uri=uri, metric="max_drawdown", ascending=False)
    assert flipped["max_drawdown"].tolist() == sorted([*DRAWDOWNS, 0.4], reverse=True)


def test_children_are_included_on_request(logged: tuple[str, str]) -> None:
    uri, experiment = logged
    table = compare_runs(experiment, uri=uri, children=True, limit=2)
    assert table["sharpe_ratio"].tolist() == [9.0, 8.0]
    assert table["run"].tolist() == ["trial 0", "trial 1"]


def test_unknown_experiment_and_metric_are_named(logged: tuple[str, str]) -> None:
    uri, experiment = logged
    with pytest.raises(BacktestError, match=r"no MLflow experiment 'nope'.*" + experiment):
        compare_runs("nope", uri=uri)
    with pytest.raises(ConfigError, match=r"metric 'sortino'.*sharpe_ratio") as info:
        compare_runs(experiment, uri=uri, metric="sortino")
    assert info.value.key == "metric"


def test_cli_prints_the_table(logged: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    uri, experiment = logged
    assert main([experiment, "--uri", uri, "--metric", "sharpe_ratio"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"6 runs of '{experiment}' by sharpe_ratio"
    header, first, *_ = out[1:]
    assert header.split()[:4] == ["run", "task", "status", "started"]
    assert "backtest lookback=20" in first and "1.3" in first
    assert main(["nope", "--uri", uri]) == 2
    assert "no MLflow experiment 'nope'" in capsys.readouterr().err


def test_default_store_is_the_projects_sqlite_file(
    in_tmp_cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(BacktestError, match=str(in_tmp_cwd / "outputs" / "mlflow.db")):
        compare_runs("anything")
