"""Optuna storage for a distributed search, with heartbeats (used by the driver and workers).

``redis://``, ``rediss://`` and ``unix://`` URLs get Optuna's journal on Redis with our
heartbeats (:mod:`backtest.queue._journal`); any other URL (``postgresql://``,
``mysql://``, ``sqlite:///``) gets Optuna's ``RDBStorage`` with its heartbeats.
:func:`backtest.queue._distributed.check_storage` says which URLs a search accepts.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def study_storage(
    url: str, *, heartbeat_interval: int = 5, grace_period: int = 20, max_retry: int = 3
) -> optuna.storages.BaseStorage:
    """Optuna storage for ``url`` with heartbeats and retries of stale trials."""
    import optuna
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        if url.startswith(REDIS_SCHEMES):
            from backtest.queue._journal import HeartbeatJournalStorage

            return HeartbeatJournalStorage(url, heartbeat_interval, grace_period, retry)
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=retry,
        )
