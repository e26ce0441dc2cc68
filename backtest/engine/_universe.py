"""Real universes for the kernels: listings, delistings, the tradable set, corporate actions.

:class:`~backtest.data.Bars` carries what is traded: unadjusted prices, NaN before an asset
lists and after it delists, and optionally ``tradable`` (a point-in-time membership),
``split``, ``dividend`` and ``delist_return``. The compiled kernels need finite prices and
per-bar rules; :func:`kernel_inputs` turns the bars into them, once per run:

* **tradable set** ``hold[t, j]``: the asset may be held after the close of bar t: it is
  tradable on bar t (:meth:`~backtest.data.Bars.tradable_mask`: ``tradable`` and a finite
  close) and not leaving on it (below). Every kernel multiplies the targets by ``hold``,
  so nothing is opened or kept where an asset is not tradable.
* **leaving** ``leave[t, j]``: a holding is closed at the close of bar t (whatever the
  schedule and the execution: with ``next_open`` there is no next open after a
  delisting, so the close is at the last listed close) when the asset is tradable on
  bar t and not on bar t + 1. The exit reason is ``delisted`` when its close is NaN from
  bar t + 1 (or the data gives a delisting return on the last bar), else ``untradable``
  (it leaves the membership while still priced). A membership end is announced before
  it happens (as index changes and delistings are), so closing on the last tradable
  bar is not look-ahead.
* **delisting return** (``delist_return``, on an asset's last listed bar L): the holding
  is closed at ``close[L] x (1 + delist_return)`` instead of ``close[L]``; the kernels'
  close of that bar is that price, so equity and the trade's exit price carry it. The
  close is charged like any order.
* **finite prices**: the kernels' closes are forward-filled after delisting (a name is
  valued at its last known price, never NaN) and back-filled before listing (never
  held there, any finite value does); missing opens, highs and lows take that close.
* **corporate actions** on the ex-date bar t, before anything else on it: a split
  multiplies units by ``split[t, j]`` (entry and peak prices are divided by it, so stops
  and trade returns stay in the new shares' terms); a dividend pays
  ``units x dividend[t, j]`` in cash (after the split: the dividend is per new share),
  to longs and from shorts. The sleeve accounting (default options) expresses the same
  as a total return ``split x (close + dividend) / close[t-1] - 1`` of the bar, which is
  reinvested at that close: the same numbers as units with ``rebalance=bar``. Trade
  returns are price returns (split-adjusted, without dividends).

Strategies see :func:`strategy_bars`: the split- and dividend-adjusted view
(``Bars.adjusted()``), so an SMA does not jump at a split, while the kernels fill at the
raw prices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.data._bars import Bars
from backtest.engine._exits import DELISTED, UNTRADABLE
from backtest.errors import DataValidationError

__all__ = [
    "KernelInputs",
    "is_plain",
    "kernel_array",
    "kernel_atr",
    "kernel_inputs",
    "strategy_bars",
    "vol_bars",
]


def kernel_array(values: Any) -> NDArray[np.float64]:
    """``values`` as the kernels read their price and target tables: C-ordered, read-only.

    numba compiles a kernel once per argument type, and an array's layout and whether it
    can be written are part of its type: pandas hands out read-only arrays (copy-on-write)
    in one order or the other, numpy's own results writable ones. The cash-and-units
    kernel took about 30 s to compile, once for each of three such mixes, and a run could
    need two. Inputs are never written, so a read-only view costs nothing; only an array
    in the other order is copied.

    >>> a = kernel_array(np.ones((3, 2), order="F"))
    >>> a.flags.c_contiguous, a.flags.writeable
    (True, False)
    """
    array = np.ascontiguousarray(values, dtype=np.float64)
    if array.flags.writeable:
        array = array.view()
        array.flags.writeable = False
    return array


@dataclass(frozen=True, slots=True)
class KernelInputs:
    """The arrays every kernel reads for one panel (see the module docstring).

    Attributes:
        open: Finite opens ``(n, a)`` (the closes where the bars have none).
        high: Finite highs.
        low: Finite lows.
        close: Finite closes, with the delisting returns applied on the last listed bar.
        hold: ``(n, a)`` bool: the asset may be held after the close of bar t.
        leave: ``(n, a)`` int64: the exit reason of a forced close at bar t's close (0: none).
        split: ``(n, a)`` new shares per old share on the ex-date bar (1.0 when none).
        dividend: ``(n, a)`` cash per share going ex on that bar (0.0 when none).
        actions: Whether any split or dividend is present.
        plain: A full panel without actions: the kernels' rules are those before universes.
    """

    open: NDArray[np.float64]
    high: NDArray[np.float64]
    low: NDArray[np.float64]
    close: NDArray[np.float64]
    hold: NDArray[np.bool_]
    leave: NDArray[np.int64]
    split: NDArray[np.float64]
    dividend: NDArray[np.float64]
    actions: bool
    plain: bool

    def __post_init__(self) -> None:
        """Every price table in the kernels' one form (:func:`kernel_array`)."""
        for name in ("open", "high", "low", "close", "split", "dividend"):
            object.__setattr__(self, name, kernel_array(getattr(self, name)))

    def rule_arrays(
        self,
    ) -> tuple[NDArray[np.bool_], NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
        """``(hold, leave, split, dividend)`` for the kernels: all ``(0, 0)`` on a plain panel.

        Empty arrays tell the kernels there is nothing to check (no per-bar scan, the
        loops of a full panel unchanged); same dtypes, so no new compilation.
        """
        if self.plain:
            return _EMPTY_HOLD, _EMPTY_LEAVE, _EMPTY_FLOAT, _EMPTY_FLOAT
        return self.hold, self.leave, self.split, self.dividend


_EMPTY_HOLD = np.zeros((0, 0), np.bool_)
_EMPTY_LEAVE = np.zeros((0, 0), np.int64)
_EMPTY_FLOAT = kernel_array(np.zeros((0, 0)))  # the type of split and dividend


def is_plain(bars: Bars) -> bool:
    """Whether ``bars`` is a full panel (every asset tradable on every bar) without actions."""
    return (
        bool(np.isfinite(bars.close.to_numpy(dtype=np.float64)).all())
        and (bars.tradable is None or bool(bars.tradable.to_numpy(dtype=bool).all()))
        and not bars.has_actions
        and (
            bars.delist_return is None
            or bool(np.isnan(bars.delist_return.to_numpy(dtype=np.float64)).all())
        )
    )


def kernel_inputs(bars: Bars) -> KernelInputs:
    """The kernels' arrays of ``bars`` (see the module docstring).

    Raises:
        DataValidationError: a delisting return on a bar that is not the asset's last
            listed bar (naming the symbol and the timestamp).
    """
    raw = np.ascontiguousarray(bars.close.to_numpy(dtype=np.float64))
    n, a = raw.shape
    if is_plain(bars):
        arrays = [raw]
        for name in ("open", "high", "low"):
            frame = getattr(bars, name)
            arrays.append(raw if frame is None else _float(frame))
        return KernelInputs(
            arrays[1], arrays[2], arrays[3], raw, np.ones((n, a), np.bool_),
            np.zeros((n, a), np.int64), np.ones((n, a)), np.zeros((n, a)), False, True,
        )  # fmt: skip
    tradable = bars.tradable_mask()
    listed = np.isfinite(raw)
    nxt = np.zeros((n, a), np.bool_)
    nxt[:-1] = tradable[1:]
    leave = np.zeros((n, a), np.int64)
    out = tradable & ~nxt
    out[-1] = False
    gone_next = np.zeros((n, a), np.bool_)
    gone_next[:-1] = ~listed[1:]
    leave[out & gone_next] = DELISTED
    leave[out & ~gone_next] = UNTRADABLE
    close = raw.copy()
    if bars.delist_return is not None:
        dr = bars.delist_return.to_numpy(dtype=np.float64)
        given = np.isfinite(dr)
        last = np.zeros((n, a), np.bool_)
        last[:-1] = listed[:-1] & ~listed[1:]
        last[-1] = listed[-1]
        bad = given & ~last
        if bad.any():
            t, j = np.argwhere(bad)[0]
            raise DataValidationError(
                f"delist_return of {bars.symbols[j]!r} at {bars.index[t]} is not on its last "
                f"listed bar; give it only on the bar of the last price",
                column="delist_return",
            )
        close[given] = raw[given] * (1.0 + dr[given])
        leave[-1][given[-1] & tradable[-1]] = DELISTED
    close = _filled(close)
    arrays = []
    for name in ("open", "high", "low"):
        frame = getattr(bars, name)
        if frame is None:
            arrays.append(close)
        else:
            values = _float(frame)
            arrays.append(np.ascontiguousarray(np.where(np.isfinite(values), values, close)))
    split = np.ones((n, a)) if bars.split is None else _float(bars.split)
    dividend = np.zeros((n, a)) if bars.dividend is None else _float(bars.dividend)
    hold = np.ascontiguousarray(tradable & (leave == 0))
    return KernelInputs(
        arrays[0], arrays[1], arrays[2], close, hold, leave, split, dividend,
        bars.has_actions, False,
    )  # fmt: skip


def strategy_bars(bars: Bars) -> Bars:
    """What strategies see: the split- and dividend-adjusted view when actions are given.

    :meth:`Bars.adjusted() <backtest.data.Bars.adjusted>` (anchored at each asset's
    start: no look-ahead).
    """
    return bars.adjusted() if bars.has_actions else bars


def kernel_atr(rules: Any, bars: Bars, ki: KernelInputs, view: Bars) -> NDArray[np.float64]:
    """The ATR a trade uses for ``stop_unit: atr``, in the raw prices' terms.

    On a plain panel, the ATR of the bars. Otherwise the ATR of the strategy's view
    (adjusted, filled: a split is no true range) times ``close / adjusted close`` on
    each bar, so it is in the units of the raw prices the stops compare it with.
    """
    from backtest.engine._exits import stop_atr

    has = bars.has("high") and bars.has("low")
    if ki.plain or not has or not getattr(rules, "use_atr", False):
        return stop_atr(rules, ki.high if has else None, ki.low if has else None, ki.close)
    close = _filled(view.close.to_numpy(dtype=np.float64))
    hl = [np.where(np.isfinite(v := _float(getattr(view, f))), v, close) for f in ("high", "low")]
    with np.errstate(invalid="ignore", divide="ignore"):
        return stop_atr(rules, hl[0], hl[1], close) * (ki.close / close)


def vol_bars(view: Bars) -> Bars:
    """Closes for the volatility overlay: the strategy's view, filled (flat outside listings)."""
    close = pd.DataFrame(_filled(view.close.to_numpy(dtype=np.float64)), view.close.index,
                         view.close.columns)  # fmt: skip
    return Bars.from_close(close)


def _float(frame: pd.DataFrame) -> NDArray[np.float64]:
    return np.ascontiguousarray(frame.to_numpy(dtype=np.float64))


def _filled(close: NDArray[np.float64]) -> NDArray[np.float64]:
    """Forward-filled, then back-filled, then 1.0 (an asset with no price at all)."""
    frame = pd.DataFrame(close).ffill().bfill().fillna(1.0)
    return np.ascontiguousarray(frame.to_numpy(dtype=np.float64))
