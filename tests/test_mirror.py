"""A mirror is never left RUNNING, and never doubled (real processes, SIGKILL, sqlite)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from backtest import results
from backtest.tasks import execute_job
from backtest.tasks._jobs import BacktestJob
from backtest.tracking import run_key
from backtest.tracking._client import client_for

N_FIGURES = 1500  # uploading them keeps a mirror RUNNING for a second or more


def write_run(run_dir: Path, experiment: str, uri: str, sharpe: float) -> Path:
    record = {
        "task": "backtest",
        "job_id": f"job-{uuid.uuid4().hex[:8]}",
        "name": experiment,
        "params": {"fast": 10},
        "metrics": {"sharpe_ratio": sharpe},
        "seed": 1,
        "config_hash": "a" * 64,
        "data_fingerprint": "b" * 64,
        "started_at": "2026-01-01T00:00:00.000+00:00",
        "ended_at": "2026-01-01T00:00:01.000+00:00",
    }
    config = {"name": experiment, "tracking": {"enabled": True, "uri": uri, "timeout_s": 30.0}}
    results.write_result(run_dir, record, config_yaml=yaml.safe_dump(config))
    return run_dir


def slow_to_mirror(run_dir: Path) -> None:
    figures = results.figures_dir(run_dir)
    for i in range(N_FIGURES):
        (figures / f"f{i:04d}.png").write_bytes(b"\x89PNG" + bytes(64))


def runs(uri: str, experiment: str) -> list[Any]:
    client = client_for(uri)  # opens the fresh store under its lock, as the syncs do
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)


def kill_when_running(proc: subprocess.Popen[bytes], uri: str, experiment: str) -> str:
    """SIGKILL ``proc`` as soon as its mirror run exists and is RUNNING; returns its id."""
    deadline = time.monotonic() + 180
    while True:
        assert proc.poll() is None, proc.communicate()[0].decode()[-3000:]
        assert time.monotonic() < deadline, "the mirror never started"
        running = [r for r in runs(uri, experiment) if r.info.status == "RUNNING"]
        if running and running[0].data.tags.get("backtest.kind") == "run":
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)  # reaps it and closes its pipe
            assert proc.returncode == -signal.SIGKILL
            return str(running[0].info.run_id)
        time.sleep(0.02)


def sync_proc(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "backtest.tracking._sync", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def finished_once(uri: str, experiment: str, keys: list[str]) -> Counter[str]:
    found = runs(uri, experiment)
    assert not [r for r in found if r.info.status == "RUNNING"]
    done = Counter(r.data.tags["backtest.run_key"] for r in found if r.info.status == "FINISHED")
    assert done == Counter(keys)
    return done


# Before the run-directory lock, 3 concurrent syncs of 8 results made 15 to 24 runs in
# every try (the report): each of the 3 rounds here is a fresh race between 3
# processes on 8 results, so a regression shows in the first round already.
@pytest.mark.slow
@pytest.mark.parametrize("round_", range(3), ids=lambda r: f"round{r}")
def test_concurrent_syncs_close_a_killed_mirror_and_log_each_result_once(
    tmp_path: Path, round_: int
) -> None:
    uri, experiment = f"sqlite:///{tmp_path}/mlflow.db", f"mirror-{round_}"
    out = tmp_path / "outputs"
    dirs = [write_run(out / f"run{i}", experiment, uri, 0.1 * i) for i in range(8)]
    slow_to_mirror(dirs[0])

    killed = kill_when_running(sync_proc(str(dirs[0])), uri, experiment)
    procs = [sync_proc(str(out)) for _ in range(3)]
    for proc in procs:
        output = proc.communicate(timeout=300)[0].decode()
        assert proc.returncode == 0, output[-3000:]

    keys = [run_key(results.load_result(d).record) for d in dirs]
    finished_once(uri, experiment, keys)
    status = {r.info.run_id: r.info.status for r in runs(uri, experiment)}
    assert status[killed] == "KILLED"


@pytest.mark.slow
def test_a_retry_after_a_kill_mid_mirror_closes_it_and_logs_once(
    compose: Any, tmp_path: Path
) -> None:
    uri, experiment = f"sqlite:///{tmp_path}/mlflow.db", "retry"
    run_dir = tmp_path / "run"
    cfg = compose(
        "+experiment=sma_cross",
        "data.n_bars=300",
        f"output_dir={run_dir}",
        f"tracking.uri={uri}",
        f"tracking.experiment_name={experiment}",
    )
    job = BacktestJob.from_config(cfg)
    slow_to_mirror(run_dir)
    script = (
        "import json, sys\n"
        "from backtest.tasks._jobs import BacktestJob\n"
        "from backtest.tasks import execute_job\n"
        "execute_job(BacktestJob.from_dict(json.loads(sys.argv[1])))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, json.dumps(job.to_dict())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    killed = kill_when_running(proc, uri, experiment)
    assert results.has_result(run_dir)  # the result was complete before the mirror

    execute_job(job)  # the retry: result complete, mirror not
    execute_job(job)  # and again: nothing more
    key = run_key(results.load_result(run_dir).record)
    finished_once(uri, experiment, [key])
    status = {r.info.run_id: r.info.status for r in runs(uri, experiment)}
    assert status[killed] == "KILLED"
    assert len(status) == 2


@pytest.mark.slow
def test_sync_with_nothing_to_do_opens_no_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second sync answers from its index: it reads no result's config and asks MLflow
    nothing (asserted by refusing both, not by a quiet machine's timing)."""
    uri, experiment = f"sqlite:///{tmp_path}/mlflow.db", "idle"
    out = tmp_path / "outputs"
    dirs = [write_run(out / f"r{i:03d}", experiment, uri, 0.01 * i) for i in range(200)]
    from backtest.tracking import _log
    from backtest.tracking import _sync as sync_module
    from backtest.tracking._sync import sync

    assert len(sync(out).logged) == 200

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an already-synced result was opened")

    with monkeypatch.context() as patch:
        patch.setattr(sync_module, "_sync_one", refuse)
        patch.setattr(_log, "read_config", refuse)
        again = sync(out)
    assert again.logged == [] and again.failed == [] and sorted(again.present) == dirs
    # a result rewritten since (another run into the same folder) is looked at again
    write_run(dirs[5], experiment, uri, 9.0)
    os.utime(dirs[5] / "result.json", ns=(1, 1))
    assert [d for d, _ in sync(out).logged] == [dirs[5]]
