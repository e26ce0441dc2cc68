"""Workers: rq's forking worker, tuned so a killed worker's job is retried quickly.

rq keeps a started job in the ``StartedJobRegistry`` with a deadline that the worker
extends every ``job_monitoring_interval`` seconds; when a worker dies (SIGKILL, a
lost machine) the deadline passes and the next maintenance run of any worker on the
queue retries the job (or fails it when no retries are left). rq's defaults (a
30 s heartbeat plus 60 s of grace, maintenance every 10 minutes) make that take many
minutes, so :class:`BacktestWorker` uses short intervals: with the defaults below a
killed worker's job is back on the queue within about 35 seconds. Maintenance also
runs while a worker is busy, so detection does not wait for an idle worker.

Other guarantees added on top of rq:

- only our job function runs (:class:`~backtest.queue._rqjob.BacktestRqJob`);
- a work horse whose worker died exits at once, so a retried job never runs twice
  side by side;
- failures that a retry cannot fix (a timeout, a bad config, bad data, a refused
  payload) are not retried; crashes and killed workers are;
- retries waiting out ``retry_backoff`` are put back on the queue by the workers
  themselves (no separate rq scheduler process);
- a timed-out job fails with a reason that names the limit, and leaves no temporary
  files in its run directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from rq import Queue, Worker
from rq.exceptions import DeserializationError
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty
from rq.utils import current_timestamp

from backtest.config import QueueConfig
from backtest.errors import BacktestError
from backtest.masking import known_urls_env
from backtest.queue._execute import payload_job, remove_partial_files
from backtest.queue._redis import connect, die_with_parent, mask_url
from backtest.queue._rqjob import BacktestRqJob

log = logging.getLogger("backtest.queue")

#: Failures a retry cannot fix: not retried even when retries are left.
NOT_RETRIED: tuple[type[BaseException], ...] = (
    JobTimeoutException,
    BacktestError,
    DeserializationError,
)


class JobTimeout(JobTimeoutException):
    """A job ran longer than ``queue.job_timeout`` and was stopped."""


class _TimeoutPenalty(UnixSignalDeathPenalty):
    """rq's SIGALRM timeout, with a message that names the job and the setting."""

    def __init__(self, timeout: Any, exception: Any = JobTimeout, **kwargs: Any) -> None:
        super().__init__(timeout, exception, **kwargs)
        self._job_id = kwargs.get("job_id")

    def handle_death_penalty(self, signum: int, frame: Any) -> None:
        if self._exception is JobTimeoutException or issubclass(self._exception, JobTimeout):
            raise JobTimeout(
                f"job {self._job_id!r} exceeded its timeout of {self._timeout} s "
                "(queue.job_timeout) and was stopped; no result was published"
            )
        super().handle_death_penalty(signum, frame)


class _RqQueue(Queue):
    """rq's ``Queue`` whose maintenance lock expires after a minute, not 15.

    A worker killed while it cleans the registries leaves the lock behind; with rq's
    899 s expiry nobody would notice abandoned jobs for a quarter of an hour.
    """

    maintenance_lock_s = 60

    def acquire_maintenance_lock(self) -> bool:
        """Take the lock that lets one worker at a time clean this queue's registries."""
        key = self.registry_cleaning_key
        return bool(self.connection.set(key, 1, nx=True, ex=self.maintenance_lock_s))


class _RqWorker(Worker):
    """rq's forking ``Worker`` with the guarantees listed in the module docstring."""

    job_class = BacktestRqJob
    queue_class = _RqQueue
    death_penalty_class = _TimeoutPenalty
    heartbeat_grace: int = 15

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # rq adds a fixed 60 s; a short grace lets maintenance notice a dead worker sooner.
        interval = int(self.job_monitoring_interval)
        if job.timeout and job.timeout > 0:
            interval = int(min(job.timeout - working_time, interval))
        return max(interval, 1) + self.heartbeat_grace

    def maintain_heartbeats(self, job: Job, execution: Any) -> None:
        super().maintain_heartbeats(job, execution)
        if self.should_run_maintenance_tasks:
            try:
                self.run_maintenance_tasks()
            except redis.RedisError:
                log.exception("maintenance failed while busy; will retry")

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        self.promote_due_retries()

    def promote_due_retries(self) -> int:
        """Put retries whose backoff has passed back on their queue; returns how many.

        Each due job is claimed with ``ZREM`` first, so when several workers do this at
        once every job is enqueued exactly once.
        """
        promoted = 0
        for queue in self.queues:
            registry = queue.scheduled_job_registry
            for job_id in registry.get_jobs_to_schedule(current_timestamp()):
                if not self.connection.zrem(registry.key, job_id):
                    continue  # another worker claimed it
                try:
                    job = self.job_class.fetch(
                        job_id, connection=self.connection, serializer=self.serializer
                    )
                except Exception:
                    continue
                at_front = job.enqueue_at_front_on_retry or job.should_enqueue_at_front()
                queue.enqueue_job(job, at_front=at_front)
                promoted += 1
        return promoted

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        parent = os.getppid()

        def _exit_with_parent() -> None:
            while True:
                time.sleep(0.5)
                if os.getppid() != parent:
                    os._exit(1)  # our worker died: the job will be retried elsewhere

        threading.Thread(target=_exit_with_parent, name="parent-watch", daemon=True).start()
        super().main_work_horse(job, queue)

    def _finalize_failure(self, job: Job, queue: Queue, execution: Any, exc_info: Any) -> None:
        if exc_info[0] is not None and issubclass(exc_info[0], NOT_RETRIED):
            job.retries_left = 0
        _cleanup_run_dir(job)
        super()._finalize_failure(job, queue, execution, exc_info)

    def _handle_stopped_job(self, job: Job, queue: Queue, execution: Any) -> None:
        _cleanup_run_dir(job)  # a cancelled job may have been stopped mid-write
        super()._handle_stopped_job(job, queue, execution)

    def handle_work_horse_killed(self, job: Job, retpid: Any, ret_val: Any, rusage: Any) -> None:
        _cleanup_run_dir(job)
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)


def _cleanup_run_dir(job: Job) -> None:
    try:
        record = payload_job(job.args[0]) if job.args else None
    except Exception:
        record = None
    if record is not None and record.result_path:
        remove_partial_files(Path(record.result_path))


def _preload() -> None:
    """Import and warm up the engine once in the worker, so each forked job starts warm.

    A tiny backtest is run into a temporary directory: it loads the compiled numba
    kernels, pyarrow and the strategies, which every job would otherwise do again in
    its short-lived work horse.
    """
    import shutil
    import tempfile
    from dataclasses import asdict

    from backtest.config import (
        DataConfig,
        EngineConfig,
        QueueConfig,
        SearchConfig,
        SmaCrossConfig,
        TrackingConfig,
    )
    from backtest.jobs import BacktestJob
    from backtest.tasks import run_backtest

    folder = tempfile.mkdtemp(prefix="backtest-warmup-")
    config = {
        "name": "warmup",
        "seed": 0,
        "summary": False,
        "data": asdict(DataConfig(n_bars=120, n_assets=1)),
        "strategy": asdict(SmaCrossConfig(fast=2, slow=5)),
        "engine": asdict(EngineConfig()),
        "search": asdict(SearchConfig()),
        "tracking": asdict(TrackingConfig(enabled=False)),
        "queue": asdict(QueueConfig()),
    }
    try:
        run_backtest(BacktestJob(config=config, result_path=folder))
    except Exception as exc:
        log.warning("worker warm-up failed (%s); jobs will start cold", exc)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    try:  # MLflow's import and SQL store load once here, not in every forked job
        from backtest.tracking import preload

        preload()
    except Exception as exc:  # tracking is a mirror; jobs still run without it
        log.warning("MLflow preload failed (%s); each job will import it", exc)


class BacktestWorker:
    """A worker process that runs backtest jobs from one or more queues.

    Args:
        queues: Queue names to listen on (``config.name`` when empty).
        config: The queue settings; ``config.redis_url`` must name a server.
        connection: An existing Redis client instead of ``config.redis_url``.
        name: Worker name shown in Redis (unique; random when unset).
        maintenance_interval: Seconds between maintenance runs (abandoned-job checks).
        monitoring_interval: Seconds between heartbeats of a running job.
        heartbeat_grace: Seconds a heartbeat may be late before the job counts as abandoned.

    A killed worker's job is retried within about ``monitoring_interval +
    heartbeat_grace + maintenance_interval`` seconds (35 s with the defaults), provided
    another worker listens on the queue.

    Raises:
        ConfigError: no Redis URL.
        QueueUnavailable: Redis cannot be reached (names the masked URL).
    """

    def __init__(
        self,
        queues: str | Sequence[str] = (),
        config: QueueConfig | None = None,
        *,
        connection: redis.Redis | None = None,
        name: str | None = None,
        maintenance_interval: int = 10,
        monitoring_interval: int = 5,
        heartbeat_grace: int = 15,
    ) -> None:
        from backtest.errors import ConfigError

        self.config = config or QueueConfig()
        names = [queues] if isinstance(queues, str) else list(queues)
        self.queue_names = names or [self.config.name]
        if connection is None:
            if not self.config.redis_url:
                raise ConfigError(
                    "a worker needs queue.redis_url (or --url / REDIS_URL)", key="queue.redis_url"
                )
            self.url = self.config.redis_url
            connection = connect(self.url, socket_timeout=None)
        else:
            kwargs = connection.connection_pool.connection_kwargs
            self.url = str(kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}")
        worker_ttl = max(int(maintenance_interval), 1) + 15  # rq blocks dequeue for ttl - 15 s
        self._worker = _RqWorker(
            self.queue_names,
            name=name,
            connection=connection,
            serializer=JSONSerializer,
            worker_ttl=worker_ttl,
            job_monitoring_interval=monitoring_interval,
            maintenance_interval=maintenance_interval,
            default_result_ttl=self.config.result_ttl,
            log_job_description=False,
        )
        self._worker.heartbeat_grace = int(heartbeat_grace)

    @property
    def name(self) -> str:
        """The worker's name in Redis."""
        return str(self._worker.name)

    def work(
        self, burst: bool = False, *, max_jobs: int | None = None, logging_level: str = "INFO"
    ) -> bool:
        """Process jobs until stopped (SIGTERM/SIGINT: finish the current job, then exit).

        Args:
            burst: Exit when the queues are empty instead of waiting for more jobs.
            max_jobs: Exit after this many jobs.
            logging_level: Log level of rq's worker log.

        Returns:
            Whether any job was processed.
        """
        _preload()
        log.info("worker %s on %s, queues %s", self.name, mask_url(self.url), self.queue_names)
        return bool(self._worker.work(burst=burst, max_jobs=max_jobs, logging_level=logging_level))


class LocalWorkers:
    """Start ``n`` worker processes on this machine (``python -m backtest.worker``).

    Used by the launcher for an embedded Redis, by tests and by the benchmark. The
    processes are stopped by :meth:`stop` (warm shutdown, then SIGKILL after
    ``stop_timeout_s``).

    Args:
        url: Redis URL the workers connect to.
        queue: Queue name.
        n: Number of worker processes.
        maintenance_interval: Passed to each worker.
        monitoring_interval: Passed to each worker.
        heartbeat_grace: Passed to each worker.
        env: Extra environment variables for the workers.
        log_dir: Write each worker's output to ``<log_dir>/worker-<i>.log`` (else discarded).
    """

    def __init__(
        self,
        url: str,
        queue: str,
        n: int,
        *,
        maintenance_interval: int = 10,
        monitoring_interval: int = 5,
        heartbeat_grace: int = 15,
        env: dict[str, str] | None = None,
        log_dir: str | Path | None = None,
        burst: bool = False,
    ) -> None:
        self.url, self.queue, self.n = url, queue, int(n)
        self._args = [
            "--queues",
            queue,
            "--maintenance-interval",
            str(maintenance_interval),
            "--monitoring-interval",
            str(monitoring_interval),
            "--heartbeat-grace",
            str(heartbeat_grace),
            *(["--burst"] if burst else []),
        ]
        self._env = env or {}
        self._log_dir = Path(log_dir) if log_dir else None
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> LocalWorkers:
        """Start the processes (the URL goes through ``REDIS_URL``, never the command line)."""
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, **known_urls_env(), **self._env, "REDIS_URL": self.url}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        for i in range(len(self.processes), self.n):
            out: Any = subprocess.DEVNULL
            if self._log_dir is not None:
                self._log_dir.mkdir(parents=True, exist_ok=True)
                out = open(self._log_dir / f"worker-{i}.log", "ab")  # noqa: SIM115
            proc = subprocess.Popen(
                [sys.executable, "-m", "backtest.worker", *self._args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
            if out is not subprocess.DEVNULL:
                out.close()
            self.processes.append(proc)
        return self

    def alive(self) -> list[subprocess.Popen[bytes]]:
        """The worker processes still running."""
        return [p for p in self.processes if p.poll() is None]

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask every worker to stop after its current job; SIGKILL those still running."""
        for proc in self.alive():
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.processes:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.processes = []

    def __enter__(self) -> LocalWorkers:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
