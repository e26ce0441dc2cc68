"""Grid search: every combination of the listed values."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from backtest.errors import ConfigError
from backtest.search._constraint import Constraint, as_constraint
from backtest.search._result import SearchResult
from backtest.search._runner import TrialLog, keep_selection
from backtest.search._seeds import root_seed
from backtest.search._space import Dimension, parse_space

#: Grids larger than this are refused (use random or model-based search).
MAX_GRID = 50_000_000


def _column(values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind in "USO":
        return np.asarray(list(values), dtype=object)
    return arr


def grid_frame(
    space: Mapping[str, Dimension], constraint: Constraint | None = None
) -> dict[str, np.ndarray]:
    """Every combination (name -> array), the constraint applied.

    The last parameter varies fastest.

    Raises:
        ConfigError: a float range without a step, or a grid over ``MAX_GRID`` points.
    """
    values = {}
    for name, dim in space.items():
        try:
            values[name] = _column(dim.grid())
        except ConfigError as exc:
            raise ConfigError(f"search.space.{name}: {exc}", key=f"search.space.{name}") from exc
    sizes = [len(v) for v in values.values()]
    total = int(np.prod(sizes, dtype=np.float64))
    if total > MAX_GRID:
        raise ConfigError(
            f"the grid has {total:,} combinations (more than {MAX_GRID:,}); "
            "use random or tpe search instead",
            key="search.space",
        )
    index = np.unravel_index(np.arange(total), sizes)
    columns = {name: v[i] for (name, v), i in zip(values.items(), index, strict=True)}
    if constraint is not None:
        allowed = constraint.mask(columns)
        columns = {name: v[allowed] for name, v in columns.items()}
    return columns


def direction_name(direction: Any) -> str:
    """``"maximize"`` or ``"minimize"`` from a string or a ``Direction`` enum."""
    name = str(getattr(direction, "value", direction))
    if name not in ("maximize", "minimize"):
        raise ConfigError(
            f"direction must be 'maximize' or 'minimize', got {direction!r}", key="search.direction"
        )
    return name


def grid_search(
    param_grid: Mapping[str, Any],
    evaluator: Any,
    *,
    metric: str = "sharpe_ratio",
    direction: str = "maximize",
    constraint: str | Callable[[dict[str, Any]], bool] | None = None,
    n_jobs: int = 1,
    seed: int | np.random.Generator | None = None,
    progress: bool = True,
    keep_returns: int = 0,
) -> SearchResult:
    """Try every combination of parameter values and keep the best by ``metric``.

    Args:
        param_grid: Parameter -> values: a list, or ``{low, high, step}`` (see
            :func:`backtest.search.parse_space`).
        evaluator: A :class:`StrategyEvaluator` (all combinations in a few compiled
            calls), any ``params -> float | dict`` callable, or its import path.
        metric: The metric to optimise (a key the evaluator returns).
        direction: ``maximize`` or ``minimize``.
        constraint: Which combinations to try, e.g. ``"fast < slow"`` or a callable on
            the params dict; the others are skipped and are not trials.
        n_jobs: Worker processes for a callable evaluator.
        seed: Root seed of the per-trial seeds (for stochastic evaluators).
        progress: Show a progress bar.
        keep_returns: Keep the return series of up to this many successful trials
            (evenly spaced over the grid) in ``SearchResult.returns``.

    Returns:
        Every trial and the best one.

    Raises:
        ConfigError: a bad grid, constraint or direction.
        TrialsFailed: every trial failed (the message gives the most common reason).

    Examples:
        >>> res = grid_search({"x": [1, 2, 3], "y": [0, 10]},
        ...                   lambda p: -(p["x"] - 2) ** 2 + p["y"], metric="score",
        ...                   progress=False)
        >>> res.best_params, res.best_score, len(res.trials)
        ({'x': 2, 'y': 10}, 10.0, 6)
    """
    space = parse_space(param_grid)
    rule = as_constraint(constraint, names=list(space))
    frame = grid_frame(space, rule)
    log = TrialLog(
        evaluator,
        list(space),
        metric=metric,
        root=root_seed(seed),
        n_jobs=n_jobs,
        keep=keep_selection(len(next(iter(frame.values()))), keep_returns),
        progress=progress,
        desc="grid search",
    )
    log.run(frame)
    return log.result(method="grid", direction=direction_name(direction))
