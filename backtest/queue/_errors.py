"""Errors specific to the job queue (no rq import, so they can always be caught)."""

from __future__ import annotations

from collections.abc import Sequence

from backtest.errors import BacktestError


class JobNotFinished(BacktestError, RuntimeError):
    """A job has no result (yet): it is queued, running, failed or cancelled.

    Attributes:
        job_id: The job.
        status: Its status (``queued``, ``started``, ``failed``, ``cancelled``).
        reason: Why it failed, when it did.
    """

    def __init__(self, job_id: str, status: str, reason: str | None = None) -> None:
        why = f": {reason}" if reason else ""
        super().__init__(f"job {job_id!r} has no result, it is {status}{why}")
        self.job_id = job_id
        self.status = status
        self.reason = reason


class JobFailed(JobNotFinished):
    """A job failed (or was cancelled) and published no result."""


class WaitTimeout(BacktestError, TimeoutError):
    """:meth:`BacktestJobQueue.wait` ran out of time.

    Attributes:
        pending: The jobs that had not finished.
    """

    def __init__(self, pending: Sequence[str], timeout_s: float) -> None:
        shown = ", ".join(pending[:5]) + (" ..." if len(pending) > 5 else "")
        super().__init__(f"{len(pending)} job(s) not done after {timeout_s:g} s: {shown}")
        self.pending = list(pending)
