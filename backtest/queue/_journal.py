"""Optuna's journal storage on Redis, with the trial heartbeats Optuna gives only to RDB.

Optuna detects dead workers through heartbeats (``BaseHeartbeat``), which its journal
storage lacks. :class:`HeartbeatJournalStorage` adds them: a running trial's worker
refreshes ``<prefix>:heartbeat:<trial_id>`` (a key that expires after
``grace_period`` seconds), and a running trial whose key is gone is stale. Optuna's
``fail_stale_trials`` then fails it and the retry callback queues a copy with the same
parameters.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import datetime
from typing import Any

from optuna.exceptions import ExperimentalWarning
from optuna.storages import JournalStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalRedisBackend
from optuna.trial import TrialState

from backtest.queue._redis import KEY_PREFIX, connect


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """``JournalStorage`` on Redis whose running trials send heartbeats.

    Args:
        url: Redis URL (the journal and the heartbeats live there).
        heartbeat_interval: Seconds between heartbeats of a running trial.
        grace_period: Seconds without a heartbeat after which a trial is stale.
        stale_trial_callback: Called with each trial failed as stale (e.g. Optuna's
            ``RetryHeartbeatStaleTrialCallback``).
        prefix: Key prefix of the journal.
    """

    def __init__(
        self,
        url: str,
        heartbeat_interval: int,
        grace_period: int,
        stale_trial_callback: Callable[..., None] | None = None,
        prefix: str = f"{KEY_PREFIX}:optuna",
    ) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            super().__init__(JournalRedisBackend(url, prefix=prefix))
        if heartbeat_interval <= 0 or grace_period <= heartbeat_interval:
            from backtest.errors import ConfigError

            raise ConfigError(
                f"need 0 < heartbeat_interval ({heartbeat_interval}) < grace_period "
                f"({grace_period})",
                key="grace_period",
            )
        self._client = connect(url)
        self._prefix = prefix
        self._interval = int(heartbeat_interval)
        self._grace = int(grace_period)
        self._callback = stale_trial_callback

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        state.pop("_client", None)
        return state

    def _key(self, trial_id: int) -> str:
        return f"{self._prefix}:heartbeat:{trial_id}"

    def record_heartbeat(self, trial_id: int) -> None:
        """Mark the trial alive for the next ``grace_period`` seconds."""
        self._client.set(self._key(trial_id), 1, ex=self._grace)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        now = datetime.now()
        stale = []
        for trial in running:
            started = trial.datetime_start
            if started is not None and (now - started).total_seconds() < self._grace:
                continue  # too young to judge (its first heartbeat may be on its way)
            if not self._client.exists(self._key(trial._trial_id)):
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int:
        """Seconds between heartbeats."""
        return self._interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[..., None] | None:
        """The callback run for each trial failed as stale."""
        return self._callback
