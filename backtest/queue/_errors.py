"""Errors of the job queue, defined in :mod:`backtest.errors` (no rq import needed)."""

from __future__ import annotations

from backtest.errors import JobFailed, JobNotFinished, WaitTimeout

__all__ = ["JobFailed", "JobNotFinished", "WaitTimeout"]
