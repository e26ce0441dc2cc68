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
from backtest.queue._execute import parse_payload, payload_job, remove_partial_files
from backtest.queue._policy import WorkerPolicy, install
from backtest.queue._redis import attempts_key, connect, failures_key, mask_url
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

    def unsubscribe(self) -> None:
        # The pubsub thread waits up to 60 s (rq's sleep_time) for a message, and
        # redis-py 8's ``PubSubWorkerThread.stop()`` joins it with no bound: stopping it
        # first kept an idle worker alive for up to a minute after SIGTERM. Instead the
        # thread is told to end without waiting (``stop(timeout=0)`` only clears its
        # flag), then UNSUBSCRIBE is sent: its reply wakes the thread's read, the thread
        # sees the flag and ends at once. The flag is cleared before the reply can
        # arrive, so the read that the reply ends is the thread's last.
        thread = self.pubsub_thread
        if thread is None:
            return
        self.log.info(
            "Worker %s: unsubscribing from channel %s", self.name, self.pubsub_channel_name
        )
        thread.stop(timeout=0)
        with contextlib.suppress(redis.RedisError, OSError):
            self.pubsub.unsubscribe()
        thread.join(timeout=2)
        self.pubsub.close()

    def execute_job(self, job: Job, queue: Queue) -> None:
        _preload_for(job)  # before the fork: the work horse inherits it
        super().execute_job(job, queue)

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
        if isinstance(ret_val, int) and os.WIFSIGNALED(ret_val):
            sig = signal.Signals(os.WTERMSIG(ret_val)).name
            why = f"its process was killed by {sig} (out of memory, or killed by hand)"
        else:
            why = f"its process exited unexpectedly (wait status {ret_val})"
        note_failure(job, why)
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)


def note_failure(job: Job, reason: str) -> None:
    """Append ``"attempt N: reason"`` to the job's failure list (shown by ``status()``)."""
    try:
        attempt = job.connection.hget(attempts_key(job.origin), job.id)
        job.connection.rpush(
            failures_key(job.origin, job.id), f"attempt {int(attempt or 0)}: {reason}"
        )
    except redis.RedisError:  # the reason is a courtesy; the job's fate does not depend on it
        log.debug("could not record why job %s failed", job.id, exc_info=True)


def _failure_reason(job: Job, exc_type: Any, exc_value: Any, tb: Any) -> bool:
    """Exception handler of rq: record why an attempt failed (a raised error or abandonment)."""
    from rq.exceptions import AbandonedJobError

    if exc_type is not None and issubclass(exc_type, AbandonedJobError):
        why = "abandoned: its worker stopped sending heartbeats (killed, or its machine lost)"
    else:
        text = str(exc_value).strip().splitlines()
        why = f"{getattr(exc_type, '__name__', exc_type)}: {text[-1] if text else ''}".rstrip(": ")
    note_failure(job, why)
    return True  # go on to rq's own handling


def _cleanup_run_dir(job: Job) -> None:
    """Remove a failed job's temporary files, in a run folder marked as that job's only."""
    from backtest.queue._policy import owned_run_dir

    try:
        run_dir = owned_run_dir(payload_job(job.args[0]) if job.args else None)
    except Exception:
        run_dir = None
    if run_dir is not None:
        remove_partial_files(run_dir)


_WARM: dict[str, Any] = {}  # the warm-up's backtest, and what was loaded on demand


def _preload() -> None:
    """Import and warm up the engine once in the worker, so each forked job starts warm.

    A tiny backtest is run into a temporary directory: it loads the compiled numba
    kernels, pyarrow and the strategies, which every job would otherwise do again in
    its short-lived work horse. What only some jobs need (matplotlib for figures,
    MLflow for tracking; about a CPU second each) is loaded before the first job that
    needs it (:func:`_preload_for`).
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
    from backtest.tasks import run_backtest
    from backtest.tasks._jobs import BacktestJob

    folder = tempfile.mkdtemp(prefix="backtest-warmup-")
    config = {
        "name": "warmup",
        "seed": 0,
        "summary": False,
        "figures": False,
        "data": asdict(DataConfig(n_bars=120, n_assets=1)),
        "strategy": asdict(SmaCrossConfig(fast=2, slow=5)),
        "engine": asdict(EngineConfig()),
        "search": asdict(SearchConfig()),
        "tracking": asdict(TrackingConfig(enabled=False)),
        "queue": asdict(QueueConfig()),
    }
    try:
        _WARM["backtest"] = run_backtest(BacktestJob(config=config, result_path=folder))
    except Exception as exc:
        log.warning("worker warm-up failed (%s); jobs will start cold", exc)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _needs(job: Job) -> set[str]:
    """What an rq job will load: ``figures`` (matplotlib) and/or ``tracking`` (MLflow)."""
    try:
        data = parse_payload(job.args[0]) if job.args else None
    except Exception:
        return set()
    if data is None or data["kind"] == "noop":
        return set()
    if data["kind"] == "study":
        # a study's trials are scored in memory and told to Optuna; the command that
        # submitted it writes and logs the result: no MLflow, no figures in the worker
        return set()
    config = data["job"].get("config") or {}
    tracking = config.get("tracking")
    needs = set()
    if not isinstance(tracking, dict) or tracking.get("enabled", True):
        needs.add("tracking")
    figures = config.get("figures")
    if figures or (figures is None and "tracking" in needs):
        needs.add("figures")
    if "tracking" in needs and _tracks_without_mlflow():
        needs.discard("tracking")
    return needs


def _tracks_without_mlflow() -> bool:
    """Whether this worker's own store takes runs without MLflow (the sqlite client).

    A job tracks into the worker's store (``MLFLOW_TRACKING_URI``, else the local sqlite
    store in its folder; :mod:`backtest.queue._policy`); a local store at the schema this
    package ships (or none yet) is written directly and MLflow is never imported, so
    preloading it would cost the worker 2-3 s of CPU for nothing
    (:mod:`backtest.tracking._sqlite_client`).
    """
    from backtest.tracking._client import resolve_uri
    from backtest.tracking._sqlite_client import writes_without_mlflow

    try:
        return writes_without_mlflow(resolve_uri(None))
    except Exception:
        return False


def _preload_for(job: Job) -> None:
    """Load what ``job`` needs and this worker has not loaded yet, before it is forked.

    Loaded here once, every later work horse inherits it; a sweep whose jobs draw no
    figures and track nothing (``figures=false tracking=none``) never pays for it,
    which on a small machine would be taken from the other workers' jobs and from
    the sweep's own preparation.
    """
    for need in sorted(_needs(job) - _WARM.keys()):
        _WARM[need] = True
        try:
            if need == "tracking":
                from backtest.tracking import preload

                preload()
            elif "backtest" in _WARM:
                import tempfile

                from backtest.report import _png as plots

                with tempfile.TemporaryDirectory(prefix="backtest-warmup-") as folder:
                    plots.equity_figure(_WARM["backtest"], Path(folder) / "equity.png")
        except Exception as exc:  # a job still runs without it, only slower
            log.warning("preloading %s failed (%s); each job will load it", need, exc)


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
        allowed_modules: Module prefixes (besides ``backtest.``) a job's strategy may
            come from. Fixed for the worker's life: a job's own ``allowed_modules``
            cannot widen it, and nothing outside it is imported.
        data_roots: Folders a job's price files may be read from (the working
            directory when empty); see :mod:`backtest.queue._policy`.
        output_roots: Folders a job's run directory may lie in (the working directory
            when empty).
        study_storage: The Optuna storage URL of distributed searches (with its
            password, never written down); the queue's Redis when unset.

    A job runs under these limits whatever its payload says: a payload is data, never a
    capability (:mod:`backtest.queue._policy`: no ``${...}`` resolved, data and output
    confined, tracking to the worker's own ``MLFLOW_TRACKING_URI`` only).

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
        allowed_modules: Sequence[str] = (),
        data_roots: Sequence[str | os.PathLike[str]] = (),
        output_roots: Sequence[str | os.PathLike[str]] = (),
        study_storage: str | None = None,
    ) -> None:
        from backtest.errors import ConfigError

        self.allowed_modules = tuple(allowed_modules)
        self._roots = (tuple(data_roots), tuple(output_roots), study_storage)
        given = connection is not None
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
        self._connection = connection
        self.policy = WorkerPolicy.of(
            self._roots[0],
            self._roots[1],
            study_storage=self._roots[2],
            queue_url=None if given else self.url,
        )
        self._settings: dict[str, Any] = {
            "worker_ttl": max(int(maintenance_interval), 1) + 15,  # rq blocks dequeue ttl - 15 s
            "job_monitoring_interval": monitoring_interval,
            "maintenance_interval": maintenance_interval,
        }
        self._heartbeat_grace = int(heartbeat_grace)
        self._worker = self._new_worker(name)

    def _new_worker(self, name: str | None = None) -> _RqWorker:
        worker = _RqWorker(
            self.queue_names,
            name=name,
            connection=self._connection,
            serializer=JSONSerializer,
            default_result_ttl=self.config.result_ttl,
            log_job_description=False,
            **self._settings,
        )
        worker.heartbeat_grace = self._heartbeat_grace
        worker.push_exc_handler(_failure_reason)
        return worker

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
        from backtest.strategies import _loader

        previous = _loader._WORKER_MODULES
        _loader.restrict_modules(self.allowed_modules)  # before any job: it cannot widen it
        previous_policy = install(self.policy)  # inherited by every work horse
        try:
            return self._work(burst, max_jobs, logging_level)
        finally:
            install(previous_policy)
            _loader.restrict_modules(previous)  # a worker run inside another program

    def _work(self, burst: bool, max_jobs: int | None, level: str) -> bool:
        _preload()
        log.info(
            "worker %s on %s, queues %s, strategies from backtest.%s; data from %s, "
            "results into %s",
            self.name,
            mask_url(self.url),
            self.queue_names,
            "".join(f", {m}" for m in self.allowed_modules),
            ", ".join(map(str, self.policy.data_roots)),
            ", ".join(map(str, self.policy.output_roots)),
        )
        did = False
        while True:
            worker = self._worker
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                # (raised by rq's teardown when it cannot reach Redis either)
                did |= bool(worker.work(burst=burst, max_jobs=max_jobs, logging_level=level))
            if getattr(worker, "_stop_requested", False) or self._redis_up():
                return did  # a normal end: stopped, burst done, max_jobs reached
            # rq's loop quits when Redis goes away mid-job; this process stays, waits
            # for Redis and carries on under a fresh registration.
            horse = getattr(worker, "_horse_pid", 0) or 0
            self._wait_for_redis(worker.name)
            self._worker = self._new_worker()
            self._recover(worker.name, horse)

    def _redis_up(self) -> bool:
        try:
            return bool(self._connection.ping())
        except (redis.ConnectionError, redis.TimeoutError):
            return False

    def _wait_for_redis(self, old_name: str) -> None:
        """Ping Redis with backoff (0.5 s doubling to 10 s) until it answers."""
        start, delay = time.monotonic(), 0.5
        log.warning(
            "worker %s: Redis at %s went away; this worker keeps running and reconnects",
            old_name,
            mask_url(self.url),
        )
        while not self._redis_up():
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        log.warning(
            "worker %s: Redis at %s is back after %.1f s; resuming",
            old_name,
            mask_url(self.url),
            time.monotonic() - start,
        )

    def _recover(self, old_name: str, horse: int) -> None:
        """Let the job this worker ran when Redis went away end, then retry it at once.

        Its work horse may have finished the job during the outage without being able
        to say so. Once the horse has ended, rq's abandoned-job check runs now (not
        at the next maintenance): a job still marked started is retried, and since its
        result is complete on disk the retry answers from there; nothing is computed
        twice.
        """
        if horse:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(horse, 0)  # let the horse finish (and reap it)
        log.info("worker %s (was %s): checking for jobs left started", self.name, old_name)
        with contextlib.suppress(redis.RedisError):
            self._worker.clean_registries()
