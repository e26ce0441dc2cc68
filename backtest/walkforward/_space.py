"""Parameter spaces of a per-fold search, with the search module's semantics.

A space maps each parameter to a list of choices or a range ``{low, high, step, log}``
(the ``search.space`` of the config), parsed by :func:`backtest.search.parse_space`.
A constraint is a boolean expression over parameter names such as ``"fast < slow"``
(or a callable on a params dict), compiled by :class:`backtest.search.Constraint`;
sets for which it is false are skipped and are not trials.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.errors import ConfigError
from backtest.search import Choice, Constraint, FloatRange, IntRange, parse_space

ConstraintRule = str | Callable[[dict[str, Any]], bool] | None


def _compile(rule: ConstraintRule, names: list[str]) -> Constraint | None:
    if rule is None or (isinstance(rule, str) and not rule.strip()):
        return None
    return Constraint(rule, names=names)


def constraint_mask(frame: pd.DataFrame, constraint: ConstraintRule) -> NDArray[np.bool_]:
    """Which rows of a parameter frame satisfy ``constraint`` (all when None).

    Raises:
        ConfigError: A malformed expression or an unknown name (key ``search.constraint``).

    Examples:
        >>> frame = pd.DataFrame({"fast": [5, 50], "slow": [20, 20]})
        >>> constraint_mask(frame, "fast < slow").tolist()
        [True, False]
    """
    compiled = _compile(constraint, [str(c) for c in frame.columns])
    if compiled is None:
        return np.ones(len(frame), dtype=bool)
    return compiled.mask(frame)


def grid_frame(space: Mapping[str, Any], constraint: ConstraintRule = None) -> pd.DataFrame:
    """Every combination of the space's values that satisfies ``constraint``.

    Raises:
        ConfigError: An empty space, a bad range, or no combination left.

    Examples:
        >>> grid_frame({"fast": [5, 10], "slow": {"low": 10, "high": 30, "step": 10}},
        ...            "fast < slow").to_dict("list")
        {'fast': [5, 5, 5, 10, 10], 'slow': [10, 20, 30, 20, 30]}
    """
    dims = parse_space(space)
    names = list(dims)
    values = [list(np.asarray(dims[n].grid()).tolist()) for n in names]
    frame = pd.DataFrame(list(itertools.product(*values)), columns=names)
    frame = frame[constraint_mask(frame, constraint)].reset_index(drop=True)
    if frame.empty:
        raise ConfigError(
            f"search.constraint {constraint!r} rejects every combination", key="search.constraint"
        )
    return frame


def random_frame(
    space: Mapping[str, Any],
    n_iter: int,
    rng: np.random.Generator,
    constraint: ConstraintRule = None,
) -> pd.DataFrame:
    """Up to ``n_iter`` distinct random parameter sets that satisfy ``constraint``.

    Each parameter is drawn as the search module draws it (uniform choices; uniform,
    log-uniform or step-grid ranges). Fewer than ``n_iter`` sets come back when the
    space holds fewer distinct ones.

    Raises:
        ConfigError: ``n_iter < 1``, a bad range, or a constraint nothing satisfies.
    """
    if n_iter < 1:
        raise ConfigError(f"search.n_iter must be >= 1, got {n_iter}", key="search.n_iter")
    dims = parse_space(space)
    compiled = _compile(constraint, list(dims))
    kept = pd.DataFrame()
    for _ in range(50):
        size = max(64, 2 * (n_iter - len(kept)))
        batch = pd.DataFrame({n: d.sample(rng, size) for n, d in dims.items()})
        if compiled is not None:
            batch = batch[compiled.mask(batch)]
        kept = pd.concat([kept, batch], ignore_index=True) if len(kept) else batch
        kept = kept.drop_duplicates(ignore_index=True).head(n_iter)
        if len(kept) >= n_iter:
            break
    if kept.empty:
        raise ConfigError(
            f"search.constraint {constraint!r} rejects every random draw", key="search.constraint"
        )
    return kept.reset_index(drop=True)


def suggest(trial: Any, space: Mapping[str, Any]) -> dict[str, Any]:
    """Ask an Optuna trial for one value of every parameter of the space."""
    out: dict[str, Any] = {}
    for name, dim in parse_space(space).items():
        if isinstance(dim, Choice):
            out[name] = trial.suggest_categorical(name, list(dim.values))
        elif isinstance(dim, IntRange):
            if dim.log:
                out[name] = trial.suggest_int(name, dim.low, dim.high, log=True)
            else:
                out[name] = trial.suggest_int(name, dim.low, dim.high, step=dim.step)
        else:
            assert isinstance(dim, FloatRange)
            out[name] = trial.suggest_float(name, dim.low, dim.high, step=dim.step, log=dim.log)
    return out
