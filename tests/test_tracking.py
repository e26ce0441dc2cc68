"""MLflow mirror of run directories, against a real sqlite MLflow store (no mocks)."""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from backtest import results
from backtest.config import TrackingConfig
from backtest.errors import BacktestError, ConfigError
from backtest.tasks import execute_job
from backtest.tasks._jobs import BacktestJob
from backtest.tracking import log_result, run_key
from tests import mlflow_runs
from tests.mlflow_runs import write_result_dir as write_run

store = mlflow_runs.store  # fixtures: one sqlite store for the module, a new experiment a test
experiment = mlflow_runs.experiment


def client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def runs_of(uri: str, experiment: str) -> list[Any]:
    c = client(uri)
    exp = c.get_experiment_by_name(experiment)
    return [] if exp is None else list(c.search_runs([exp.experiment_id], max_results=1000))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Reference flattening, written independently of backtest.tracking."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def artifact_paths(uri: str, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for item in client(uri).list_artifacts(run_id, path):
        found |= artifact_paths(uri, run_id, item.path) if item.is_dir else {item.path}
    return found


def run_config(
    compose: Any,
    tmp_path: Path,
    uri: str,
    experiment: str,
    *extra: str,
    base: str = "+experiment=sma_cross",
) -> Any:
    return compose(
        base,
        "data.n_bars=300",
        "data.n_assets=2",
        f"output_dir={tmp_path / 'run'}",
        f"tracking.uri={uri}",
        f"tracking.experiment_name={experiment}",
        *extra,
    )


@pytest.fixture
def tracked(compose: Any, tmp_path: Path, store: str, experiment: str) -> Any:
    """:func:`run_config` for this test: its folder, the module's store, its experiment."""
    return functools.partial(run_config, compose, tmp_path, store, experiment)


def test_backtest_run_is_mirrored_with_config_metrics_tags_and_artifacts(
    tracked: Any, tmp_path: Path, store: str, experiment: str
) -> None:
    result = execute_job(BacktestJob.from_config(tracked()))
    run_dir = Path(result.run_dir)
    record = json.loads((run_dir / "result.json").read_text())
    config = yaml.safe_load((run_dir / "config.yaml").read_text())

    (run,) = runs_of(store, experiment)
    assert run.info.status == "FINISHED"
    expected_params = {
        k: v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
        for k, v in flatten(config).items()
    }
    for key, value in expected_params.items():
        assert run.data.params[key] == value, key
    assert run.data.params["fast"] == "20" and run.data.params["slow"] == "100"
    shown = ("sharpe_ratio", "total_return", "cagr", "max_drawdown", "objective")
    for name, value in record["metrics"].items():
        if value is not None:  # the runs table's columns to 4 digits, the rest exact
            expected = float(f"{value:.4g}") if name in shown else value
            assert run.data.metrics[name] == pytest.approx(expected, rel=1e-12), name
    assert run.data.metrics["duration_s"] == pytest.approx(
        (pd.Timestamp(record["ended_at"]) - pd.Timestamp(record["started_at"])).total_seconds()
    )
    tags = run.data.tags
    assert tags["backtest.experiment"] == experiment
    assert tags["backtest.task"] == "backtest"
    assert tags["backtest.config_hash"] == record["config_hash"]
    assert tags["backtest.data_fingerprint"] == record["data_fingerprint"]
    assert tags["backtest.seed"] == "42"
    assert tags["backtest.job_id"] == record["job_id"]
    assert tags["backtest.version"] == record["version"]
    assert tags["backtest.run_key"] == run_key(record)
    assert len(tags["backtest.git_commit"]) == 40
    assert "sharpe_ratio" in tags["mlflow.note.content"]
    assert artifact_paths(store, run.info.run_id) == {
        "result.json",
        "config.yaml",
        "report.html",
        "figures/equity.png",
        "tables/costs.parquet",
        "tables/equity.parquet",
        "tables/positions.parquet",
        "tables/prices.parquet",
        "tables/trades.parquet",
    }
    copy = client(store).download_artifacts(run.info.run_id, "result.json", str(tmp_path))
    assert json.loads(Path(copy).read_text()) == record


def search_run(tmp_path: Path, n_trials: int = 25) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(3)
    trials = pd.DataFrame(
        {
            "trial": np.arange(n_trials),
            "fast": rng.integers(2, 50, n_trials),
            "slow": rng.integers(60, 200, n_trials),
            "sharpe_ratio": rng.normal(0.5, 0.4, n_trials),
            "total_return": rng.normal(0.2, 0.1, n_trials),
            "status": "complete",
        }
    )
    trials.loc[4, "sharpe_ratio"] = np.nan  # a failed trial never ranks among the best
    trials.loc[4, "status"] = "failed"
    best = trials.loc[trials["sharpe_ratio"].idxmax()]
    config = {
        "name": "hand",
        "search": {
            "method": "random",
            "metric": "sharpe_ratio",
            "direction": "maximize",
            "space": {"fast": [2, 50], "slow": [60, 200]},
        },
        "strategy": {"_target_": "backtest.strategies.SmaCross", "fast": 10, "slow": 100},
    }
    record = {
        "task": "search",
        "params": {"fast": int(best.fast), "slow": int(best.slow)},
        "metrics": {"sharpe_ratio": float(best.sharpe_ratio)},
        "search": {"n_trials": n_trials, "best_score": float(best.sharpe_ratio)},
    }
    return write_run(tmp_path / "search", record, config, {"trials": trials}), trials


@pytest.mark.parametrize("given", [False, True], ids=["no-runner-children", "runner-children"])
def test_search_is_a_parent_with_its_best_trials_nested_and_the_table_attached(
    tmp_path: Path, store: str, experiment: str, given: bool
) -> None:
    """The trials table is the record: children come from it, as a later sync would see them."""
    run_dir, trials = search_run(tmp_path)
    children = (
        [{"name": "from the runner", "params": {}, "metrics": {"sharpe_ratio": 99.0}}]
        if given
        else None
    )
    cfg = TrackingConfig(uri=store, experiment_name=experiment, max_child_runs=5)
    logged = log_result(run_dir, cfg, children=children)

    runs = runs_of(store, experiment)
    parent = next(r for r in runs if r.info.run_id == logged.run_id)
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == logged.run_id]
    assert len(runs) == 6 and len(kids) == 5 == logged.n_children
    best5 = trials.nlargest(5, "sharpe_ratio")
    assert sorted(r.data.metrics["sharpe_ratio"] for r in kids) == pytest.approx(
        sorted(float(f"{v:.4g}") for v in best5["sharpe_ratio"]), rel=1e-12
    )  # a runs-table column: logged to 4 significant digits
    by_start = sorted(kids, key=lambda r: -r.info.start_time)  # the table's order
    assert [r.info.run_name for r in by_start] == [f"trial {t}" for t in best5.trial]
    assert {(r.data.params["fast"], r.data.params["slow"]) for r in kids} == {
        (str(f), str(s)) for f, s in zip(best5.fast, best5.slow, strict=True)
    }
    assert sorted(r.info.run_name for r in kids) == sorted(f"trial {t}" for t in best5.trial)
    assert all(
        r.info.status == "FINISHED" and r.data.tags["backtest.kind"] == "trial" for r in kids
    )
    assert parent.data.tags["backtest.children_total"] == "25"
    assert parent.data.metrics["search.best_score"] == pytest.approx(trials.sharpe_ratio.max())
    assert "tables/trials.parquet" in artifact_paths(store, logged.run_id)


def test_runner_children_are_nested_when_the_files_hold_none(
    tmp_path: Path, store: str, experiment: str
) -> None:
    run_dir = write_run(tmp_path / "mc", {"task": "montecarlo"}, {"name": "mc"})
    children = [
        {"name": f"path {i}", "params": {"block": i}, "metrics": {"sharpe_ratio": i}}
        for i in range(3)
    ]
    logged = log_result(
        run_dir, TrackingConfig(uri=store, experiment_name=experiment), children=children
    )
    kids = [
        r
        for r in runs_of(store, experiment)
        if r.data.tags.get("mlflow.parentRunId") == logged.run_id
    ]
    assert sorted(
        (r.info.run_name, r.data.params["block"], r.data.metrics["sharpe_ratio"]) for r in kids
    ) == [("path 0", "0", 0.0), ("path 1", "1", 1.0), ("path 2", "2", 2.0)]


def test_walkforward_has_one_child_per_fold_whatever_the_cap(
    tmp_path: Path, store: str, experiment: str
) -> None:
    folds = pd.DataFrame(
        {
            "fold": range(4),
            "train_start": pd.date_range("2010-01-01", periods=4, freq="YS"),
            "test_start": pd.date_range("2013-01-01", periods=4, freq="YS"),
            "lookback": [20, 60, 60, 120],
            "is_score": [1.1, 0.9, 1.4, 0.2],
            "oos_sharpe_ratio": [0.3, -0.2, 0.8, 0.1],
        }
    )
    config = {
        "name": "wf",
        "strategy": {"_target_": "backtest.strategies.Momentum", "lookback": 60},
    }
    record = {
        "task": "walkforward",
        "walkforward": {"efficiency": 0.42, "n_folds": 4},
        "overfitting": {"pbo": 0.25, "deflated_sharpe": {"value": 0.91}},
    }
    run_dir = write_run(tmp_path / "wf", record, config, {"folds": folds})
    cfg = TrackingConfig(uri=store, experiment_name=experiment, max_child_runs=2)
    logged = log_result(run_dir, cfg)

    runs = runs_of(store, experiment)
    kids = sorted(
        (r for r in runs if r.data.tags.get("mlflow.parentRunId") == logged.run_id),
        key=lambda r: r.info.run_name,
    )
    assert [r.info.run_name for r in kids] == ["fold 0", "fold 1", "fold 2", "fold 3"]
    assert [r.data.params["lookback"] for r in kids] == ["20", "60", "60", "120"]
    assert [r.data.params["train_start"] for r in kids] == [
        "2010-01-01",
        "2011-01-01",
        "2012-01-01",
        "2013-01-01",
    ]
    assert [r.data.metrics["oos_sharpe_ratio"] for r in kids] == [0.3, -0.2, 0.8, 0.1]
    parent = next(r for r in runs if r.info.run_id == logged.run_id)
    assert parent.data.metrics["walkforward.efficiency"] == 0.42
    assert parent.data.metrics["overfitting.deflated_sharpe.value"] == 0.91


def test_monte_carlo_percentiles_are_metrics_of_the_run_they_analyse(
    tmp_path: Path, store: str, experiment: str
) -> None:
    montecarlo = {
        "method": "stationary_bootstrap",
        "n_paths": 1000,
        "percentiles": {
            "total_return": {"p5": -0.1, "p50": 0.2, "p95": 0.5},
            "max_drawdown": {"p5": 0.05, "p50": 0.12, "p95": 0.3},
        },
        "prob_loss": 0.18,
        "confidence": [5, 50, 95],
    }
    record = {
        "task": "montecarlo",
        "metrics": {"sharpe_ratio": 0.9, "cagr": None},
        "montecarlo": montecarlo,
    }
    run_dir = write_run(tmp_path / "mc", record, {"name": "mc"})
    logged = log_result(run_dir, TrackingConfig(uri=store, experiment_name=experiment))

    (run,) = runs_of(store, experiment)
    assert run.info.run_id == logged.run_id
    expected = {
        f"montecarlo.percentiles.{m}.{p}": v
        for m, levels in montecarlo["percentiles"].items()
        for p, v in levels.items()
    }
    expected["montecarlo.prob_loss"] = 0.18
    expected["montecarlo.n_paths"] = 1000.0
    assert {k: v for k, v in run.data.metrics.items() if k.startswith("montecarlo.")} == expected
    assert "cagr" not in run.data.metrics  # a missing (NaN) metric is not invented


def test_bad_config_fails_before_any_mlflow_run(
    tracked: Any, tmp_path: Path, store: str, experiment: str
) -> None:
    cfg = tracked("strategy.fast=100", "strategy.slow=10")
    with pytest.raises(ConfigError, match="fast"):
        execute_job(BacktestJob.from_config(cfg))
    assert runs_of(store, experiment) == []
    assert not (tmp_path / "run").exists()


def tstrats_config(tracked: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> Any:
    """A tracked run of the strategy ``tstrats.<name>`` (:data:`STRATEGIES`, importable)."""
    (tmp_path / "tstrats.py").write_text(STRATEGIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tracked(
        f"strategy._target_=tstrats.{name}",
        "allowed_modules=[tstrats]",
        base="strategy=buy_and_hold",
    )


def test_failed_job_ends_failed_with_its_error(
    tracked: Any, tmp_path: Path, store: str, experiment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job that fails while it runs (its strategy raises) is logged as a FAILED run."""
    cfg = tstrats_config(tracked, tmp_path, monkeypatch, "Broken")
    with pytest.raises(ValueError, match="broken on purpose"):
        execute_job(BacktestJob.from_config(cfg))
    (run,) = runs_of(store, experiment)
    assert run.info.status == "FAILED"
    assert run.data.tags["backtest.error"] == "ValueError: broken on purpose"
    assert "raise ValueError" in run.data.tags["mlflow.note.content"]  # the traceback
    assert run.data.params["strategy._target_"] == "tstrats.Broken"
    assert not (tmp_path / "run" / "result.json").exists()


def test_data_too_short_for_a_fold_fails_before_any_mlflow_run(
    tracked: Any, tmp_path: Path, store: str, experiment: str
) -> None:
    cfg = tracked("walkforward=rolling", "search=grid", "+search.space.fast=[5,10]")
    with pytest.raises(ConfigError, match=r"too few|walkforward"):
        execute_job(BacktestJob.from_config(cfg))
    assert runs_of(store, experiment) == []
    assert not (tmp_path / "run" / "result.json").exists()


STRATEGIES = textwrap.dedent("""
    import os, time

    class Interrupted:
        def positions(self, prices):
            raise KeyboardInterrupt

    class Broken:
        def positions(self, prices):
            raise ValueError("broken on purpose")

    class Sleepy:
        def positions(self, prices):
            open(os.environ["SLEEPY_READY"], "w").close()
            time.sleep(120)
            return prices * 0.0
""")


def test_interrupted_job_ends_killed(
    tracked: Any, tmp_path: Path, store: str, experiment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tstrats_config(tracked, tmp_path, monkeypatch, "Interrupted")
    with pytest.raises(KeyboardInterrupt):
        execute_job(BacktestJob.from_config(cfg))
    (run,) = runs_of(store, experiment)
    assert run.info.status == "KILLED"


@pytest.mark.slow
def test_sigterm_during_a_job_ends_its_run_killed(
    tmp_path: Path, store: str, experiment: str
) -> None:
    (tmp_path / "tstrats.py").write_text(STRATEGIES)
    ready = tmp_path / "ready"
    script = textwrap.dedent(f"""
        from backtest.config._hydra import register_configs
        from backtest.tasks._jobs import BacktestJob
        from backtest.tasks import execute_job
        from hydra import compose, initialize_config_dir
        register_configs()
        with initialize_config_dir(config_dir={str(Path(__file__).parent.parent / "conf")!r},
                                   version_base="1.3"):
            cfg = compose("config", overrides=[
                "data.n_bars=300", "strategy=buy_and_hold", "strategy._target_=tstrats.Sleepy",
                "allowed_modules=[tstrats]", "output_dir={tmp_path / "run"}",
                "tracking.uri={store}", "tracking.experiment_name={experiment}"])
        execute_job(BacktestJob.from_config(cfg))
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={  # the code under test (this tree), then the test's strategy module
            **os.environ,
            "SLEEPY_READY": str(ready),
            "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent.parent), str(tmp_path)]),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()[0].decode()[-3000:]
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.1)
    proc.terminate()
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 143, out[-3000:]
    (run,) = runs_of(store, experiment)
    assert run.info.status == "KILLED"


def tracking_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and "tracking failed" in r.getMessage()
    ]


def test_unreachable_server_the_run_completes_with_one_warning(
    compose: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, unused_port: int
) -> None:
    cfg = run_config(compose, tmp_path, f"http://127.0.0.1:{unused_port}", "down")
    with caplog.at_level(logging.WARNING):
        result = execute_job(BacktestJob.from_config(cfg))
    assert results.has_result(result.run_dir)
    assert (Path(result.run_dir) / "figures" / "equity.png").is_file()
    (warning,) = tracking_warnings(caplog)
    assert "unreachable" in warning.getMessage()
    assert "python -m backtest.sync" in warning.getMessage()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == [warning]


def test_a_server_that_never_answers_is_given_up_on_after_the_timeout(tmp_path: Path) -> None:
    """A listening socket that never answers: without our limits MLflow would wait 7 x 120 s."""
    run_dir = write_run(tmp_path / "r", {}, {"name": "hang"})
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(BacktestError, match="unreachable") as info:
            log_result(run_dir, TrackingConfig(uri=uri, timeout_s=1.0))
        waited = time.monotonic() - started
    assert uri in str(info.value)
    assert waited < 30  # a hang guard, not a benchmark: the default would be minutes


def test_tracking_disabled_logs_nothing(tracked: Any, store: str, experiment: str) -> None:
    cfg = tracked("tracking=none")
    execute_job(BacktestJob.from_config(cfg))
    assert runs_of(store, experiment) == []


def test_concurrent_loggers_into_one_new_experiment_make_one_experiment(
    tmp_path: Path, store: str, experiment: str
) -> None:
    run_dirs = [write_run(tmp_path / f"r{i}", {}, {"name": experiment}) for i in range(6)]
    cfg = TrackingConfig(uri=store, experiment_name=experiment)
    log_result(
        write_run(tmp_path / "warm", {}, {"name": "warm"}),
        TrackingConfig(uri=store, experiment_name="warm"),
    )  # store ready, then race
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(run_dirs))

    def work(run_dir: Path) -> None:
        barrier.wait()
        try:
            log_result(run_dir, cfg)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(d,)) for d in run_dirs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    names = [e.name for e in client(store).search_experiments() if e.name == experiment]
    assert names == [experiment]
    assert sorted(r.info.status for r in runs_of(store, experiment)) == ["FINISHED"] * 6


def test_import_stays_light_and_preload_opens_nothing(tmp_path: Path) -> None:
    code = (
        "import sys, backtest, backtest.tracking, backtest.report._png, backtest.tracking._sync, "
        "backtest.tracking._compare; print(sorted(m for m in ('mlflow', 'matplotlib') "
        "if m in sys.modules)); backtest.tracking.preload(); print('mlflow' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.split("\n")[:2] == ["[]", "True"]
    assert list(tmp_path.iterdir()) == []  # no store, no outputs/ folder
