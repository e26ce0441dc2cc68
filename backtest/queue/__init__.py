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
- a payload is data, never a capability (:mod:`backtest.queue._policy`): nothing in it is
  resolved (``${...}`` is refused with :class:`PayloadRefused`), data is read and results
  written only in the worker's own folders, tracking and study storage are the worker's own;
- an unreachable Redis is reported as :class:`~backtest.errors.QueueUnavailable`
  (URL with the password masked) within 10 seconds, never a hang.

This package and :mod:`backtest.queue._cli` are the only modules that import rq and redis.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backtest.queue._client import BacktestJobQueue
    from backtest.queue._errors import JobFailed, JobNotFinished, WaitTimeout
    from backtest.queue._local import LocalWorkers
    from backtest.queue._policy import PayloadRefused
    from backtest.queue._redis import EmbeddedRedis, mask_url
    from backtest.queue._rqjob import ForeignJobRefused
    from backtest.queue._worker import BacktestWorker, JobTimeout

# name -> module; imported on first use (PEP 562), so that the package's modules that need
# no rq (the distributed search's result handling, the worker command's install hint)
# import on a base install too.
_LAZY = {
    "BacktestJobQueue": "backtest.queue._client",
    "BacktestWorker": "backtest.queue._worker",
    "EmbeddedRedis": "backtest.queue._redis",
    "ForeignJobRefused": "backtest.queue._rqjob",
    "JobFailed": "backtest.queue._errors",
    "JobNotFinished": "backtest.queue._errors",
    "JobTimeout": "backtest.queue._worker",
    "LocalWorkers": "backtest.queue._local",
    "PayloadRefused": "backtest.queue._policy",
    "WaitTimeout": "backtest.queue._errors",
    "mask_url": "backtest.queue._redis",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'backtest.queue' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "BacktestJobQueue",
    "BacktestWorker",
    "EmbeddedRedis",
    "ForeignJobRefused",
    "JobFailed",
    "JobNotFinished",
    "JobTimeout",
    "LocalWorkers",
    "PayloadRefused",
    "WaitTimeout",
    "mask_url",
]
