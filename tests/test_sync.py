"""``python -m backtest.sync``: results on disk reach MLflow exactly once (real sqlite store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from backtest import results
from backtest.config import TrackingConfig
from backtest.errors import ResultPathMissing
from backtest.tracking import log_result, run_key
from backtest.tracking._sync import main, sync
from tests import mlflow_runs
from tests.mlflow_runs import write_run

store = mlflow_runs.store  # fixtures: one sqlite store for the module, a new experiment a test
experiment = mlflow_runs.experiment


def mirrors(uri: str, experiment: str) -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else list(client.search_runs([exp.experiment_id]))


def test_every_result_is_logged_once_however_often_sync_runs(
    tmp_path: Path, store: str, experiment: str
) -> None:
    out = tmp_path / "outputs"
    dirs = [write_run(out / experiment / f"run{i}", experiment, store, 0.1 * i) for i in range(3)]

    first = sync(out)
    assert sorted(d for d, _ in first.logged) == dirs and first.failed == []
    again = sync(out)
    assert again.logged == [] and sorted(again.present) == dirs
    extra = write_run(out / experiment / "run9", experiment, store)
    third = sync(out)
    assert [d for d, _ in third.logged] == [extra] and len(third.present) == 3

    runs = mirrors(store, experiment)
    keys = [r.data.tags["backtest.run_key"] for r in runs]
    expected = [run_key(results.load_result(d).record) for d in [*dirs, extra]]
    assert sorted(keys) == sorted(expected)
    assert all(r.info.status == "FINISHED" for r in runs)


def test_a_result_logged_live_is_not_logged_again(
    tmp_path: Path, store: str, experiment: str
) -> None:
    run_dir = write_run(tmp_path / "run", experiment, store)
    log_result(run_dir, TrackingConfig(uri=store))
    report = sync(tmp_path)
    assert report.logged == [] and report.present == [run_dir]
    assert len(mirrors(store, experiment)) == 1


def test_a_half_logged_mirror_is_replaced_by_a_complete_one(
    tmp_path: Path, store: str, experiment: str
) -> None:
    from mlflow import MlflowClient

    run_dir = write_run(tmp_path / "run", experiment, store)
    client = MlflowClient(tracking_uri=store)
    exp_id = client.create_experiment(experiment)
    key = run_key(results.load_result(run_dir).record)
    stale = client.create_run(exp_id, tags={"backtest.run_key": key})  # crashed mid-logging

    (logged,) = sync(tmp_path).logged
    status = {r.info.run_id: r.info.status for r in mirrors(store, experiment)}
    assert status == {logged[1]: "FINISHED", stale.info.run_id: "KILLED"}
    assert client.get_run(stale.info.run_id).data.tags["backtest.superseded"] == "true"
    assert sync(tmp_path).logged == []  # closed, not reopened


def test_uri_option_overrides_each_results_own_uri(
    tmp_path: Path, store: str, experiment: str, unused_port: int
) -> None:
    uri = f"http://127.0.0.1:{unused_port}"
    run_dir = write_run(tmp_path / "run", experiment, uri)
    down = sync(tmp_path)
    assert down.logged == [] and down.failed == []
    assert down.unreachable == [(run_dir, uri)]  # left for the next sync
    up = sync(tmp_path, uri=store)
    assert [d for d, _ in up.logged] == [run_dir] and up.failed == []


def test_copies_inside_the_artifact_store_are_not_results(tmp_path: Path, experiment: str) -> None:
    out = tmp_path / "outputs"
    uri = f"sqlite:///{out}/mlflow.db"  # artifacts land in outputs/mlartifacts/
    write_run(out / "run", experiment, uri)
    assert len(sync(out).logged) == 1
    assert list((out / "mlartifacts").rglob("result.json"))  # the copy MLflow keeps
    again = sync(out)
    assert again.logged == [] and again.present == [out / "run"]


def test_sweep_jobs_are_nested_under_one_sweep_run(
    tmp_path: Path, store: str, experiment: str
) -> None:
    sweep = tmp_path / "multirun" / "2026-01-01_00-00-00"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text(
        yaml.safe_dump({"hydra": {"overrides": {"task": ["strategy.fast=5,10,20"]}}})
    )
    for job in range(3):
        write_run(sweep / str(job), experiment, store, sharpe=job)
    assert len(sync(tmp_path).logged) == 3

    runs = mirrors(store, experiment)
    (parent,) = [r for r in runs if r.data.tags.get("backtest.kind") == "sweep"]
    jobs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 4 and len(jobs) == 3
    assert parent.data.params["sweep.overrides"] == '["strategy.fast=5,10,20"]'
    assert parent.info.status == "FINISHED"


def test_cli_prints_a_summary_and_fails_on_a_missing_path(
    tmp_path: Path, store: str, experiment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    write_run(tmp_path / "a", experiment, store)
    assert main([str(tmp_path), "--dry-run"]) == 0
    assert "1 would log, 0 already in MLflow, 0 failed" in capsys.readouterr().out
    assert mirrors(store, experiment) == []
    assert main([str(tmp_path)]) == 0
    assert "1 logged, 0 already in MLflow, 0 failed" in capsys.readouterr().out
    assert main([str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    with pytest.raises(ResultPathMissing):
        sync(tmp_path / "nope")


def test_results_made_with_tracking_none_are_skipped_unless_asked(
    tmp_path: Path, store: str, experiment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "outputs"
    tracked = write_run(out / experiment / "tracked", experiment, store)
    untracked = write_run(out / experiment / "untracked", experiment, store)
    config = yaml.safe_load((untracked / "config.yaml").read_text())
    config["tracking"]["enabled"] = False
    (untracked / "config.yaml").write_text(yaml.safe_dump(config))

    report = sync(out)
    assert [d for d, _ in report.logged] == [tracked] and report.untracked == [untracked]
    assert main([str(out)]) == 0
    assert "1 made with tracking=none skipped (--include-untracked)" in capsys.readouterr().out
    assert main([str(out), "--include-untracked"]) == 0
    assert len(mirrors(store, experiment)) == 2
