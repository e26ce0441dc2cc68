"""The worker side of a distributed search: pull trials of a shared study and run them.

Runs on a queue worker as the ``study`` payload of :mod:`backtest.queue._execute`; the
driver is :func:`backtest.queue._distributed.distributed_search`.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from backtest.errors import ConfigError
from backtest.queue._storage import study_storage

if TYPE_CHECKING:
    import optuna

    from backtest.queue._policy import WorkerPolicy

log = logging.getLogger("backtest.queue._distributed")


class _Objective:
    """Backtest one parameter set of the configured strategy on the configured data.

    The space and the constraint mean what they mean in :mod:`backtest.search`.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        from backtest.data import load_bars
        from backtest.search import Constraint, parse_space
        from backtest.search._optuna import to_distribution
        from backtest.strategies._loader import build_strategy, split_strategy_config
        from backtest.tasks import typed_settings

        self.settings = typed_settings(config)
        _, self.base_params = split_strategy_config(self.settings.strategy)
        self.cls, _, _ = build_strategy(self.settings.strategy, self.settings.allowed_modules)
        if not self.settings.search.space:
            raise ConfigError("a distributed search needs search.space", key="search.space")
        dims = parse_space(dict(self.settings.search.space))
        self.distributions = {name: to_distribution(dim) for name, dim in dims.items()}
        rule = self.settings.search.constraint
        self.constraint = Constraint(rule, names=list(dims)) if rule else None
        from backtest.engine import engine_options

        # Bars: opens for next_open fills, highs and lows for stops
        self.prices = load_bars(self.settings.data)
        self.engine: dict[str, Any] = engine_options(self.settings.engine, self.prices.index)

    def allowed(self, params: Mapping[str, Any]) -> bool:
        """Whether ``search.constraint`` allows these parameters."""
        return self.constraint is None or self.constraint(params)

    def __call__(self, trial: optuna.Trial) -> float:
        from backtest.engine import simulate
        from backtest.tasks._search import split_params

        own, engine = split_params(dict(trial.params))
        strategy = self.cls(**{**self.base_params, **own})
        result = simulate(self.prices, strategy, **{**self.engine, **engine})
        for name, value in result.metrics.items():
            trial.set_user_attr(name, None if value is None else float(value))
        return float(result.metrics[self.settings.search.metric])


def _budget_used(trials: list[optuna.trial.FrozenTrial]) -> tuple[int, int, int, int]:
    """``(finished, running, waiting, rejected)`` trials of the study.

    Finished are complete trials and failed ones that were not retried; proposals the
    constraint rejected (pruned) are not trials, as in :mod:`backtest.search`.
    """
    from optuna.trial import TrialState

    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    finished = sum(
        t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and t.number not in retried)
        for t in trials
    )
    running = sum(t.state == TrialState.RUNNING for t in trials)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    rejected = sum(t.state == TrialState.PRUNED for t in trials)
    return finished, running, waiting, rejected


def _heartbeat(storage: Any, trial_id: int, stop: threading.Event) -> None:
    interval = storage.get_heartbeat_interval()
    while True:
        storage.record_heartbeat(trial_id)
        if stop.wait(interval):
            return


def run_study_worker(spec: Mapping[str, Any], policy: WorkerPolicy | None = None) -> dict[str, Any]:
    """Pull and evaluate trials of a shared study until it has ``n_trials`` finished ones.

    Runs on a worker (the ``study`` payload of :mod:`backtest.queue._execute`). While
    others still run the last trials, it waits and watches their heartbeats, so a
    trial whose worker dies is re-run here. The study storage is the worker's own
    (:func:`~backtest.queue._policy.study_storage_url`): the spec's masked URL only
    says which one, and one the worker does not hold is refused.

    Returns:
        ``{"evaluated": <trials evaluated here>, "study": <name>}``.

    Raises:
        PayloadRefused: the spec names a storage that is not this worker's.
    """
    import optuna
    from optuna.exceptions import ExperimentalWarning

    from backtest.queue._policy import current, study_storage_url

    url = study_storage_url(spec.get("storage"), policy or current())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage: Any = study_storage(
        url,
        heartbeat_interval=spec["heartbeat_interval"],
        grace_period=spec["grace_period"],
        max_retry=spec["max_retry"],
    )
    from backtest.search._optuna import make_sampler
    from backtest.search._random import MAX_REJECTIONS

    seeds = np.random.SeedSequence(spec["seed"], spawn_key=(spec["worker"],))
    seed = int(seeds.generate_state(1)[0])
    study = optuna.load_study(
        study_name=spec["study_name"],
        storage=storage,
        sampler=make_sampler(spec.get("sampler", "tpe"), seed),
    )
    objective = _Objective(spec["config"])
    n_trials, evaluated = int(spec["n_trials"]), 0
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        finished, running, waiting, rejected = _budget_used(study.get_trials(deepcopy=False))
        if finished >= n_trials:
            break
        if rejected > MAX_REJECTIONS * n_trials:
            raise ConfigError(
                f"search.constraint rejected {rejected:,} proposals; widen the space or relax it",
                key="search.constraint",
            )
        if finished + running >= n_trials and not waiting:
            time.sleep(storage.get_heartbeat_interval())  # others run the last trials
            continue
        with warnings.catch_warnings():
            # We run the heartbeats ourselves (Optuna only does inside Study.optimize).
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = study.ask(fixed_distributions=objective.distributions)
        if not objective.allowed(trial.params):
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)  # not a trial
            continue
        stop = threading.Event()
        beat = threading.Thread(
            target=_heartbeat, args=(storage, trial._trial_id, stop), daemon=True
        )
        beat.start()
        try:
            value = objective(trial)
        except Exception as exc:
            log.warning("trial %d failed: %s", trial.number, exc)
            trial.set_user_attr("error", str(exc)[:500])
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(
                trial,
                value if np.isfinite(value) else None,
                state=None if np.isfinite(value) else optuna.trial.TrialState.FAIL,
            )
        finally:
            stop.set()
            beat.join()
        evaluated += 1
    return {"study": spec["study_name"], "evaluated": evaluated}
