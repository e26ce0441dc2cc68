"""The client side of the queue: submit backtest jobs, follow them, read their results.

Redis holds the queue and, per queue, a durable index ``job_id -> submitted record``
(a hash without TTL). rq forgets a finished job after ``result_ttl``; the index and
the job's run directory still answer :meth:`BacktestJobQueue.status` and
:meth:`BacktestJobQueue.result` afterwards. The run directory is the record: a job is
finished when its ``result.json`` exists.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from rq.job import JobStatus, Retry
from rq.serializers import JSONSerializer

from backtest.errors import JobNotFound
from backtest.queue._base import _STATUS, DONE, Outage, QueueBase, _iso, _last_line, _text
from backtest.queue._errors import JobFailed, JobNotFinished
from backtest.queue._execute import (
    EXECUTE,
    job_payload,
    noop_payload,
    payload_job,
    study_payload,
)
from backtest.queue._redis import (
    attempts_key,
    failures_key,
    index_key,
    lock_key,
)
from backtest.queue._rqjob import BacktestRqJob
from backtest.results import StoredResult, has_result, load_result
from backtest.tasks._jobs import BacktestJob, check_job_id

log = logging.getLogger("backtest.queue")


class BacktestJobQueue(QueueBase):
    """Submit :class:`~backtest.tasks._jobs.BacktestJob` s to workers through Redis (rq).

    Args:
        config: Queue settings. With no ``redis_url`` a private Redis server is
            started for this object (a Unix socket, never exposed on the network) and
            stopped by :meth:`close`; start workers for it with :meth:`start_workers`.
        connection: Use this Redis client instead of ``config.redis_url``.

    Raises:
        QueueUnavailable: Redis cannot be reached; names the URL with the password
            masked, within 10 seconds.

    Example::

        with BacktestJobQueue(QueueConfig(redis_url="redis://:pw@host:6379/0")) as q:
            ids = q.submit_many(jobs)
            q.wait(ids)
            best = max(ids, key=lambda i: q.result(i).metrics["sharpe_ratio"])
    """

    # -- submitting -------------------------------------------------------------------------

    def submit(self, job: BacktestJob) -> str:
        """Queue a job; submitting the same job id again does not run it twice.

        A job id that is queued, running or finished (in Redis, or with a complete
        result in its run directory) is not queued again; a failed or cancelled one
        is. A relative result path is made absolute here, so workers started
        elsewhere write to the same place (on several machines, use a shared disk).

        Returns:
            The job id.

        Raises:
            QueueUnavailable: Redis cannot be reached.
        """
        job = self._prepared(job)
        with (
            self._guard(),
            self.connection.lock(lock_key(self.name, job.job_id), timeout=30, blocking_timeout=15),
        ):
            existing = self._fetch(job.job_id)
            if existing is not None:
                status = existing.get_status(refresh=False)
                if status in (JobStatus.FINISHED,) and not self._result_gone(job.job_id):
                    log.info("job %s already finished; not queued again", job.job_id)
                    return job.job_id
                if status not in (
                    JobStatus.FINISHED,
                    JobStatus.FAILED,
                    JobStatus.STOPPED,
                    JobStatus.CANCELED,
                ):
                    log.info("job %s is already %s; not queued again", job.job_id, status.value)
                    return job.job_id
                existing.delete()
            elif self._complete_on_disk(job):
                self.connection.hset(index_key(self.name), job.job_id, job.to_json())
                log.info(
                    "job %s already has a complete result in %s; not queued",
                    job.job_id,
                    job.result_path,
                )
                return job.job_id
            with self.connection.pipeline() as pipe:
                self._enqueue(job, pipe)
                pipe.execute()
        return job.job_id

    def _enqueue(self, job: BacktestJob, pipe: Any) -> None:
        """Queue ``job`` afresh in ``pipe``: its rq job, its index entry, no past attempts."""
        cfg = self.config
        self.queue.enqueue_call(
            EXECUTE,
            args=(job_payload(job),),
            timeout=cfg.job_timeout,
            result_ttl=cfg.result_ttl,
            failure_ttl=cfg.failure_ttl,
            job_id=job.job_id,
            description=f"{job.task} {job.job_id}",
            retry=Retry(max=cfg.retries, interval=cfg.retry_backoff, enqueue_at_front=True)
            if cfg.retries > 0
            else None,
            pipeline=pipe,
        )
        pipe.hset(index_key(self.name), job.job_id, job.to_json())
        pipe.hdel(attempts_key(self.name), job.job_id)
        pipe.delete(failures_key(self.name, job.job_id))

    def _result_gone(self, job_id: str) -> bool:
        rec = self._indexed(job_id)
        return rec is not None and rec.result_path is not None and not has_result(rec.result_path)

    @staticmethod
    def _complete_on_disk(job: BacktestJob) -> bool:
        if not job.result_path or not has_result(job.result_path):
            return False
        try:
            return bool(load_result(job.result_path).record.get("config_hash") == job.config_hash)
        except (OSError, ValueError):
            return False

    def submit_many(self, jobs: Iterable[BacktestJob]) -> list[str]:
        """:meth:`submit` every job in two round trips to Redis; ids in order.

        The first round trip takes each job's submission lock and reads its status;
        the second queues every new job (and releases the locks). A job another client
        is submitting right now, or one to queue again (failed, cancelled, finished
        with its result gone), goes through :meth:`submit` on its own. Duplicates
        collapse.
        """
        prepared = [self._prepared(job) for job in jobs]
        unique = list({job.job_id: job for job in prepared}.values())
        token = uuid.uuid4().hex
        fresh: list[BacktestJob] = []
        alone: list[BacktestJob] = []
        with self._guard():
            with self.connection.pipeline(transaction=False) as pipe:
                for job in unique:
                    pipe.set(lock_key(self.name, job.job_id), token, nx=True, px=30_000)
                    pipe.hget(BacktestRqJob.key_for(job.job_id), "status")
                replies = pipe.execute()
            locked = []
            for job, got, status in zip(unique, replies[::2], replies[1::2], strict=True):
                if not got:
                    alone.append(job)  # another client holds its lock: wait for it there
                    continue
                locked.append(job)
                if status is None:
                    if self._complete_on_disk(job):
                        self.connection.hset(index_key(self.name), job.job_id, job.to_json())
                    else:
                        fresh.append(job)
                elif _text(status) in ("finished", "failed", "stopped", "canceled"):
                    alone.append(job)  # maybe queued again: the careful path decides
            with self.connection.pipeline() as pipe:
                for job in fresh:
                    self._enqueue(job, pipe)
                for job in locked:
                    pipe.delete(lock_key(self.name, job.job_id))
                pipe.execute()
        for job in alone:
            self.submit(job)
        return [job.job_id for job in prepared]

    def submit_noop(self, job_id: str | None = None) -> str:
        """Queue a job that does nothing (to measure overhead or check that workers run)."""
        with self._guard():
            job = self.queue.enqueue_call(
                EXECUTE,
                args=(noop_payload(),),
                job_id=job_id,
                timeout=self.config.job_timeout,
                result_ttl=self.config.result_ttl,
                description="noop",
            )
        return str(job.id)

    def submit_study(self, spec: dict[str, Any], n_workers: int) -> list[str]:
        """Queue ``n_workers`` jobs that each optimise the shared study ``spec`` describes.

        Used by :func:`backtest.queue._distributed.distributed_search`; returns the job ids.
        """
        cfg = self.config
        ids = []
        with self._guard():
            for worker in range(n_workers):
                job = self.queue.enqueue_call(
                    EXECUTE,
                    args=(study_payload({**spec, "worker": worker}),),
                    timeout=cfg.job_timeout,
                    result_ttl=cfg.result_ttl,
                    failure_ttl=cfg.failure_ttl,
                    job_id=f"study-{spec['study_name']}-{worker}-{uuid.uuid4().hex[:8]}",
                    description=f"study {spec['study_name']} worker {worker}",
                    retry=Retry(max=cfg.retries, enqueue_at_front=True)
                    if cfg.retries > 0
                    else None,
                )
                ids.append(str(job.id))
        return ids

    # -- following --------------------------------------------------------------------------

    def status(self, job_id: str) -> BacktestJob:
        """The job's record with its current status, timestamps, attempts and error.

        Statuses: ``queued`` (including a retry waiting out ``retry_backoff``),
        ``started``, ``finished``, ``failed``, ``cancelled``.

        Raises:
            JobNotFound: an unknown id, or one that expired from Redis and whose result
                directory is gone; the error names the id.
            QueueUnavailable: Redis cannot be reached.
        """
        check_job_id(job_id)
        with self._guard():
            submitted = self._indexed(job_id)
            rq_job = self._fetch(job_id)
            attempts = int(self.connection.hget(attempts_key(self.name), job_id) or 0)
            if rq_job is None:
                return self._from_disk(job_id, submitted, attempts)
            record = submitted or payload_job(rq_job.args[0] if rq_job.args else None)
            if record is None:
                raise JobNotFound(
                    job_id, f"job {job_id!r} is not a backtest job of queue {self.name!r}"
                )
            status = _STATUS.get(rq_job.get_status(refresh=False), "queued")
            error = None
            if (
                status in ("failed", "cancelled")
                or rq_job.get_status(refresh=False) == JobStatus.SCHEDULED
            ):
                latest = rq_job.latest_result()
                error = _last_line(getattr(latest, "exc_string", None)) or (
                    "cancelled" if status == "cancelled" else None
                )
            return record.with_status(
                status,
                started_at=_iso(rq_job.started_at),
                ended_at=_iso(rq_job.ended_at) if status in DONE else None,
                attempts=attempts,
                error=error,
                attempt_errors=[
                    x.decode() if isinstance(x, bytes) else str(x)
                    for x in self.connection.lrange(failures_key(self.name, job_id), 0, -1)
                ],
            )

    def _from_disk(self, job_id: str, submitted: BacktestJob | None, attempts: int) -> BacktestJob:
        if submitted is None:
            raise JobNotFound(job_id, f"no job with id {job_id!r} in queue {self.name!r}")
        path = submitted.result_path
        if path and has_result(path):
            rec = load_result(path, job_id=job_id).record
            return submitted.with_status(
                "finished",
                started_at=rec.get("started_at"),
                ended_at=rec.get("ended_at"),
                attempts=attempts,
            )
        raise JobNotFound(
            job_id,
            f"job {job_id!r} expired from Redis and its result directory {path!r} holds no result",
        )

    def result(self, job_id: str) -> StoredResult:
        """The result of a finished job, read from its run directory.

        Raises:
            JobNotFound: unknown or expired id (see :meth:`status`).
            JobFailed: the job failed or was cancelled; carries the reason.
            JobNotFinished: the job is still queued or running.
            ResultPathMissing: the job finished but its result directory was removed.
        """
        record = self.status(job_id)
        if record.status == "finished":
            return load_result(str(record.result_path), job_id=job_id)
        if record.status in ("failed", "cancelled"):
            raise JobFailed(job_id, record.status, record.error)
        raise JobNotFinished(job_id, record.status)

    def wait(
        self,
        job_ids: Sequence[str],
        timeout: float | None = None,
        *,
        progress: bool = True,
        poll_interval: float = 0.25,
        outage_s: float = 120.0,
    ) -> dict[str, BacktestJob]:
        """Block until every job is finished, failed or cancelled.

        Args:
            job_ids: The jobs to wait for.
            timeout: Seconds to wait at most (forever when ``None``).
            progress: Show a progress bar (tqdm).
            poll_interval: Seconds between polls.
            outage_s: A Redis outage is reported and waited out for this long
                (workers reconnect by themselves), then raised.

        Returns:
            Job id -> final record (see :meth:`status`); failures are in the records,
            not raised.

        Raises:
            JobNotFound: an id is unknown.
            WaitTimeout: ``timeout`` passed first; lists the pending jobs.
            QueueUnavailable: Redis stayed away for ``outage_s`` seconds.
        """
        ids = list(dict.fromkeys(job_ids))
        outage = Outage(self._url, outage_s, poll_interval)  # before and after the wait too
        for job_id in ids:
            outage.outlast(self.status, job_id)  # unknown ids fail now, not after waiting
        self.wait_statuses(
            ids, timeout, progress=progress, poll_interval=poll_interval, outage_s=outage_s
        )
        return {job_id: outage.outlast(self.status, job_id) for job_id in ids}

    def cancel(self, job_id: str) -> BacktestJob:
        """Cancel a queued job, or stop a running one (its worker kills the work horse).

        A finished or failed job is left as it is. Returns the job's record.

        Raises:
            JobNotFound: unknown id.
        """
        from rq.command import send_stop_job_command
        from rq.exceptions import InvalidJobOperation

        record = self.status(job_id)
        with self._guard():
            rq_job = self._fetch(job_id)
            if rq_job is None or record.status in DONE:
                return record
            if record.status == "started":
                try:
                    send_stop_job_command(self.connection, job_id, serializer=JSONSerializer)
                except InvalidJobOperation:
                    rq_job.cancel()
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and self._poll([job_id])[job_id] == "started":
                    time.sleep(0.1)
            else:
                rq_job.cancel()
        return self.status(job_id)

    def jobs(self) -> list[BacktestJob]:
        """Every job submitted to this queue and still known, with its current status."""
        with self._guard():
            ids = sorted(_text(k) for k in self.connection.hkeys(index_key(self.name)))
        out = []
        for job_id in ids:
            try:
                out.append(self.status(job_id))
            except JobNotFound:
                continue
        return out
