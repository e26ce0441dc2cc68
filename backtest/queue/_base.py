"""The plumbing of :class:`~backtest.queue.BacktestJobQueue`: connection, polling, lifetime.

Redis holds the queue and, per queue, a durable index ``job_id -> submitted record``
(a hash without TTL); see :mod:`backtest.queue._client` for what is built on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Self, TypeVar

import redis
from rq import Queue
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from backtest.config import QueueConfig
from backtest.errors import ConfigError, QueueUnavailable
from backtest.queue._errors import WaitTimeout
from backtest.queue._redis import (
    EmbeddedRedis,
    connect,
    guard,
    index_key,
    mask_url,
    unavailable,
)
from backtest.queue._rqjob import BacktestRqJob
from backtest.tasks._jobs import BacktestJob

log = logging.getLogger("backtest.queue")
_T = TypeVar("_T")

_STATUS = {
    JobStatus.CREATED: "queued",
    JobStatus.QUEUED: "queued",
    JobStatus.DEFERRED: "queued",
    JobStatus.SCHEDULED: "queued",  # a retry waiting out retry_backoff
    JobStatus.STARTED: "started",
    JobStatus.FINISHED: "finished",
    JobStatus.FAILED: "failed",
    JobStatus.STOPPED: "cancelled",
    JobStatus.CANCELED: "cancelled",
}
DONE = ("finished", "failed", "cancelled")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="milliseconds") if value else None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _last_line(text: str | None) -> str | None:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else None


class Outage:
    """Redis calls that outlast an outage: reported once, waited out for ``limit`` seconds.

    A call that fails to reach Redis is retried with a short backoff; the first failure
    logs "Redis at URL is unreachable ...; waiting up to N s", the first success after it
    "Redis at URL is back after S s"; a failure ``limit`` seconds after the outage began
    raises :class:`~backtest.errors.QueueUnavailable`. One object spans the calls it
    guards (``wait``'s checks and reads; ``wait_statuses``' polls), so an outage met by
    several of them is reported once.
    """

    def __init__(self, url: str, limit: float, poll_interval: float = 0.25) -> None:
        self.url, self.limit = url, limit
        self.pause = min(2.0, max(poll_interval, 0.1) * 2)
        self.since: float | None = None

    def outlast(self, call: Callable[..., _T], *args: Any) -> _T:
        """``call(*args)``, retried through an outage of up to :attr:`limit` seconds."""
        while True:
            try:
                value = call(*args)
            except (redis.ConnectionError, redis.TimeoutError, QueueUnavailable) as exc:
                cause = exc.__cause__ if isinstance(exc, QueueUnavailable) else exc
                if not isinstance(cause, redis.ConnectionError | redis.TimeoutError):
                    raise
                now = time.monotonic()
                if self.since is None:
                    self.since = now
                    log.warning(
                        "Redis at %s is unreachable (%s); waiting up to %g s for it",
                        mask_url(self.url),
                        type(cause).__name__,
                        self.limit,
                    )
                if now - self.since >= self.limit:
                    raise unavailable(self.url, cause) from cause
                time.sleep(self.pause)
                continue
            if self.since is not None:
                log.warning(
                    "Redis at %s is back after %.1f s; waiting for the jobs again",
                    mask_url(self.url),
                    time.monotonic() - self.since,
                )
                self.since = None
            return value


class QueueBase:
    """Connection to the queue's Redis, status polling and lifetime (see BacktestJobQueue)."""

    def __init__(
        self, config: QueueConfig | None = None, *, connection: redis.Redis | None = None
    ) -> None:
        self.config = config or QueueConfig()
        self._server: EmbeddedRedis | None = None
        if connection is not None:
            self._url = self.config.redis_url or "redis://(given connection)"
            self.connection = connection
        else:
            if self.config.redis_url:
                self._url = self.config.redis_url
            else:
                self._server = EmbeddedRedis().start()
                self._url = self._server.url
            self.connection = connect(self._url)
        if self.config.job_timeout <= 0:
            raise ConfigError(
                "queue.job_timeout must be a positive number of seconds "
                f"(got {self.config.job_timeout})",
                key="queue.job_timeout",
            )
        self.queue = Queue(
            self.config.name,
            connection=self.connection,
            job_class=BacktestRqJob,
            serializer=JSONSerializer,
            default_timeout=self.config.job_timeout,
        )

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The queue name."""
        return self.config.name

    @property
    def url(self) -> str:
        """The Redis URL workers should use (contains the password, if any; do not log)."""
        return self._url

    @property
    def masked_url(self) -> str:
        """The Redis URL with the password masked."""
        return mask_url(self._url)

    @property
    def embedded(self) -> bool:
        """Whether this object started its own Redis server."""
        return self._server is not None

    def _guard(self) -> Any:
        return guard(self._url)

    def _fetch(self, job_id: str) -> BacktestRqJob | None:
        jobs = BacktestRqJob.fetch_many(
            [job_id], connection=self.connection, serializer=JSONSerializer
        )
        return jobs[0]  # type: ignore[return-value]

    def _indexed(self, job_id: str) -> BacktestJob | None:
        raw = self.connection.hget(index_key(self.name), job_id)
        return BacktestJob.from_json(raw) if raw else None

    def _prepared(self, job: BacktestJob) -> BacktestJob:
        path = Path(job.result_path) if job.result_path else job.default_result_path()
        return job.with_status("queued", result_path=str(path.expanduser().absolute()))

    def _poll(self, job_ids: Sequence[str]) -> dict[str, str | None]:
        with self.connection.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(BacktestRqJob.key_for(job_id), "status")
            raw = pipe.execute()
        out: dict[str, str | None] = {}
        for job_id, value in zip(job_ids, raw, strict=True):
            out[job_id] = _STATUS.get(JobStatus(_text(value)), "queued") if value else None
        return out

    def wait_statuses(
        self,
        job_ids: Sequence[str],
        timeout: float | None = None,
        *,
        progress: bool = True,
        poll_interval: float = 0.25,
        outage_s: float = 120.0,
    ) -> dict[str, str | None]:
        """Like :meth:`wait` for any job on the queue (also no-op and study jobs).

        A Redis outage is reported (one warning) and waited out, polling with backoff,
        for up to ``outage_s`` seconds; then :class:`QueueUnavailable` is raised.

        Returns:
            Job id -> final status (``finished``, ``failed``, ``cancelled``), or ``None``
            for a job that is no longer in Redis.
        """
        from backtest.report._progress import progress as progress_bar

        ids = list(dict.fromkeys(job_ids))
        final: dict[str, str | None] = {}
        start = time.monotonic()
        pending = list(ids)
        outage = Outage(self._url, outage_s, poll_interval)
        with progress_bar(
            total=len(ids), desc=f"jobs on {self.name}", unit="job", enabled=progress
        ) as bar:
            while True:
                polled = outage.outlast(self._poll, pending)
                done = [j for j in pending if polled[j] in DONE or polled[j] is None]
                if done:
                    bar.update(len(done))
                    final.update({j: polled[j] for j in done})
                    pending = [j for j in pending if j not in set(done)]
                if not pending:
                    break
                if timeout is not None and time.monotonic() - start > timeout:
                    raise WaitTimeout(pending, timeout)
                time.sleep(poll_interval)
        return {job_id: final[job_id] for job_id in ids}

    def failure_reason(self, job_id: str) -> str | None:
        """The last line of a failed job's error (``None`` if it did not fail or is gone)."""
        with self._guard():
            job = self._fetch(job_id)
            if job is None or _STATUS.get(job.get_status(refresh=False)) not in (
                "failed",
                "cancelled",
            ):
                return None
            latest = job.latest_result()
            return _last_line(getattr(latest, "exc_string", None)) or "cancelled"

    def worker_count(self) -> int:
        """Workers currently listening on this queue (alive in Redis)."""
        from rq import Worker

        with self._guard():
            return int(Worker.count(queue=self.queue))

    def wait_for_workers(self, n: int, timeout: float = 60.0) -> None:
        """Block until at least ``n`` workers listen on the queue.

        Raises:
            WaitTimeout: fewer than ``n`` after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while self.worker_count() < n:
            if time.monotonic() > deadline:
                raise WaitTimeout([f"worker {i + 1}" for i in range(n)], timeout)
            time.sleep(0.1)

    def counts(self) -> dict[str, int]:
        """Jobs per rq registry: queued, started, finished, failed, scheduled, cancelled."""
        q = self.queue
        with self._guard():
            return {
                "queued": q.count,
                "started": len(q.started_job_registry.get_job_ids(cleanup=False)),
                "finished": q.finished_job_registry.count,
                "failed": q.failed_job_registry.count,
                "scheduled": q.scheduled_job_registry.count,
                "cancelled": q.canceled_job_registry.count,
            }

    # -- local workers and lifetime ---------------------------------------------------------

    def start_workers(self, n: int | None = None, **kwargs: Any) -> Any:
        """Start ``n`` (default ``queue.n_workers``) worker processes on this machine.

        Keyword arguments go to :class:`~backtest.queue.LocalWorkers`. On an embedded
        Redis (a socket only this user can open, so only this process queues jobs) the
        workers read and write wherever this process may (``data_roots`` and
        ``output_roots`` default to ``/``); on a shared Redis they keep the workers'
        defaults (their working directory, which is this one).

        Returns:
            A :class:`~backtest.queue.LocalWorkers`; call ``stop()`` (or use ``with``).
        """
        from backtest.queue._local import LocalWorkers

        if self.embedded:
            kwargs.setdefault("data_roots", ["/"])
            kwargs.setdefault("output_roots", ["/"])

        return LocalWorkers(
            self._url, self.name, self.config.n_workers if n is None else n, **kwargs
        ).start()

    def close(self) -> None:
        """Close the connection; stop the embedded Redis server if this object started one."""
        try:
            self.connection.close()
        finally:
            if self._server is not None:
                self._server.stop()
                self._server = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BacktestJobQueue(name={self.name!r}, url={self.masked_url!r})"
