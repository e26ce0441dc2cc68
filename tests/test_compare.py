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


@pytest.fixture(scope="module")
def awkward(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """Runs MLflow stores in unusual ways: NaN and infinite metrics, a deleted run, a run
    without the sort metric, a run missing every tag, runs in another experiment."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("awkward")
    uri, experiment = f"sqlite:///{root}/mlflow.db", "awkward"
    cfg = TrackingConfig(uri=uri, experiment_name=experiment)
    for i, sharpe in enumerate([0.5, 1.5, 0.5]):  # a tie: the original order decides
        record = {
            "task": "backtest",
            "job_id": f"job-{i}",
            "params": {"lookback": 10 + i, "band": 0.5 * i},
            "metrics": {"sharpe_ratio": sharpe, "max_drawdown": 0.1 * (i + 1)},
            "started_at": f"2026-01-01T00:00:0{i}.000+00:00",
        }
        results.write_result(root / f"r{i}", record, config_yaml=yaml.safe_dump({"name": "x"}))
        log_result(root / f"r{i}", cfg)
    other = TrackingConfig(uri=uri, experiment_name="other")
    log_result(root / "r0", other)  # the same run in another experiment: not a row here
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    for name, metrics, tags in (
        ("nan", {"sharpe_ratio": float("nan"), "max_drawdown": 0.2}, {"backtest.kind": "run"}),
        ("inf", {"sharpe_ratio": float("inf")}, {"backtest.kind": "run"}),
        ("no sharpe", {"max_drawdown": 0.05}, {"backtest.kind": "run"}),
        ("untagged", {"sharpe_ratio": 0.7}, {}),
        ("deleted", {"sharpe_ratio": 99.0}, {"backtest.kind": "run"}),
    ):
        run = client.create_run(exp_id, run_name=name, tags=tags)
        for key, value in metrics.items():
            client.log_metric(run.info.run_id, key, value)
            client.log_metric(run.info.run_id, key, value - 1, step=-1)  # not the latest
        client.log_param(run.info.run_id, "lookback", "7")
        client.set_terminated(run.info.run_id)
        if name == "deleted":
            client.delete_run(run.info.run_id)
    return uri, experiment


@pytest.mark.parametrize("children", [False, True])
@pytest.mark.parametrize("metric", ["sharpe_ratio", "max_drawdown", "objective"])
def test_the_direct_sqlite_read_gives_mlflows_table(
    awkward: tuple[str, str], logged: tuple[str, str], metric: str, children: bool
) -> None:
    from backtest.tracking._compare import experiment_runs, mlflow_runs, runs_table

    for uri, experiment in (awkward, logged):
        direct, reference = experiment_runs(experiment, uri), mlflow_runs(experiment, uri)
        assert set(direct.columns) <= set(reference.columns)
        pd.testing.assert_frame_equal(direct, reference[direct.columns])
        if metric == "objective":  # logged by no run: the same error, naming the metrics
            with pytest.raises(ConfigError) as direct_error:
                runs_table(direct, experiment, metric=metric, children=children)
            with pytest.raises(ConfigError) as mlflow_error:
                runs_table(reference, experiment, metric=metric, children=children)
            assert str(direct_error.value) == str(mlflow_error.value)
            continue
        pd.testing.assert_frame_equal(
            runs_table(direct, experiment, metric=metric, children=children),
            runs_table(reference, experiment, metric=metric, children=children),
        )


def test_awkward_runs_sort_as_mlflow_stores_them(awkward: tuple[str, str]) -> None:
    uri, experiment = awkward
    table = compare_runs(experiment, uri=uri)
    assert table["run"].iloc[:3].tolist()[0] == "inf"
    assert "deleted" not in table["run"].tolist()
    assert len(table) == 7  # 3 logged + nan, inf, no sharpe, untagged (kind "run" by default)
    assert table["sharpe_ratio"].iloc[1:4].tolist() == [1.5, 0.7, 0.5]
    assert table["run"].iloc[-2:].isin(["nan", "no sharpe"]).all()


def test_another_schema_revision_is_read_through_mlflow(
    awkward: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from backtest.tracking import _store
    from backtest.tracking._compare import experiment_runs
    from backtest.tracking._sqlite_runs import read_runs, sqlite_path

    uri, experiment = awkward
    path = sqlite_path(uri)
    assert path is not None
    assert read_runs(path, experiment, "0123456789ab", tags=(), param_filter=bool) is None
    expected = compare_runs(experiment, uri=uri)
    snap = _store.snapshot()
    assert snap is not None
    other = _store.Snapshot(snap.mlflow, "0123456789ab", snap.sql)
    monkeypatch.setattr(_store, "snapshot", lambda: other)
    assert "artifact_uri" in experiment_runs(experiment, uri).columns  # MLflow's frame
    pd.testing.assert_frame_equal(compare_runs(experiment, uri=uri), expected)


def test_compare_on_a_sqlite_store_never_imports_mlflow(logged: tuple[str, str]) -> None:
    import subprocess
    import sys

    uri, experiment = logged
    code = (
        "import sys; from backtest.tracking._compare import main; "
        f"assert main([{experiment!r}, '--uri', {uri!r}]) == 0; "
        "print('mlflow' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "False"
    assert done.stdout.splitlines()[0] == f"6 runs of '{experiment}' by sharpe_ratio"


@pytest.fixture(scope="module")
def engine_search(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    """A real search over a strategy parameter and an engine key, logged to a sqlite store."""
    from omegaconf import open_dict

    from backtest.app import compose
    from backtest.tasks import execute_job
    from backtest.tasks._jobs import BacktestJob

    root = tmp_path_factory.mktemp("engine_search")
    cfg = compose(
        "+experiment=sma_stops_wf", "tracking=none", "figures=false", "report=false",
        f"output_dir={root / 'run'}",
    )  # fmt: skip
    with open_dict(cfg):
        cfg.data.n_bars = 600
        cfg.walkforward = None
        cfg.montecarlo = None
        cfg.search.space = {"fast": [10, 20], "slow": [100], "engine.stop_loss": [0.03, 0.08]}
    execute_job(BacktestJob.from_config(cfg))
    uri, experiment = f"sqlite:///{root}/mlflow.db", f"engine-{uuid.uuid4().hex[:8]}"
    log_result(root / "run", TrackingConfig(uri=uri, experiment_name=experiment))
    return uri, experiment, root / "run"


def param_columns(table: pd.DataFrame) -> list[str]:
    """The parameter columns: between ``started`` and the sort metric."""
    names = list(table.columns)
    return names[names.index("started") + 1 : names.index("sharpe_ratio")]


@pytest.mark.parametrize("reader", ["sqlite", "mlflow"])
def test_children_show_every_searched_key_engine_keys_included(
    engine_search: tuple[str, str, Path], reader: str
) -> None:
    from backtest.tracking._compare import mlflow_runs, runs_table

    uri, experiment, run_dir = engine_search
    trials = results.load_result(run_dir).table("trials")
    assert set(trials["engine.stop_loss"]) == {0.03, 0.08} and set(trials["slow"]) == {100}
    if reader == "sqlite":
        table = compare_runs(experiment, uri=uri, children=True)
    else:  # a tracking server's path: MLflow's frame holds every param
        table = runs_table(mlflow_runs(experiment, uri), experiment, children=True)
    # searched and varying: shown; slow (one value) and the config's constant keys: not
    assert param_columns(table) == ["engine.stop_loss", "fast"]
    rows = table[table["run"].str.startswith("trial ")]
    assert len(rows) == len(trials) == 4
    shown = zip(rows["fast"].astype(int), rows["engine.stop_loss"].astype(float), strict=True)
    assert sorted(shown) == sorted(zip(trials["fast"], trials["engine.stop_loss"], strict=True))
    best = results.load_result(run_dir).record["search"]["best_params"]
    parent = table[table["task"] == "search"].iloc[0]
    assert float(parent["engine.stop_loss"]) == best["engine.stop_loss"]  # its best, not config
    alone = compare_runs(experiment, uri=uri)  # one row: its parameters and best values
    assert param_columns(alone) == ["engine.stop_loss", "fast", "long_short", "slow"]


def test_sweep_jobs_differing_in_an_engine_key_show_it(tmp_path: Path) -> None:
    uri, experiment = f"sqlite:///{tmp_path}/mlflow.db", "sweep-engine"
    for i, fee in enumerate([0.001, 0.002, 0.001]):
        config = {"name": "x", "data": {"n_bars": 500}, "engine": {"fee": fee, "slippage": 0.0}}
        record = {"task": "backtest", "job_id": f"j{i}", "params": {"fast": 10},
                  "metrics": {"sharpe_ratio": 1.0 + i}}  # fmt: skip
        results.write_result(tmp_path / str(i), record, config_yaml=yaml.safe_dump(config))
        log_result(tmp_path / str(i), TrackingConfig(uri=uri, experiment_name=experiment))
    table = compare_runs(experiment, uri=uri)
    assert param_columns(table) == ["engine.fee"]  # fast, n_bars, slippage do not vary
    assert table["engine.fee"].astype(float).tolist() == [0.001, 0.002, 0.001]


def test_a_truncated_store_is_named_with_its_fix(
    logged: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil
    import sqlite3

    uri, experiment = logged
    source = Path(uri.removeprefix("sqlite:///"))
    with sqlite3.connect(source) as con:  # fold the WAL in, as a finished process leaves it
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store = tmp_path / "mlflow.db"
    shutil.copyfile(source, store)
    data = store.read_bytes()
    store.write_bytes(data[: len(data) // 2])
    broken = f"sqlite:///{store}"
    with pytest.raises(BacktestError) as info:
        compare_runs(experiment, uri=broken)
    message = str(info.value)
    assert str(store) in message and "damaged" in message
    assert f"python -m backtest.sync {tmp_path} --full --uri {broken}" in message
    assert main([experiment, "--uri", broken]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: the MLflow store {store} is damaged") and "Traceback" not in err
