"""Workers: a real SIGKILL mid-job, the console command, and life without rq installed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from backtest.config import QueueConfig
from backtest.queue import BacktestJobQueue, LocalWorkers
from backtest.tasks._jobs import BacktestJob
from tests import configs

ROOT = Path(__file__).resolve().parent.parent


def _env(**extra: str) -> dict[str, str]:
    # the worker's own settings come from here only: neither a Redis URL nor a tracking URI
    # that an earlier test left in this process's environment (mlflow.set_tracking_uri does)
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "MLFLOW_TRACKING_URI")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def _base_config() -> dict[str, Any]:
    cfg = configs.compose("tracking=none", "data.n_bars=300", "data.n_assets=1")
    return BacktestJob.from_config(cfg).config


# --- the console command ---------------------------------------------------------------------


def test_worker_command_needs_a_url() -> None:
    pytest.importorskip("rq")
    proc = subprocess.run(
        [sys.executable, "-m", "backtest.queue._cli", "--queues", "q"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "queue.redis_url" in proc.stderr


def test_worker_command_reports_an_unreachable_server_without_the_password() -> None:
    pytest.importorskip("rq")
    proc = subprocess.run(
        [sys.executable, "-m", "backtest.queue._cli", "--queues", "q"],
        env=_env(REDIS_URL="redis://:hunter2@127.0.0.1:1/0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "redis://:***@127.0.0.1:1/0" in proc.stderr
    assert "hunter2" not in proc.stderr + proc.stdout


# --- without rq ------------------------------------------------------------------------------

HIDE_RQ = """
import sys
# Pretend rq and redis are not installed: importing them raises ImportError and
# importlib.util.find_spec() returns None.
for _name in ("rq", "redis"):
    sys.modules[_name] = None
"""

WITHOUT_RQ_CHECK = """
import json, sys
import backtest
assert "rq" not in [m.split(".")[0] for m in sys.modules if sys.modules[m] is not None]
assert backtest.BacktestJobQueue is None, backtest.BacktestJobQueue
assert backtest.BacktestWorker is None, backtest.BacktestWorker
config = json.loads(sys.argv[1])
result = backtest.run_backtest(backtest.BacktestJob(config=config, result_path=sys.argv[2]))
assert backtest.load_result(sys.argv[2]).metrics["sharpe_ratio"] == result.metrics["sharpe_ratio"]
for name in backtest.__all__:
    if name not in ("BacktestJobQueue", "BacktestWorker"):
        try:
            getattr(backtest, name)
        except ModuleNotFoundError as exc:  # only a missing rq/redis would be our failure
            assert exc.name.split(".")[0] not in ("rq", "redis"), (name, exc)
print("ok")
"""


def test_without_rq_the_queue_names_are_none_and_backtests_still_run(tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HIDE_RQ)
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(hook), env["PYTHONPATH"]])
    config = json.dumps(_base_config())
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_RQ_CHECK, config, str(tmp_path / "run")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")
    worker = subprocess.run(
        [sys.executable, "-m", "backtest.queue._cli", "--url", "redis://127.0.0.1:6379/0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 2
    assert "needs rq and redis" in worker.stderr


# --- a worker in this process ----------------------------------------------------------------


@pytest.mark.redis
def test_burst_worker_runs_the_queue_and_stops(
    redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    from backtest.queue import BacktestWorker

    base = _base_config()
    cfg = QueueConfig(redis_url=redis_url, name=queue_name, job_timeout=60)
    with BacktestJobQueue(cfg) as q:
        job = BacktestJob(config=base, result_path=str(tmp_path / "run"))
        q.submit(job)
        worker = BacktestWorker([queue_name], cfg, maintenance_interval=1, output_roots=[tmp_path])
        assert worker.work(burst=True) is True
        assert q.status(job.job_id).status == "finished"
        assert worker.work(burst=True) is False  # nothing left


# --- SIGKILL mid-job -------------------------------------------------------------------------


def _queue_processes(queue: str) -> dict[int, int]:
    """pid -> ppid of every process started for ``queue`` (workers and their horses)."""
    import psutil

    found = {}
    for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "backtest.queue._cli" in cmdline and queue in cmdline:
            found[proc.info["pid"]] = proc.info["ppid"]
    return found


@pytest.mark.redis
@pytest.mark.slow
def test_sigkilled_worker_loses_no_job_and_duplicates_no_result(
    redis_url: str, queue_name: str, tmp_path: Path, slow_strategy_dir: Path
) -> None:
    from rq import Worker
    from rq.results import Result

    from tests.quick_workers import quick_workers, sma_jobs

    jobs = sma_jobs(_base_config(), 20, "slow_support.SlowSmaCross", tmp_path / "out", delay_s=1.0)

    cfg = QueueConfig(redis_url=redis_url, name=queue_name, job_timeout=60, retries=2)
    pool = quick_workers(
        redis_url,
        queue_name,
        2,
        support=slow_strategy_dir,
        module="slow_support",
        maintenance_interval=2,
        log_dir=tmp_path / "logs",
        output_roots=[tmp_path],
    )
    with BacktestJobQueue(cfg) as q, pool:
        ids = q.submit_many(jobs)
        assert len(set(ids)) == 20
        # Kill a worker while it runs a job (its main process: as if its machine died).
        victim, killed_job = None, None
        deadline = time.monotonic() + 60
        while victim is None and time.monotonic() < deadline:
            for w in Worker.all(connection=q.connection, queue=q.queue):
                current = w.get_current_job_id()
                ours = w.pid in {p.pid for p in pool.processes}
                if ours and current and q.status(current).status == "started":
                    victim, killed_job = w.pid, current
                    break
            time.sleep(0.05)
        assert victim is not None and killed_job is not None
        os.killpg(victim, signal.SIGKILL)
        killed_at = time.time()
        survivor = next(p.pid for p in pool.processes if p.pid != victim)

        # Its work horse notices and exits: only the survivor and its horse remain.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            left = _queue_processes(queue_name)
            strays = [pid for pid, ppid in left.items() if survivor not in (pid, ppid)]
            if not strays:
                break
            time.sleep(0.2)
        assert not strays, f"processes of the killed worker still run: {strays}"

        # The killed job leaves "started" once a maintenance run finds its heartbeat gone.
        deadline = time.monotonic() + 120
        while q._poll([killed_job])[killed_job] == "started" and time.monotonic() < deadline:
            time.sleep(0.1)
        detected = time.time() - killed_at
        print(f"killed job {killed_job} requeued {detected:.1f} s after SIGKILL")
        assert detected < 90, "the killed worker's job was not requeued within 90 s"

        done = q.wait(ids, timeout=150, progress=False)

        assert {r.status for r in done.values()} == {"finished"}
        retried = done[killed_job]
        assert retried.attempts == 2
        (reason,) = retried.attempt_errors  # why attempt 1 was retried, kept after success
        assert reason.startswith("attempt 1: abandoned"), reason
        from datetime import datetime

        restarted = datetime.fromisoformat(str(retried.started_at)).timestamp()
        print(f"killed job {killed_job} restarted {restarted - killed_at:.1f} s after SIGKILL")
        assert restarted - killed_at < 90, "the killed job was not retried within 90 s"
        # Every result exactly once, complete, with no partial files left behind.
        results = sorted((tmp_path / "out").rglob("result.json"))
        assert [p.parent.name for p in results] == [f"job{i:02d}" for i in range(20)]
        assert not list((tmp_path / "out").rglob("*.tmp"))
        for job in jobs:
            record = json.loads((Path(str(job.result_path)) / "result.json").read_text())
            assert record["job_id"] == job.job_id
            rq_job = q._fetch(job.job_id)
            assert rq_job is not None
            successes = [r for r in rq_job.results() if r.type == Result.Type.SUCCESSFUL]
            assert len(successes) == 1, job.job_id
        # Nothing is left in the started registry (with rq's own cleanup applied).
        assert q.queue.started_job_registry.get_job_ids(cleanup=True) == []
        assert q.counts()["started"] == 0
        assert q.counts()["failed"] == 0


# --- the allow-list is the worker's, not the job's --------------------------------------------

EVIL = """
from pathlib import Path
import os
Path(os.environ["EVIL_MARKER"]).write_text("imported")
from backtest.strategies import SmaCross as Evil
"""


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("allowed", [False, True], ids=["refused", "worker-allows"])
def test_a_queued_job_cannot_widen_the_workers_allow_list(
    redis_url: str, queue_name: str, tmp_path: Path, allowed: bool
) -> None:
    support = tmp_path / "support"
    support.mkdir()
    (support / "evilmod.py").write_text(EVIL)
    marker = tmp_path / "imported"
    config = _base_config()
    config["allowed_modules"] = ["evilmod"]  # the payload tries to allow itself
    config["strategy"] = {**config["strategy"], "_target_": "evilmod.Evil"}
    job = BacktestJob(config=config, result_path=str(tmp_path / "run"))
    cfg = QueueConfig(redis_url=redis_url, name=queue_name, job_timeout=60, retries=0)
    with (
        BacktestJobQueue(cfg) as q,
        LocalWorkers(
            redis_url,
            queue_name,
            1,
            env={"PYTHONPATH": str(support), "EVIL_MARKER": str(marker)},
            allowed_modules=["evilmod"] if allowed else [],
            output_roots=[tmp_path],
        ),
    ):
        q.submit(job)
        (record,) = q.wait([job.job_id], timeout=120, progress=False).values()
    if allowed:  # the control: the module is importable and would have run
        assert record.status == "finished" and marker.read_text() == "imported"
        return
    assert record.status == "failed"
    assert "evilmod.Evil" in str(record.error) and "--allow-module" in str(record.error)
    assert not marker.exists()  # refused before import: its side effect never ran


@pytest.mark.redis
@pytest.mark.slow
def test_a_killed_work_horse_says_why_its_job_was_retried(
    redis_url: str, queue_name: str, tmp_path: Path, slow_strategy_dir: Path
) -> None:
    import psutil

    config = _base_config()
    config["allowed_modules"] = ["slow_support"]
    config["strategy"] = {
        "_target_": "slow_support.SlowSmaCross",
        "fast": 5,
        "slow": 60,
        "delay_s": 3.0,
    }
    job = BacktestJob(config=config, result_path=str(tmp_path / "run"))
    cfg = QueueConfig(
        redis_url=redis_url, name=queue_name, job_timeout=60, retries=1, retry_backoff=1
    )
    pool = LocalWorkers(
        redis_url,
        queue_name,
        1,
        maintenance_interval=1,
        env={"PYTHONPATH": str(slow_strategy_dir)},
        allowed_modules=["slow_support"],
        output_roots=[tmp_path],
    )
    with BacktestJobQueue(cfg) as q, pool:
        q.submit(job)
        deadline = time.monotonic() + 60
        horses: list[Any] = []
        while not horses and time.monotonic() < deadline:
            if q.status(job.job_id).status == "started":
                horses = psutil.Process(pool.processes[0].pid).children()
            time.sleep(0.05)
        assert horses, "the job never started"
        horses[0].send_signal(signal.SIGKILL)  # as the kernel's OOM killer would
        (record,) = q.wait([job.job_id], timeout=120, progress=False).values()
    assert record.status == "finished" and record.attempts == 2
    assert record.attempt_errors == [
        "attempt 1: its process was killed by SIGKILL (out of memory, or killed by hand)"
    ]


LAZY_PRELOAD = """
import json, sys
from backtest.config import QueueConfig
from backtest.tasks._jobs import BacktestJob
from backtest.queue import BacktestJobQueue, BacktestWorker

def loaded():
    return sorted(m for m in ("mlflow", "matplotlib") if m in sys.modules)

url, name, out = sys.argv[1], sys.argv[2], sys.argv[3]
config = {**json.loads(sys.argv[4]), "figures": False}
cfg = QueueConfig(redis_url=url, name=name, job_timeout=60)
tracked = {**config, "figures": True, "tracking": {**config["tracking"], "enabled": True,
                                                   "uri": f"sqlite:///{out}/mlflow.db"}}
with BacktestJobQueue(cfg) as q:
    worker = BacktestWorker([name], cfg, maintenance_interval=1)
    q.submit(BacktestJob(config=config, job_id=f"{name}-a", result_path=f"{out}/plain"))
    assert worker.work(burst=True)
    print("after a plain job:", loaded())
    job = BacktestJob(config=tracked, job_id=f"{name}-b", result_path=f"{out}/tracked")
    q.submit(job)
    assert BacktestWorker([name], cfg, maintenance_interval=1).work(burst=True)
    assert q.status(job.job_id).status == "finished"
    print("after a tracked job with figures:", loaded())
"""


@pytest.mark.redis
def test_a_worker_loads_mlflow_and_matplotlib_only_once_a_job_needs_them(
    redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    """About a CPU second each, loaded before the first job that needs them forks, not
    at start-up: a ``figures=false tracking=none`` sweep never pays for them (and MLflow
    not even a tracked one, whose local store the sqlite client writes)."""
    proc = subprocess.run(
        [sys.executable, "-c", LAZY_PRELOAD, redis_url, queue_name, str(tmp_path),
         json.dumps(_base_config())],
        env=_env(), capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "after a plain job: []" in proc.stdout
    # the run is logged into the worker's local store without MLflow (the sqlite client)
    assert "after a tracked job with figures: ['matplotlib']" in proc.stdout
    # tracked to the worker's own store (its default in its working directory), not to
    # the store the job named: a payload's tracking.uri is ignored on a worker
    assert (tmp_path / "outputs" / "mlflow.db").exists()
    assert not (tmp_path / "mlflow.db").exists()
    con = sqlite3.connect(tmp_path / "outputs" / "mlflow.db")
    assert con.execute("SELECT status FROM runs").fetchall() == [("FINISHED",)]
    con.close()
    assert (tmp_path / "tracked" / "figures" / "equity.png").exists()


def test_a_distributed_study_job_preloads_neither_mlflow_nor_matplotlib() -> None:
    """A study's worker scores trials in memory (the submitting command logs the result):
    preloading MLflow for it cost each worker 3-4 CPU seconds for nothing."""
    from types import SimpleNamespace

    from backtest.queue._execute import study_payload
    from backtest.queue._worker import _needs

    study = SimpleNamespace(args=[study_payload({"study_name": "s", "storage": "sqlite:///s.db"})])
    assert _needs(study) == set()  # type: ignore[arg-type]


def test_a_job_into_the_local_store_preloads_figures_but_no_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's local store is written without MLflow (made from the snapshot when new):
    a tracked job preloads matplotlib only; a store MLflow must write still preloads it."""
    from types import SimpleNamespace

    from backtest.queue._worker import _needs
    from backtest.tracking import _sqlite_client

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(_sqlite_client.SWITCH, raising=False)
    job = SimpleNamespace(args=[json.dumps({"kind": "job", "job": {"config": {}}})])
    assert _needs(job) == {"figures"}  # type: ignore[arg-type]
    assert not (tmp_path / "outputs" / "mlflow.db").exists()  # asking created nothing
    monkeypatch.setenv(_sqlite_client.SWITCH, "mlflow")  # every write through MLflow again
    assert _needs(job) == {"tracking", "figures"}  # type: ignore[arg-type]
    monkeypatch.delenv(_sqlite_client.SWITCH)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # a server: MLflow's client
    assert _needs(job) == {"tracking", "figures"}  # type: ignore[arg-type]


@pytest.mark.redis
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_worker_exits_at_once_with_its_log_flushed(
    redis_url: str, queue_name: str, tmp_path: Path, busy_cores: int, sig: signal.Signals
) -> None:
    """An idle worker asked to stop is gone within 2 s, with both cores busy elsewhere.

    It used to wait out its pubsub thread's 60 s read (redis-py 8 joins that thread on
    stop), so docker's and systemd's 10 s grace ended in a SIGKILL."""
    with BacktestJobQueue(QueueConfig(redis_url=redis_url, name=queue_name)) as q:
        workers = q.start_workers(1, log_dir=tmp_path)
        q.wait_for_workers(1)
        (proc,) = workers.processes
        time.sleep(0.5)
        start = time.monotonic()
        proc.send_signal(sig)
        code = proc.wait(30)
        elapsed = time.monotonic() - start
        workers.stop()
    assert code == 0
    assert elapsed < 2.0, f"the worker took {elapsed:.2f} s to exit"
    assert "unsubscribing from channel" in (tmp_path / "worker-0.log").read_text()
