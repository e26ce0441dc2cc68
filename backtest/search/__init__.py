"""Parameter search: grid, random and Optuna (TPE, CMA-ES) over one interface.

Every method takes a space (parameter -> list of values or ``{low, high, step, log}``),
an evaluator and a metric, and returns a :class:`SearchResult` with one row per trial.
With a :class:`StrategyEvaluator` a whole grid runs on the engine's fused compiled
kernels, hundreds of thousands of backtests per second; any Python callable works too,
in worker processes when ``n_jobs > 1``.

Examples:
    >>> import numpy as np, pandas as pd
    >>> from backtest.strategies import SmaCross
    >>> idx = pd.bdate_range("2020-01-01", periods=500)
    >>> rng = np.random.default_rng(0)
    >>> prices = pd.DataFrame({"A": 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 500)))},
    ...                       index=idx)
    >>> res = grid_search({"fast": [5, 10, 20], "slow": [20, 50, 100]},
    ...                   StrategyEvaluator(prices, SmaCross, fee_bps=10),
    ...                   constraint="fast < slow", progress=False)
    >>> len(res.trials), res.best_score == res.trials["sharpe_ratio"].max()
    (8, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backtest.errors import ConfigError
from backtest.search._constraint import Constraint
from backtest.search._evaluators import BatchEvaluator, StrategyEvaluator, verify_fast_path
from backtest.search._grid import grid_search
from backtest.search._optuna import optuna_search
from backtest.search._random import random_search
from backtest.search._result import SearchResult
from backtest.search._space import Choice, FloatRange, IntRange, parse_space

__all__ = [
    "METHODS",
    "BatchEvaluator",
    "Choice",
    "Constraint",
    "FloatRange",
    "IntRange",
    "SearchResult",
    "StrategyEvaluator",
    "grid_search",
    "optuna_search",
    "parse_space",
    "random_search",
    "run_search",
    "verify_fast_path",
]

#: Search methods by name (``search.method`` in config).
METHODS = ("grid", "random", "tpe", "cmaes")


def run_search(
    method: str, space: Mapping[str, Any], evaluator: Any, *, n_iter: int = 50, **options: Any
) -> SearchResult:
    """Run the search method named ``method`` (``grid``, ``random``, ``tpe``, ``cmaes``).

    ``n_iter`` is the number of trials of the random and model-based methods (a grid
    tries every combination). The other keyword arguments (``metric``, ``direction``,
    ``constraint``, ``n_jobs``, ``seed``, ``progress``, ``keep_returns``) go to the method
    as they are, with its defaults: see :func:`grid_search`.

    Raises:
        ConfigError: an unknown method (key ``search.method``).
    """
    method = str(getattr(method, "value", method))
    if method == "grid":
        return grid_search(space, evaluator, **options)
    if method == "random":
        return random_search(space, evaluator, n_iter=n_iter, **options)
    if method in ("tpe", "cmaes"):
        return optuna_search(space, evaluator, n_trials=n_iter, sampler=method, **options)
    raise ConfigError(
        f"unknown search method {method!r}; expected one of {METHODS}", key="search.method"
    )
