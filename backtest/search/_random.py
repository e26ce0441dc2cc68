"""Random search: ``n_iter`` independent draws from the parameter distributions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from backtest.errors import ConfigError
from backtest.search._constraint import Constraint, as_constraint
from backtest.search._grid import direction_name
from backtest.search._result import SearchResult
from backtest.search._runner import TrialLog, keep_selection
from backtest.search._seeds import root_seed
from backtest.search._space import Dimension, parse_space

#: Draws per accepted combination before a constraint is judged (nearly) unsatisfiable.
MAX_REJECTIONS = 1000


def sample_frame(
    space: Mapping[str, Dimension],
    n: int,
    rng: np.random.Generator,
    constraint: Constraint | None = None,
) -> pd.DataFrame:
    """``n`` combinations drawn independently per parameter, redrawn until the constraint holds.

    Raises:
        ConfigError: the constraint rejects (nearly) every draw.
    """
    parts: list[pd.DataFrame] = []
    accepted = 0
    drawn = 0
    while accepted < n:
        size = max(64, 2 * (n - accepted))
        frame = pd.DataFrame({name: dim.sample(rng, size) for name, dim in space.items()})
        drawn += size
        if constraint is not None:
            frame = frame[constraint.mask(frame)]
        parts.append(frame)
        accepted += len(frame)
        if accepted < n and drawn > MAX_REJECTIONS * max(n, 1) + 64:
            raise ConfigError(
                f"the constraint {constraint!r} rejected {drawn - accepted:,} of "
                f"{drawn:,} random draws; widen the space or relax it",
                key="search.constraint",
            )
    return pd.concat(parts, ignore_index=True).iloc[:n].reset_index(drop=True)


def random_search(
    param_distributions: Mapping[str, Any],
    evaluator: Any,
    *,
    n_iter: int,
    metric: str = "sharpe_ratio",
    direction: str = "maximize",
    constraint: str | Callable[[dict[str, Any]], bool] | None = None,
    n_jobs: int = 1,
    seed: int | np.random.Generator | None = None,
    progress: bool = True,
    keep_returns: int = 0,
) -> SearchResult:
    """Try ``n_iter`` random parameter combinations and keep the best by ``metric``.

    Each parameter is drawn independently: a list uniformly, ``{low, high}`` uniformly
    (integers inclusive of both ends; ``step`` snaps to the grid; ``log: true`` draws
    evenly in log space). Draws the constraint rejects are redrawn and are not trials.
    The draws depend only on ``seed``, never on ``n_jobs``.

    Args:
        param_distributions: Parameter -> list or ``{low, high, step, log}``.
        evaluator: A :class:`StrategyEvaluator`, a callable, or its import path.
        n_iter: Number of trials.
        metric: The metric to optimise.
        direction: ``maximize`` or ``minimize``.
        constraint: Which combinations are allowed (expression or callable).
        n_jobs: Worker processes for a callable evaluator.
        seed: Root seed of the draws and of the per-trial seeds.
        progress: Show a progress bar.
        keep_returns: Keep the return series of up to this many successful trials.

    Returns:
        Every trial and the best one.

    Raises:
        ConfigError: a bad space, ``n_iter < 1`` or an unsatisfiable constraint.
        TrialsFailed: every trial failed.

    Examples:
        >>> res = random_search({"x": {"low": -5.0, "high": 5.0}}, lambda p: -p["x"] ** 2,
        ...                     n_iter=200, metric="score", seed=1, progress=False)
        >>> abs(res.best_params["x"]) < 0.2
        True
    """
    if n_iter < 1:
        raise ConfigError(f"search.n_iter must be >= 1, got {n_iter}", key="search.n_iter")
    space = parse_space(param_distributions)
    rule = as_constraint(constraint, names=list(space))
    root = root_seed(seed)
    frame = sample_frame(space, n_iter, np.random.default_rng(root), rule)
    log = TrialLog(
        evaluator,
        list(space),
        metric=metric,
        root=root,
        n_jobs=n_jobs,
        keep=keep_selection(n_iter, keep_returns),
        progress=progress,
        desc="random search",
    )
    log.run(frame)
    return log.result(method="random", direction=direction_name(direction))
