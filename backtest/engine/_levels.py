"""Entry price levels a strategy supplies: ``entry_price(bars)`` for limit and stop entries.

A strategy may define ``entry_price(bars) -> DataFrame`` (the closes' index and columns):
at each close, the price level of the limit or stop entry order that close decides, in
place of the engine's ``close x (1 -/+ entry_offset)`` (:mod:`._orders`). The level serves
either side (a long limit below the close, a short limit above it: the strategy knows
which side its target takes). It receives :class:`~backtest.data.Bars` whatever its
``inputs``, and the rules of the engine's orders apply unchanged: the order works from the
next bar, fills at the level or at a gapping open, expires after ``entry_valid_bars``.

* ``engine.entry_order`` must be ``limit`` or ``stop`` (with ``market`` the levels would
  be ignored: a ``ConfigError``), and ``engine.entry_offset`` unset (the levels replace it).
* **NaN: no order at that bar.** A decision that would open a position with a NaN level
  places nothing, and the asset stays as it was until a later decision (a position held
  on the other side is still closed at market, as with any order entry).
* A level is a finite price > 0 or NaN; anything else is refused, naming the asset and bar.
* The level at bar t may use data up to t only: it is checked as the targets are
  (cut at a few bars t, the levels up to t must not change: :func:`check_levels_lookahead`).
* Batched form: a classmethod ``batch_entry_price(bars, params) -> (n_bars, n_assets,
  k)`` gives the levels of ``k`` parameter sets at once (``params`` as
  ``batch_positions``'); without it the batched path calls ``entry_price`` once per set.
* Data with corporate actions or listings (:mod:`._universe`) is refused: the strategy
  sees adjusted prices there, the orders fill at raw ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.data._bars import Bars, as_bars
from backtest.errors import BacktestError, ConfigError

#: The kernels' ``levels`` argument when the strategy supplies none.
NO_LEVELS = np.zeros((0, 0))


def has_levels(strategy: object) -> bool:
    """Whether a strategy (instance or class) supplies its own entry levels."""
    return callable(getattr(strategy, "entry_price", None))


def check_level_options(strategy: object, params: Any) -> None:
    """Refuse engine options under which a strategy's ``entry_price`` would have no effect.

    Raises:
        ConfigError: market entries (naming ``engine.entry_order``) or an ``entry_offset``
            (which the levels replace).
    """
    name = getattr(strategy, "__name__", type(strategy).__name__)
    if params.entry_order == "market":
        raise ConfigError(
            f"{name}.entry_price supplies limit/stop entry levels, which market entries "
            "ignore: set engine.entry_order=limit (or stop)",
            key="engine.entry_order",
        )
    if params.entry_offset != 0.0:
        raise ConfigError(
            f"engine.entry_offset has no effect: {name}.entry_price sets the entry levels; "
            "remove engine.entry_offset",
            key="engine.entry_offset",
        )


def level_values(strategy: object, bars: Bars) -> NDArray[np.float64]:
    """The strategy's levels on ``bars`` as floats ``(n, a)``, NaN kept, checked.

    Raises:
        BacktestError: not a frame of the closes' shape, or a level that is not NaN and
            not a finite price > 0 (naming the asset and the bar).
    """
    close = bars.close
    name = type(strategy).__name__
    raw = strategy.entry_price(bars)  # type: ignore[attr-defined]
    if not isinstance(raw, pd.DataFrame) or raw.shape != close.shape:
        raise BacktestError(
            f"{name}.entry_price returned {type(raw).__name__} of shape "
            f"{getattr(raw, 'shape', None)}; expected a DataFrame of shape {close.shape} "
            "(bars x assets: the level of each close's entry order, NaN for none)"
        )
    return _checked(raw.to_numpy(dtype=np.float64, na_value=np.nan), close, f"{name}.entry_price")


def _checked(values: NDArray[np.float64], close: pd.DataFrame, what: str) -> NDArray[np.float64]:
    bad = ~(np.isnan(values) | (np.isfinite(values) & (values > 0.0)))
    if bad.any():
        first = tuple(np.argwhere(bad)[0])
        t, j = int(first[0]), int(first[1])
        raise BacktestError(
            f"{what} gives the level {values[first]} for {close.columns[j]!r} at "
            f"{close.index[t]}: a level is a price > 0, or NaN for no order "
            f"({int(bad.sum())} such values)"
        )
    return np.ascontiguousarray(values)


def entry_levels(strategy: object, bars: Bars, params: Any, plain: bool) -> NDArray[np.float64]:
    """The kernel's ``levels``: the strategy's ``(n, a)`` levels, or :data:`NO_LEVELS`.

    Raises:
        ConfigError: options under which the levels have no effect, or data that is not a
            plain panel (``plain`` False).
        BacktestError: a bad level (:func:`level_values`).
    """
    if not has_levels(strategy):
        return NO_LEVELS
    check_level_options(strategy, params)
    _require_plain(strategy, plain)
    return level_values(strategy, bars)


def _require_plain(strategy: object, plain: bool) -> None:
    if not plain:
        name = getattr(strategy, "__name__", type(strategy).__name__)
        raise ConfigError(
            f"{name}.entry_price levels need a plain panel (no listings, tradable set or "
            "corporate actions: the strategy would see adjusted prices, the orders fill at "
            "raw ones); use engine.entry_offset for the engine's levels",
            key="engine.entry_order",
        )


def batch_levels(
    strategy_cls: type, bars: Bars, params: Mapping[str, NDArray[Any]], k: int, plain: bool
) -> NDArray[np.float64]:
    """``(n, a, k)`` levels of ``k`` sets: ``batch_entry_price``, else one call per set."""
    _require_plain(strategy_cls, plain)
    close = bars.close
    n, a = close.shape
    batched = getattr(strategy_cls, "batch_entry_price", None)
    if callable(batched):
        out = np.asarray(batched(bars, params), dtype=np.float64)
        if out.shape != (n, a, k):
            raise BacktestError(
                f"{strategy_cls.__name__}.batch_entry_price returned shape {out.shape}, "
                f"expected {(n, a, k)} (bars x assets x sets)"
            )
        return _checked(out, close, f"{strategy_cls.__name__}.batch_entry_price")
    out = np.empty((n, a, k))
    for i in range(k):
        one = {c: _item(v[i]) for c, v in params.items()}
        out[:, :, i] = level_values(strategy_cls(**one), bars)
    return out


def _item(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def check_levels_lookahead(strategy: object, bars: Bars, full: NDArray[np.float64]) -> None:
    """Raise if the levels up to bar t change when the bars after t are removed.

    Raises:
        StrategyContractError: naming the strategy, the first bar and asset that changed.
    """
    from backtest.strategies._checks import check_lookahead, strategy_name
    from backtest.strategies._params import strategy_params

    def levels(data: Any) -> NDArray[np.float64]:
        return level_values(strategy, as_bars(data))

    check_lookahead(
        levels,
        bars,
        name=f"{strategy_name(strategy)}.entry_price",
        params=strategy_params(strategy),
        full=np.where(np.isnan(full), 0.0, full),
    )
