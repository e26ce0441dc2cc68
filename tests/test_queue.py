"""BacktestJobQueue against a real Redis server and real worker processes."""

from __future__ import annotations

import json
import socket
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rq")

from backtest.config import QueueConfig
from backtest.errors import ConfigError, JobNotFound, QueueUnavailable
from backtest.queue import (
    BacktestJobQueue,
    JobFailed,
    JobNotFinished,
    LocalWorkers,
    WaitTimeout,
    mask_url,
)
from backtest.queue._policy import mark_run_dir
from backtest.results import load_result
from backtest.tasks import run_backtest
from backtest.tasks._jobs import BacktestJob
from tests import configs
from tests.quick_workers import quick_workers

SUPPORT = '''
"""Strategies for the queue tests: slow ones (long jobs) and flaky ones (transient errors)."""
import os
import time
from dataclasses import dataclass
from pathlib import Path

from backtest.strategies import SmaCross


@dataclass(frozen=True, slots=True)
class SlowSmaCross(SmaCross):
    """SmaCross that first sleeps ``delay_s`` seconds (``BACKTEST_TEST_DELAY_S`` if < 0)."""

    delay_s: float = -1.0

    def positions(self, prices):
        delay = self.delay_s if self.delay_s >= 0 else float(
            os.environ.get("BACKTEST_TEST_DELAY_S", "1"))
        time.sleep(delay)
        return SmaCross.positions(self, prices)


@dataclass(frozen=True, slots=True)
class FlakySmaCross(SmaCross):
    """Raises OSError on its first attempt (no marker file yet), then works."""

    marker: str = ""

    def positions(self, prices):
        marker = Path(self.marker)
        if not marker.exists():
            marker.touch()
            raise OSError("transient failure on the first attempt")
        return SmaCross.positions(self, prices)
'''


@pytest.fixture(scope="module")
def support_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("support")
    (folder / "queue_support.py").write_text(textwrap.dedent(SUPPORT))
    return folder


@pytest.fixture(scope="module")
def base_config() -> dict[str, Any]:
    cfg = configs.compose("tracking=none", "data.n_bars=300", "data.n_assets=1")
    return BacktestJob.from_config(cfg).config


@pytest.fixture(scope="module")
def mq(redis_url: str) -> str:
    """The queue name the module's workers listen on."""
    return f"tq-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def workers(redis_url: str, mq: str, support_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    logs = tmp_path_factory.mktemp("worker-logs")
    pool = quick_workers(
        redis_url,
        mq,
        2,
        support=support_dir,
        module="queue_support",
        log_dir=logs,
        output_roots=[tmp_path_factory.getbasetemp()],  # every test's tmp_path
    )
    pool.start()
    yield pool
    pool.stop()


def make_job(
    base: dict[str, Any],
    out: Path,
    fast: int,
    *,
    slow: int = 40,
    target: str = "backtest.strategies.SmaCross",
    **params: Any,
) -> BacktestJob:
    config = json.loads(json.dumps(base))
    config["strategy"] = {
        "_target_": target,
        "fast": fast,
        "slow": slow,
        "long_short": False,
        **params,
    }
    config["allowed_modules"] = ["queue_support"]
    return BacktestJob(config=config, result_path=str(out / f"fast{fast}-slow{slow}"))


def queue_for(redis_url: str, name: str, **overrides: Any) -> BacktestJobQueue:
    return BacktestJobQueue(
        QueueConfig(redis_url=redis_url, name=name, job_timeout=60, retry_backoff=1, **overrides)
    )


# --- URLs and an unreachable server ----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:hunter2@10.0.0.5:6379/0", "redis://:***@10.0.0.5:6379/0"),
        ("rediss://alice:hunter2@host:6380/2", "rediss://alice:***@host:6380/2"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("unix:///tmp/r.sock?password=hunter2", "unix:///tmp/r.sock?password=***"),
    ],
    ids=["password", "user-and-password", "no-password", "unix-query-password"],
)
def test_mask_url_hides_the_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_refused_connection_is_reported_with_the_masked_url() -> None:
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(QueueUnavailable) as info:
        BacktestJobQueue(QueueConfig(redis_url=f"redis://:hunter2@127.0.0.1:{port}/0"))
    assert time.monotonic() - start < 10
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "hunter2" not in str(info.value)
    assert info.value.url == f"redis://:***@127.0.0.1:{port}/0"


@pytest.mark.slow
def test_server_that_never_answers_fails_within_ten_seconds() -> None:
    with socket.socket() as listener:  # accepts connections, never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(QueueUnavailable, match=f"127.0.0.1:{port}"):
            BacktestJobQueue(QueueConfig(redis_url=f"redis://127.0.0.1:{port}/0"))
        assert time.monotonic() - start < 10


def test_job_timeout_must_be_positive(redis_url: str) -> None:
    with pytest.raises(ConfigError, match="job_timeout") as info:
        BacktestJobQueue(QueueConfig(redis_url=redis_url, job_timeout=0))
    assert info.value.key == "queue.job_timeout"


# --- unknown ids ---------------------------------------------------------------------------


@pytest.mark.redis
def test_unknown_id_raises_job_not_found_naming_it(redis_url: str, queue_name: str) -> None:
    with queue_for(redis_url, queue_name) as q:
        for call in (q.status, q.result, q.cancel, lambda i: q.wait([i], progress=False)):
            with pytest.raises(JobNotFound, match="no-such-job") as info:
                call("no-such-job")
            assert info.value.job_id == "no-such-job"


# --- running jobs --------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.slow
def test_jobs_run_on_workers_and_match_an_in_process_run(
    redis_url: str, mq: str, workers: LocalWorkers, base_config: dict[str, Any], tmp_path: Path
) -> None:
    jobs = [make_job(base_config, tmp_path / "queued", fast) for fast in (5, 10, 20)]
    with queue_for(redis_url, mq) as q:
        ids = q.submit_many(jobs)
        done = q.wait(ids, timeout=60, progress=False)
        assert [done[i].status for i in ids] == ["finished"] * 3
        for job, job_id in zip(jobs, ids, strict=True):
            record = done[job_id]
            assert record.attempts == 1
            assert record.error is None
            assert record.started_at is not None and record.ended_at is not None
            local = run_backtest(job.with_status("created", result_path=str(tmp_path / job_id)))
            assert q.result(job_id).metrics == pytest.approx(local.metrics, nan_ok=True)
            assert q.result(job_id).record["params"]["fast"] == job.config["strategy"]["fast"]
        assert {r.job_id for r in q.jobs()} >= set(ids)


@pytest.mark.redis
def test_duplicate_submission_executes_once(
    redis_url: str, mq: str, workers: LocalWorkers, base_config: dict[str, Any], tmp_path: Path
) -> None:
    job = make_job(base_config, tmp_path, 7, target="queue_support.SlowSmaCross", delay_s=0.5)
    with queue_for(redis_url, mq) as q:
        ids: list[str] = []
        threads = [threading.Thread(target=lambda: ids.append(q.submit(job))) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert set(ids) == {job.job_id}
        q.submit(job)  # while queued or running
        q.wait([job.job_id], timeout=60, progress=False)
        q.submit(job)  # after it finished
        q.wait([job.job_id], timeout=60, progress=False)
        assert q.status(job.job_id).attempts == 1
        rq_job = q._fetch(job.job_id)
        assert rq_job is not None and len(rq_job.results()) == 1
        first = load_result(job.result_path).record["ended_at"]
        # Redis forgets the job (result_ttl passed): the result directory still answers,
        # and a new submission is recognised as already done.
        rq_job.delete()
        assert q.status(job.job_id).status == "finished"
        q.submit(job)
        assert q._fetch(job.job_id) is None
        assert load_result(job.result_path).record["ended_at"] == first


@pytest.mark.redis
def test_expired_job_without_result_directory_is_not_found(
    redis_url: str, mq: str, workers: LocalWorkers, base_config: dict[str, Any], tmp_path: Path
) -> None:
    import shutil

    job = make_job(base_config, tmp_path, 9)
    with queue_for(redis_url, mq) as q:
        q.submit(job)
        q.wait([job.job_id], timeout=60, progress=False)
        q._fetch(job.job_id).delete()  # type: ignore[union-attr]
        shutil.rmtree(job.result_path)  # type: ignore[arg-type]
        with pytest.raises(JobNotFound, match="expired") as info:
            q.result(job.job_id)
        assert info.value.job_id == job.job_id


@pytest.mark.redis
def test_failed_job_reports_its_reason_and_is_not_retried(
    redis_url: str, mq: str, workers: LocalWorkers, base_config: dict[str, Any], tmp_path: Path
) -> None:
    job = make_job(base_config, tmp_path, 30, slow=20)  # fast >= slow: a config error
    with queue_for(redis_url, mq, retries=2) as q:
        q.submit(job)
        record = q.wait([job.job_id], timeout=60, progress=False)[job.job_id]
        assert record.status == "failed"
        assert record.attempts == 1  # a bad config is not retried
        assert "ConfigError" in (record.error or "") and "slow" in (record.error or "")
        with pytest.raises(JobFailed, match="failed") as info:
            q.result(job.job_id)
        assert info.value.status == "failed"
        assert not (Path(job.result_path) / "result.json").exists()  # type: ignore[arg-type]


@pytest.mark.redis
def test_transient_failure_is_retried_after_the_backoff(
    redis_url: str, mq: str, workers: LocalWorkers, base_config: dict[str, Any], tmp_path: Path
) -> None:
    job = make_job(
        base_config,
        tmp_path,
        11,
        target="queue_support.FlakySmaCross",
        marker=str(tmp_path / "flaky-marker"),
    )
    with queue_for(redis_url, mq, retries=2) as q:
        q.submit(job)
        record = q.wait([job.job_id], timeout=60, progress=False)[job.job_id]
        assert record.status == "finished"
        assert record.attempts == 2
        assert q.result(job.job_id).record["params"]["fast"] == 11


@pytest.mark.redis
def test_job_over_its_timeout_fails_and_publishes_nothing(
    redis_url: str, mq: str, workers: LocalWorkers, base_config: dict[str, Any], tmp_path: Path
) -> None:
    job = make_job(base_config, tmp_path, 12, target="queue_support.SlowSmaCross", delay_s=30)
    run_dir = Path(job.result_path)  # type: ignore[arg-type]
    mark_run_dir(run_dir, job.job_id)  # an earlier attempt's folder, as a worker marks it
    leftover = run_dir / ".result.json.k3j2h1.tmp"  # as an interrupted write leaves it
    leftover.write_text('{"task": "backtest"}')
    with BacktestJobQueue(QueueConfig(redis_url=redis_url, name=mq, job_timeout=1, retries=2)) as q:
        q.submit(job)
        start = time.monotonic()
        record = q.wait([job.job_id], timeout=60, progress=False)[job.job_id]
        assert time.monotonic() - start < 20
        assert record.status == "failed"
        assert "timeout of 1 s" in (record.error or "")
        assert record.attempts == 1  # a timeout is not retried
        assert not (run_dir / "result.json").exists()
        assert not leftover.exists()
        assert not list(run_dir.rglob("*.tmp"))
        with pytest.raises(JobFailed, match="timeout"):
            q.result(job.job_id)


@pytest.mark.redis
@pytest.mark.slow
def test_cancelled_jobs_never_run(
    redis_url: str, queue_name: str, base_config: dict[str, Any], tmp_path: Path, support_dir: Path
) -> None:
    job = make_job(base_config, tmp_path, 13)
    with queue_for(redis_url, queue_name) as q:
        q.submit(job)
        assert q.status(job.job_id).status == "queued"
        assert q.cancel(job.job_id).status == "cancelled"
        with LocalWorkers(redis_url, queue_name, 1, burst=True, output_roots=[tmp_path]) as pool:
            pool.processes[0].wait(60)
        assert q.status(job.job_id).status == "cancelled"
        assert not Path(job.result_path).exists()  # type: ignore[arg-type]
        with pytest.raises(JobNotFinished):
            q.result(job.job_id)


@pytest.mark.redis
def test_running_job_can_be_stopped(
    redis_url: str, mq: str, workers: LocalWorkers, base_config: dict[str, Any], tmp_path: Path
) -> None:
    job = make_job(base_config, tmp_path, 14, target="queue_support.SlowSmaCross", delay_s=30)
    with queue_for(redis_url, mq) as q:
        q.submit(job)
        deadline = time.monotonic() + 30
        while q.status(job.job_id).status != "started" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert q.cancel(job.job_id).status == "cancelled"
        assert not (Path(job.result_path) / "result.json").exists()  # type: ignore[arg-type]


@pytest.mark.redis
def test_wait_times_out_naming_the_pending_jobs(
    redis_url: str, queue_name: str, base_config: dict[str, Any], tmp_path: Path
) -> None:
    job = make_job(base_config, tmp_path, 15)
    with queue_for(redis_url, queue_name) as q:  # no workers on this queue
        q.submit(job)
        with pytest.raises(WaitTimeout, match=job.job_id) as info:
            q.wait([job.job_id], timeout=0.5, progress=False)
        assert info.value.pending == [job.job_id]


# --- only our function runs ----------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.parametrize(
    ("func", "args", "kwargs", "serializer"),
    [
        ("os.makedirs", ["{marker}"], {}, "json"),
        ("backtest.queue._execute.execute", ["{{}}"], {"evil": "{marker}"}, "json"),
        ("os.makedirs", ["{marker}"], {}, "pickle"),
    ],
    ids=["other-function", "our-function-with-kwargs", "pickle-payload"],
)
def test_foreign_payload_is_refused_and_nothing_runs(
    redis_url: str,
    mq: str,
    workers: LocalWorkers,
    tmp_path: Path,
    func: str,
    args: list[str],
    kwargs: dict[str, str],
    serializer: str,
) -> None:
    from rq import Queue
    from rq.serializers import JSONSerializer, PickleSerializer

    marker = tmp_path / "executed"
    with queue_for(redis_url, mq) as q:
        raw = Queue(
            mq,
            connection=q.connection,
            serializer=JSONSerializer if serializer == "json" else PickleSerializer,
        )
        job = raw.enqueue_call(
            func,
            args=[a.format(marker=marker) for a in args],
            kwargs={k: v.format(marker=marker) for k, v in kwargs.items()},
            timeout=30,
            job_id=f"foreign-{uuid.uuid4().hex[:8]}",
        )
        deadline = time.monotonic() + 30
        while q._poll([job.id])[job.id] not in ("failed", "finished") and (
            time.monotonic() < deadline
        ):
            time.sleep(0.1)
        rq_job = q._fetch(job.id)
        assert rq_job is not None and rq_job.get_status().value == "failed"
        reason = rq_job.latest_result().exc_string or ""
        if serializer == "json":
            assert "refused" in reason and "nothing was executed" in reason
        else:
            assert "DeserializationError" in reason
        assert not marker.exists()


@pytest.mark.redis
def test_status_of_a_job_that_is_not_ours_is_not_found(redis_url: str, queue_name: str) -> None:
    from rq import Queue
    from rq.serializers import JSONSerializer

    with queue_for(redis_url, queue_name) as q:
        Queue(queue_name, connection=q.connection, serializer=JSONSerializer).enqueue_call(
            "os.getcwd", job_id="not-ours"
        )
        with pytest.raises(JobNotFound, match="not-ours"):
            q.status("not-ours")


@pytest.mark.redis
@pytest.mark.slow
def test_redis_stopped_while_waiting_is_reported_within_ten_seconds(
    own_redis: Any, base_config: dict[str, Any], tmp_path: Path, support_dir: Path
) -> None:
    name = f"tq-{uuid.uuid4().hex[:8]}"
    job = make_job(base_config, tmp_path, 16, target="queue_support.SlowSmaCross", delay_s=30)
    q = queue_for(own_redis.url, name)
    with LocalWorkers(
        own_redis.url,
        name,
        1,
        env={"PYTHONPATH": str(support_dir)},
        allowed_modules=["queue_support"],
        output_roots=[tmp_path],
    ) as pool:
        q.submit(job)
        deadline = time.monotonic() + 30
        while q.status(job.job_id).status != "started" and time.monotonic() < deadline:
            time.sleep(0.1)
        stopped_at: list[float] = []

        def stop_redis() -> None:
            own_redis.stop()
            stopped_at.append(time.monotonic())

        threading.Timer(1.0, stop_redis).start()  # while wait() is polling
        with pytest.raises(QueueUnavailable) as info:
            q.wait([job.job_id], progress=False, outage_s=3)  # waits out 3 s, then says so
        assert stopped_at and time.monotonic() - stopped_at[0] < 10
        assert info.value.url == own_redis.url
        pool.stop(timeout_s=2)


def test_queue_configs_pick_the_server(compose: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationResolutionError

    monkeypatch.setenv("REDIS_URL", "redis://:pw@queue-host:6379/0")
    assert compose().queue.redis_url == "redis://:pw@queue-host:6379/0"
    assert compose("queue=remote").queue.redis_url == "redis://:pw@queue-host:6379/0"
    monkeypatch.delenv("REDIS_URL")
    assert compose().queue.redis_url is None  # embedded
    with pytest.raises(InterpolationResolutionError, match="REDIS_URL"):
        OmegaConf.to_object(compose("queue=remote").queue)


@pytest.mark.redis
@pytest.mark.slow
def test_crashed_work_horse_is_retried_and_its_partial_files_removed(
    redis_url: str, mq: str, workers: LocalWorkers, base_config: dict[str, Any], tmp_path: Path
) -> None:
    import os
    import signal

    import psutil

    job = make_job(base_config, tmp_path, 17, target="queue_support.SlowSmaCross", delay_s=3)
    run_dir = Path(job.result_path)  # type: ignore[arg-type]
    with queue_for(redis_url, mq, retries=2) as q:
        q.submit(job)
        horse = None
        deadline = time.monotonic() + 30
        while horse is None and time.monotonic() < deadline:
            if q.status(job.job_id).status == "started":
                for proc in workers.processes:
                    children = psutil.Process(proc.pid).children()
                    if children:
                        horse = children[0]
            time.sleep(0.05)
        assert horse is not None
        run_dir.mkdir(parents=True, exist_ok=True)
        leftover = run_dir / ".trades.parquet.x8f2.tmp"
        leftover.write_bytes(b"PAR1")
        os.kill(horse.pid, signal.SIGKILL)  # the job's process dies, its worker lives
        record = q.wait([job.job_id], timeout=60, progress=False)[job.job_id]
        assert record.status == "finished"
        assert record.attempts == 2
        assert not leftover.exists()
        assert (run_dir / "result.json").exists()
