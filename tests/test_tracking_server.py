"""Tracking against a real ``mlflow server`` on 127.0.0.1: resilience and concurrency (slow)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from backtest import results
from backtest.tasks import execute_job
from backtest.tasks._jobs import BacktestJob
from backtest.tracking._sync import sync

pytestmark = pytest.mark.slow


def runs_of(uri: str, experiment: str) -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else list(client.search_runs([exp.experiment_id], max_results=1000))


def job_config(compose: Any, run_dir: Path, uri: str, experiment: str) -> Any:
    return compose(
        "+experiment=sma_cross",
        "data.n_bars=300",
        "data.n_assets=2",
        f"output_dir={run_dir}",
        f"tracking.uri={uri}",
        f"tracking.experiment_name={experiment}",
        "tracking.timeout_s=2",
    )


def test_run_logged_to_a_server_carries_its_files(
    compose: Any, tmp_path: Path, mlflow_server: str
) -> None:
    from mlflow import MlflowClient

    experiment = f"srv-{uuid.uuid4().hex[:8]}"
    result = execute_job(
        BacktestJob.from_config(job_config(compose, tmp_path / "run", mlflow_server, experiment))
    )
    (run,) = runs_of(mlflow_server, experiment)
    assert run.info.status == "FINISHED"
    client = MlflowClient(tracking_uri=mlflow_server)
    copy = client.download_artifacts(run.info.run_id, "result.json", str(tmp_path))
    assert json.loads(Path(copy).read_text()) == results.load_result(result.run_dir).record
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert figures == {"figures/equity.png"}


def test_server_down_then_back_the_sync_logs_each_result_once(
    compose: Any, tmp_path: Path, own_mlflow_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    experiment = "resilience"
    url = own_mlflow_server.start()
    execute_job(
        BacktestJob.from_config(job_config(compose, tmp_path / "out" / "up", url, experiment))
    )
    own_mlflow_server.stop()

    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        down = execute_job(
            BacktestJob.from_config(job_config(compose, tmp_path / "out" / "down", url, experiment))
        )
    waited = time.monotonic() - started
    assert results.has_result(down.run_dir)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "tracking failed" in warnings[0].getMessage()
    assert waited < 60  # a hang guard: MLflow's own defaults retry for minutes

    own_mlflow_server.start()
    assert len(runs_of(url, experiment)) == 1
    report = sync(tmp_path / "out")
    assert [d for d, _ in report.logged] == [Path(down.run_dir)]
    assert report.present == [tmp_path / "out" / "up"]
    assert sync(tmp_path / "out").logged == []
    runs = runs_of(url, experiment)
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags["backtest.run_key"] for r in runs}) == 2


WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import mlflow  # imported before the start line, so the processes really race
    from backtest.config import TrackingConfig
    from backtest.tracking import log_result
    run_dir, go, uri, experiment = sys.argv[1:]
    (Path(run_dir) / "ready").touch()
    while not Path(go).exists():
        time.sleep(0.01)
    logged = log_result(run_dir, TrackingConfig(uri=uri, experiment_name=experiment))
    print(logged.experiment_id, logged.run_id)
""")


def test_sixteen_processes_logging_into_one_new_experiment(
    tmp_path: Path, mlflow_server: str
) -> None:
    experiment = f"race-{uuid.uuid4().hex[:8]}"
    go = tmp_path / "go"
    run_dirs = []
    for i in range(16):
        run_dir = tmp_path / f"job{i}"
        results.write_result(
            run_dir,
            {
                "task": "backtest",
                "job_id": f"job-{i}",
                "metrics": {"sharpe_ratio": i / 10},
                "params": {"i": i},
            },
            config_yaml=yaml.safe_dump({"name": experiment}),
        )
        run_dirs.append(run_dir)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(d), str(go), mlflow_server, experiment],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for d in run_dirs
    ]
    deadline = time.monotonic() + 300
    while not all((d / "ready").exists() for d in run_dirs):
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    go.touch()
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 16, [err[-2000:] for _, err in outputs]

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server)
    same = [e for e in client.search_experiments() if e.name == experiment]
    assert len(same) == 1
    assert {out.split()[0] for out, _ in outputs} == {same[0].experiment_id}
    runs = runs_of(mlflow_server, experiment)
    assert len(runs) == 16 and {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(int(r.data.params["i"]) for r in runs) == list(range(16))
