"""The worker side of a distributed search: pull trials of a shared study and run them.

Runs on a queue worker as the ``study`` payload of :mod:`backtest.queue._execute`; the
driver is :func:`backtest.distributed.distributed_search`.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from backtest.distributed import study_storage
from backtest.errors import ConfigError

if TYPE_CHECKING:
    import optuna

log = logging.getLogger("backtest.distributed")


def _suggest(trial: optuna.Trial, name: str, spec: Any) -> Any:
    if isinstance(spec, list | tuple):
        return trial.suggest_categorical(name, list(spec))
    if not isinstance(spec, Mapping):
        return spec
    low, high, step, log = spec["low"], spec["high"], spec.get("step"), bool(spec.get("log"))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)) and (
        step is None or isinstance(step, int)
    ):
        if log:
            return trial.suggest_int(name, low, high, log=True)
        return trial.suggest_int(name, low, high, step=step or 1)
    return trial.suggest_float(name, float(low), float(high), step=step, log=log)


class _Objective:
    """Backtest one parameter set of the configured strategy on the configured data."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        from backtest.data import load_prices
        from backtest.strategies._loader import build_strategy, split_strategy_config
        from backtest.tasks import typed_settings

        self.settings = typed_settings(config)
        self.target, self.base_params = split_strategy_config(self.settings.strategy)
        self.cls, _, _ = build_strategy(self.settings.strategy, self.settings.allowed_modules)
        self.prices = load_prices(self.settings.data)
        self.space = dict(self.settings.search.space)
        if not self.space:
            raise ConfigError("a distributed search needs search.space", key="search.space")
        e = self.settings.engine
        self.engine: dict[str, Any] = {
            "fee_bps": e.fee_bps,
            "slippage_bps": e.slippage_bps,
            "weights": dict(e.weights) or None,
            "periods_per_year": e.periods_per_year,
        }

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna

        from backtest.engine import simulate

        params = {name: _suggest(trial, name, spec) for name, spec in self.space.items()}
        constraint = self.settings.search.constraint
        if constraint:
            from backtest.walkforward._space import constraint_mask

            if not constraint_mask(pd.DataFrame([params]), constraint)[0]:
                raise optuna.TrialPruned(f"search.constraint {constraint!r} is false")
        result = simulate(self.prices, self.cls(**{**self.base_params, **params}), **self.engine)
        for name, value in result.metrics.items():
            trial.set_user_attr(name, None if value is None else float(value))
        return float(result.metrics[self.settings.search.metric])


def _budget_used(trials: list[optuna.trial.FrozenTrial]) -> tuple[int, int, int]:
    """``(finished, running, waiting)``; a failed trial that was retried is not counted."""
    from optuna.trial import TrialState

    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    finished = sum(
        t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state == TrialState.FAIL and t.number not in retried)
        for t in trials
    )
    running = sum(t.state == TrialState.RUNNING for t in trials)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    return finished, running, waiting


def _heartbeat(storage: Any, trial_id: int, stop: threading.Event) -> None:
    interval = storage.get_heartbeat_interval()
    while True:
        storage.record_heartbeat(trial_id)
        if stop.wait(interval):
            return


def run_study_worker(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Pull and evaluate trials of a shared study until it has ``n_trials`` finished ones.

    Runs on a worker (the ``study`` payload of :mod:`backtest.queue._execute`). While
    others still run the last trials, it waits and watches their heartbeats, so a
    trial whose worker dies is re-run here.

    Returns:
        ``{"evaluated": <trials evaluated here>, "study": <name>}``.
    """
    import optuna
    from optuna.exceptions import ExperimentalWarning

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage: Any = study_storage(
        spec["storage"],
        heartbeat_interval=spec["heartbeat_interval"],
        grace_period=spec["grace_period"],
        max_retry=spec["max_retry"],
    )
    seeds = np.random.SeedSequence(spec["seed"], spawn_key=(spec["worker"],))
    seed = int(seeds.generate_state(1)[0])
    study = optuna.load_study(
        study_name=spec["study_name"],
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=seed),
    )
    objective = _Objective(spec["config"])
    n_trials, evaluated = int(spec["n_trials"]), 0
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        finished, running, waiting = _budget_used(study.get_trials(deepcopy=False))
        if finished >= n_trials:
            break
        if finished + running >= n_trials and not waiting:
            time.sleep(storage.get_heartbeat_interval())  # others run the last trials
            continue
        with warnings.catch_warnings():
            # We run the heartbeats ourselves (Optuna only does inside Study.optimize).
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = study.ask()
        stop = threading.Event()
        beat = threading.Thread(
            target=_heartbeat, args=(storage, trial._trial_id, stop), daemon=True
        )
        beat.start()
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
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
