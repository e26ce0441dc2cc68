"""Checks a strategy must pass before a run relies on it: no look-ahead, an honest fast path.

* :func:`check_lookahead`: positions computed on the data cut at a few bars t equal
  the full run's positions up to t. A strategy that reads a later bar (``shift(-1)``,
  a full-sample mean, a centred window) changes its past when the future is removed.
* :func:`check_batch_positions`: a strategy's ``batch_positions`` (the fast path of
  searches and walk-forwards) gives the same positions as ``positions`` for a few
  sampled parameter sets.
* :func:`has_fast_path`: a ``batch_positions`` counts only when it belongs to the class
  whose ``positions`` it replaces (a subclass overriding only ``positions`` must not be
  searched through its parent's fast path).

Every check takes "a callable computing positions for a frame" (``prices -> wide
positions``), so the engine's own conversion of a strategy into targets can be
plugged in unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.errors import StrategyContractError

PositionsFn = Callable[[pd.DataFrame], Any]

#: Positions agree when within this relative / absolute tolerance (float summation order).
RTOL, ATOL = 1e-9, 1e-12
#: Cut points of the look-ahead check: bars near these fractions of the data.
CUT_FRACTIONS = (0.05, 0.1, 0.2)


def _owner(cls: type, name: str) -> type | None:
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass
    return None


def has_fast_path(cls: type) -> bool:
    """Whether ``cls`` has a ``batch_positions`` of its own for its ``positions``.

    True when ``batch_positions`` is defined on the class that defines ``positions``
    or on a class before it in the method resolution order. A subclass of a built-in
    that overrides only ``positions`` inherits a ``batch_positions`` computing its
    parent's rule: it has no fast path (it runs one backtest per set instead).

    Examples:
        >>> from backtest.strategies import SmaCross
        >>> class Contrarian(SmaCross):
        ...     def positions(self, prices):
        ...         return -super().positions(prices)
        >>> has_fast_path(SmaCross), has_fast_path(Contrarian)
        (True, False)
    """
    batch = _owner(cls, "batch_positions")
    single = _owner(cls, "positions")
    if batch is None or single is None:  # a batch-only class has nothing else to use
        return batch is not None
    mro = cls.__mro__
    return mro.index(batch) <= mro.index(single)


def require_strategy_class(cls: object) -> type:
    """Return ``cls`` if it has ``positions`` (or ``batch_positions``), else raise.

    Raises:
        ConfigError: not a strategy class (key ``strategy``).
    """
    from backtest.errors import ConfigError

    if not isinstance(cls, type) or not any(
        callable(getattr(cls, a, None)) for a in ("positions", "batch_positions")
    ):
        raise ConfigError(
            f"{cls!r} is not a strategy class: it needs a positions(prices) method "
            "(see README 'Writing a strategy')",
            key="strategy",
        )
    return cls


def strategy_name(obj: object) -> str:
    """The class name of a strategy or strategy class."""
    return obj.__name__ if isinstance(obj, type) else type(obj).__name__


def positions_values(positions: Any, prices: pd.DataFrame) -> NDArray[np.float64]:
    """Wide positions as floats, NaN as flat (0), checked to have the prices' shape."""
    values = np.asarray(
        positions.to_numpy(dtype=np.float64, na_value=np.nan)
        if isinstance(positions, pd.DataFrame)
        else positions,
        dtype=np.float64,
    )
    if values.shape != prices.shape:
        raise StrategyContractError(
            f"positions have shape {values.shape}; expected {prices.shape} (bars x assets)",
            strategy="?",
        )
    return np.where(np.isnan(values), 0.0, values)


def _first_difference(a: NDArray[np.float64], b: NDArray[np.float64]) -> tuple[int, int] | None:
    bad = ~np.isclose(a, b, rtol=RTOL, atol=ATOL)
    if not bad.any():
        return None
    rows = np.flatnonzero(bad.any(axis=1))
    t = int(rows[0])
    return t, int(np.flatnonzero(bad[t])[0])


def cut_points(full: NDArray[np.float64], n_cuts: int = len(CUT_FRACTIONS)) -> list[int]:
    """Prefix lengths of the look-ahead check, from the full run's positions.

    Each cut ends just after a bar where some position changes to a non-zero value, the
    first such bar from one of :data:`CUT_FRACTIONS` of the data (or after the previous
    cut); half the data when nothing changes. A strategy reading bar t+1 decides such a
    change one bar early, which a cut there exposes whether it fills the missing bar
    with NaN, 0 or the previous value. Short prefixes keep the check cheap (about 5-10%
    of a backtest).
    """
    n = full.shape[0]
    if n < 3:
        return []
    prev = np.vstack([np.zeros((1, full.shape[1])), full[:-1]])
    changes = np.flatnonzero(((full != prev) & (full != 0.0)).any(axis=1))
    cuts: list[int] = []
    for frac in CUT_FRACTIONS[:n_cuts]:
        target = max(int(n * frac), cuts[-1] if cuts else 0)  # each cut at a new change
        after = changes[changes >= target]
        if len(after) and after[0] < n - 1:
            cuts.append(int(after[0]) + 1)
    return cuts or [max(2, n // 2)]


def check_lookahead(
    positions: PositionsFn,
    prices: pd.DataFrame,
    *,
    name: str,
    params: Mapping[str, Any] | None = None,
    full: NDArray[np.float64] | None = None,
    n_cuts: int = len(CUT_FRACTIONS),
) -> list[int]:
    """Raise if positions up to bar t change when the bars after t are removed.

    Args:
        positions: ``prices -> wide positions`` (a strategy's bound ``positions``).
        prices: The run's wide closes.
        name: The strategy's name, for the message.
        params: Its parameters, for the message.
        full: The full run's positions (NaN as 0) when already computed.
        n_cuts: How many cut points (see :func:`cut_points`).

    Returns:
        The prefix lengths checked.

    Raises:
        StrategyContractError: the first bar (and asset) whose position changed.
    """
    if full is None:
        full = positions_values(positions(prices), prices)
    cuts = cut_points(full, n_cuts)
    for t in cuts:
        part = positions_values(positions(prices.iloc[:t]), prices.iloc[:t])
        diff = _first_difference(part, full[:t])
        if diff is not None:
            bar, j = diff
            raise StrategyContractError(
                f"strategy {name} looks ahead: with params {dict(params or {})} its position "
                f"for {prices.columns[j]!r} at {prices.index[bar]} is {full[bar, j]:g} on the "
                f"full data but {part[bar, j]:g} when the bars after {prices.index[t - 1]} are "
                "removed (a position at bar t may use data up to t only; look for shift(-1), "
                "centred windows or full-sample statistics)",
                strategy=name,
                params=dict(params or {}),
                bar=prices.index[bar],
                asset=prices.columns[j],
            )
    return cuts


def batch_column(
    strategy_cls: type, prices: pd.DataFrame, params: Mapping[str, Any]
) -> NDArray[np.float64]:
    """One parameter set's positions from ``batch_positions``, asset by asset (wide)."""
    arrays = {k: np.array([v]) for k, v in params.items()}
    fast = strategy_cls.batch_positions  # type: ignore[attr-defined]
    close = prices.to_numpy(dtype=np.float64)
    columns = [
        np.asarray(fast(np.ascontiguousarray(close[:, j]), arrays), dtype=np.float64)
        for j in range(close.shape[1])
    ]
    return np.column_stack([c.reshape(len(prices), -1)[:, 0] for c in columns])


def set_positions_fn(strategy_cls: type, params: Mapping[str, Any]) -> PositionsFn | None:
    """``prices -> wide positions`` of one parameter set, or ``None`` if it is rejected.

    ``strategy_cls(**params).positions``; for a class with only ``batch_positions``,
    its one-set column per asset.
    """
    from backtest.errors import ConfigError

    if not callable(getattr(strategy_cls, "positions", None)):
        return lambda prices: batch_column(strategy_cls, prices, params)
    try:
        return strategy_cls(**params).positions
    except (ConfigError, TypeError, ValueError):
        return None


def sample_rows(n_rows: int, n_samples: int = 3) -> list[int]:
    """Which rows of a parameter frame to verify: the first, the last and evenly between."""
    if n_rows <= n_samples:
        return list(range(n_rows))
    return sorted({int(i) for i in np.linspace(0, n_rows - 1, n_samples).round()})


def check_batch_positions(
    strategy_cls: type,
    prices: pd.DataFrame,
    param_sets: Sequence[Mapping[str, Any]],
    *,
    positions: Callable[[Mapping[str, Any]], PositionsFn] | None = None,
) -> int:
    """Raise if ``batch_positions`` differs from ``positions`` for any of ``param_sets``.

    A set the strategy's constructor rejects is skipped (the search records it as a
    failed trial).

    Args:
        strategy_cls: The strategy class.
        prices: The run's wide closes.
        param_sets: Full parameter sets (searched and fixed parameters).
        positions: ``params -> (prices -> wide positions)``; default
            ``strategy_cls(**params).positions``.

    Returns:
        How many sets were compared.

    Raises:
        StrategyContractError: naming the strategy, the set, the first differing bar
            and asset, and both values.
    """
    from backtest.errors import ConfigError

    name = strategy_cls.__name__
    checked = 0
    for params in param_sets:
        try:
            fn = positions(params) if positions else strategy_cls(**params).positions
        except (ConfigError, TypeError, ValueError):
            continue
        single = positions_values(fn(prices), prices)
        batch = batch_column(strategy_cls, prices, params)
        batch = np.where(np.isnan(batch), 0.0, batch)
        diff = _first_difference(batch, single)
        checked += 1
        if diff is not None:
            bar, j = diff
            raise StrategyContractError(
                f"{name}.batch_positions disagrees with {name}.positions for params "
                f"{dict(params)}: at {prices.index[bar]} for {prices.columns[j]!r} the batch "
                f"position is {batch[bar, j]:g}, positions() gives {single[bar, j]:g}; a search "
                "would score another strategy than the one it reports (fix batch_positions, "
                "or remove it to run one backtest per set)",
                strategy=name,
                params=dict(params),
                bar=prices.index[bar],
                asset=prices.columns[j],
            )
    return checked


def check_strategy(
    strategy: Any, prices: pd.DataFrame, *, n_cuts: int = len(CUT_FRACTIONS)
) -> None:
    """Check a strategy on ``prices`` the way every run does before it relies on it.

    Runs the look-ahead check (positions on the data cut at a few bars t equal the
    full run's positions up to t) and, when the class has a fast path of its own, the
    comparison of ``batch_positions`` with ``positions`` for the strategy's parameters.

    Args:
        strategy: A strategy instance (anything with ``positions(prices)``).
        prices: Wide closes: a ``DatetimeIndex`` and one column per asset.
        n_cuts: Cut points of the look-ahead check.

    Raises:
        StrategyContractError: the strategy looks ahead, or its ``batch_positions``
            disagrees with ``positions``; names the strategy, its parameters and the
            first bar that changed.

    Examples:
        >>> import numpy as np, pandas as pd
        >>> from backtest.strategies import SmaCross
        >>> idx = pd.bdate_range("2020-01-01", periods=300)
        >>> prices = pd.DataFrame({"A": 100 + np.sin(np.arange(300) / 9) * 10}, index=idx)
        >>> check_strategy(SmaCross(5, 20), prices)  # passes silently
        >>> class Peeking(SmaCross):
        ...     def positions(self, prices):
        ...         return super().positions(prices).shift(-1)
        >>> check_strategy(Peeking(5, 20), prices)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        backtest.errors.StrategyContractError: strategy Peeking looks ahead: ...
    """
    from backtest.strategies._params import strategy_params

    params = strategy_params(strategy)
    name = strategy_name(strategy)
    check_lookahead(strategy.positions, prices, name=name, params=params, n_cuts=n_cuts)
    cls = type(strategy)
    if has_fast_path(cls) and params:
        check_batch_positions(cls, prices, [params], positions=lambda _: strategy.positions)
