"""Distributed execution on RQ and Redis: a job queue, workers and their guarantees.

:class:`BacktestJobQueue` submits :class:`~backtest.tasks._jobs.BacktestJob` s and follows
them; :class:`BacktestWorker` (``python -m backtest.worker``) runs them. RQ alone
promises at-least-once delivery at best; on top of it:

- exactly one result per job: results are written atomically into the job's run
  directory and :func:`~backtest.tasks.run_backtest` returns a complete result instead of
  recomputing it, so a job retried after a killed worker never publishes twice, and
  submitting the same job twice queues it once;
- a killed worker's job is detected and retried within about 35 seconds;
- every job has a timeout (``queue.job_timeout``; rq's default of 180 s is never used);
- workers run our job function only, from JSON payloads (no pickle);
- an unreachable Redis is reported as :class:`~backtest.errors.QueueUnavailable`
  (URL with the password masked) within 10 seconds, never a hang.

This package and :mod:`backtest.queue._cli` are the only modules that import rq and redis.
"""

from __future__ import annotations

from backtest.queue._client import BacktestJobQueue
from backtest.queue._errors import JobFailed, JobNotFinished, WaitTimeout
from backtest.queue._local import LocalWorkers
from backtest.queue._redis import EmbeddedRedis, mask_url
from backtest.queue._rqjob import ForeignJobRefused
from backtest.queue._worker import BacktestWorker, JobTimeout

__all__ = [
    "BacktestJobQueue",
    "BacktestWorker",
    "EmbeddedRedis",
    "ForeignJobRefused",
    "JobFailed",
    "JobNotFinished",
    "JobTimeout",
    "LocalWorkers",
    "WaitTimeout",
    "mask_url",
]
