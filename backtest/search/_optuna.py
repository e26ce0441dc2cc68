"""Model-based search on Optuna: TPE, CMA-ES (continuous spaces) or Optuna's random sampler."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from backtest.errors import ConfigError
from backtest.search._constraint import as_constraint
from backtest.search._grid import direction_name
from backtest.search._random import MAX_REJECTIONS
from backtest.search._result import SearchResult
from backtest.search._runner import TrialLog, keep_selection
from backtest.search._seeds import root_seed
from backtest.search._space import Choice, Dimension, FloatRange, IntRange, parse_space

SAMPLERS = ("tpe", "cmaes", "random")


def to_distribution(dim: Dimension) -> Any:
    """The Optuna distribution of a :class:`Dimension`."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if isinstance(dim, Choice):
        return CategoricalDistribution(list(dim.values))
    if isinstance(dim, IntRange):
        last = dim.low + (dim.high - dim.low) // dim.step * dim.step
        return IntDistribution(dim.low, last, log=dim.log, step=dim.step)
    assert isinstance(dim, FloatRange)
    if dim.step is not None:
        # Optuna warns and trims a range that is not a multiple of step; trim it here.
        high = dim.low + math.floor((dim.high - dim.low) / dim.step + 1e-9) * dim.step
        return FloatDistribution(dim.low, high, step=dim.step)
    return FloatDistribution(dim.low, dim.high, log=dim.log)


def make_sampler(name: str, seed: int) -> Any:
    """A seeded Optuna sampler by name (``tpe``, ``cmaes`` or ``random``).

    Raises:
        ConfigError: an unknown name, or CMA-ES without the ``cmaes`` package.
    """
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401 - Optuna's CMA-ES needs it
        except ImportError as exc:
            raise ConfigError(
                "CMA-ES search needs the 'cmaes' package (pip install cmaes)", key="search.method"
            ) from exc
        return optuna.samplers.CmaEsSampler(
            seed=seed,
            warn_independent_sampling=False,
            independent_sampler=optuna.samplers.RandomSampler(seed=seed),
        )
    raise ConfigError(f"unknown sampler {name!r}; expected one of {SAMPLERS}", key="search.method")


def optuna_search(
    space: Mapping[str, Any],
    evaluator: Any,
    *,
    n_trials: int,
    sampler: str = "tpe",
    metric: str = "sharpe_ratio",
    direction: str = "maximize",
    constraint: str | Callable[[dict[str, Any]], bool] | None = None,
    n_jobs: int = 1,
    batch_size: int = 1,
    seed: int | np.random.Generator | None = None,
    progress: bool = True,
    keep_returns: int = 0,
) -> SearchResult:
    """Search with an Optuna sampler through the same evaluators and result as the grid.

    The sampler proposes ``batch_size`` parameter sets, they are evaluated (in
    parallel for a callable with ``n_jobs > 1``), their scores are told back, and so
    on until ``n_trials`` trials. Failed trials are told as failed. Proposals the
    constraint rejects are told as pruned (so TPE learns to avoid them) and are not
    trials. With a seed the trials table is reproducible; it depends on
    ``batch_size`` but never on ``n_jobs``.

    Args:
        space: Parameter -> list or ``{low, high, step, log}``.
        evaluator: A :class:`StrategyEvaluator`, a callable, or its import path.
        n_trials: Number of trials.
        sampler: ``tpe`` (default), ``cmaes`` (numeric ranges; choices are sampled at
            random) or ``random``.
        metric: The metric to optimise.
        direction: ``maximize`` or ``minimize``.
        constraint: Which combinations are allowed (expression or callable).
        n_jobs: Worker processes for a callable evaluator.
        batch_size: Sets proposed before their scores are told back.
        seed: Root seed of the sampler and of the per-trial seeds.
        progress: Show a progress bar.
        keep_returns: Keep the return series of up to this many successful trials.

    Returns:
        Every trial and the best one.

    Raises:
        ConfigError: a bad space, sampler, ``n_trials``/``batch_size`` < 1 or an
            unsatisfiable constraint.
        TrialsFailed: every trial failed.
    """
    import optuna
    from optuna.trial import TrialState

    for key, value in (("n_iter", n_trials), ("batch_size", batch_size)):
        if value < 1:
            raise ConfigError(f"search.{key} must be >= 1, got {value}", key=f"search.{key}")
    dims = parse_space(space)
    rule = as_constraint(constraint, names=list(dims))
    distributions = {name: to_distribution(dim) for name, dim in dims.items()}
    root = root_seed(seed)
    sampler_seed = int(np.random.SeedSequence(root).generate_state(1)[0])
    direction = direction_name(direction)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            direction=direction,  # type: ignore[arg-type]
            sampler=make_sampler(sampler, sampler_seed),
        )
        log = TrialLog(
            evaluator,
            list(dims),
            metric=metric,
            root=root,
            n_jobs=n_jobs,
            keep=keep_selection(n_trials, keep_returns),
            progress=progress,
            desc=f"{sampler} search",
        )
        rejected = 0
        while log.n_done < n_trials:
            asked: list[Any] = []
            rows: list[dict[str, Any]] = []
            while len(asked) < min(batch_size, n_trials - log.n_done):
                trial = study.ask(distributions)
                if rule is not None and not rule(trial.params):
                    study.tell(trial, state=TrialState.PRUNED)
                    rejected += 1
                    if rejected > MAX_REJECTIONS * n_trials:
                        raise ConfigError(
                            f"the constraint {rule!r} rejected {rejected:,} proposals; "
                            "widen the space or relax it",
                            key="search.constraint",
                        )
                    continue
                asked.append(trial)
                rows.append({name: trial.params[name] for name in dims})
            scores = log.run(pd.DataFrame(rows, columns=list(dims)))
            for trial, score in zip(asked, scores, strict=True):
                if math.isfinite(score):
                    study.tell(trial, float(score))
                else:
                    study.tell(trial, state=TrialState.FAIL)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return log.result(method=sampler, direction=direction)
