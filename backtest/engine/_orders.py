"""Entry orders and position sizing: limit and stop entries with expiry, size from the risk taken.

The rules live here once, as small compiled functions the per-bar kernel
(:mod:`backtest.engine._kernel`) calls for the single backtest and the batched path; the
tests keep a plain Python loop of the same rules (``tests/reference_orders.py``).

Entry orders (``engine.entry_order``; cash and units accounting only):

* ``market`` (the default): an entry fills like any trade, at the deciding close or at the
  next open (``engine.execution``);
* ``limit`` / ``stop``: a decision (at a scheduled close) that opens a position -- the
  target's sign differs from the held sign and is not 0 -- places an order at a level
  from the deciding close ``C``: a limit buy at ``C (1 - offset)``, a limit short at
  ``C (1 + offset)``, a stop buy at ``C (1 + offset)``, a stop short at ``C (1 - offset)``;
  with ``engine.stop_unit = atr`` the distance is ``offset x ATR`` known at that close; a
  strategy with ``entry_price(bars)`` sets the level itself (:mod:`._levels`; NaN: none).
  The order works from the next bar on (with both executions): a limit buy fills at the
  level when the bar's low reaches it, or at the open when the bar opens below it (a gap
  is a better price for a limit); a stop buy fills at the level when the high reaches it,
  or at the open when the bar opens above it (a worse price for a stop); shorts mirrored.
* ``engine.entry_valid_bars = N``: an order unfilled after N bars is cancelled (``null``:
  it never expires); the asset then stays flat until the strategy's target changes from
  the value it had when the order expired (as after a stop with ``signal_change``).
* **a pending entry vs the signal** (the one rule): the order stands while the target keeps
  its side; a scheduled decision whose target is flat or on the other side cancels it
  (and, on the other side, places the new side's order). A position already held on the
  other side is closed at market by that decision (at the close, or the next open).
* an entry filled by an order is sized from the equity at the last close before the fill;
  its exits (:mod:`._exits`) are active from the bar after the fill (the path inside the
  fill bar after the fill is unknown; backtesting.py checks sl/tp from the next bar too).
  Exits and resizes of held positions stay market orders.

Sizing (``engine.sizing``; every new position, market or order):

* ``weight`` (the default): the target weight;
* ``volatility``: the target weight scaled to a per-asset volatility target,
  ``w x target_volatility / sigma_j`` with ``sigma_j`` the annualised standard deviation
  (ddof 1) of the asset's close-to-close returns over the last ``vol_lookback`` bars known
  at the decision (0 before the lookback, or for a flat asset); the book-level overlay is
  then off, the limits still bind (:func:`volatility_scale`);
* ``risk``: ``units = risk_per_trade x equity / (fill - stop level)``, the stop level from
  ``engine.stop_loss`` (a fraction of the fill, or an ATR multiple with ``stop_unit = atr``),
  so the loss at the stop is ``risk_per_trade x equity`` before costs; the weight this
  gives is capped at ``max_weight`` and at what ``max_gross_leverage`` leaves after the
  positions already held. The size is fixed for the trade (no resizes while it is held).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numpy.typing import NDArray

from backtest.engine._sleeves import _sign

#: ``engine.entry_order`` codes.
ORDER_TYPES = ("market", "limit", "stop")
MARKET = 0
LIMIT = 1
STOP = 2
#: ``engine.sizing`` codes.
SIZINGS = ("weight", "risk", "volatility")
#: Layout of the ``orders`` option vector the kernels take (one per set).
ORDER_FIELDS = (
    "entry_order", "entry_offset", "entry_valid_bars", "sizing", "risk_per_trade",
    "max_weight", "max_gross", "stop_loss", "flat_at_session_end", "max_bars_unit",
    "max_participation", "impact",
)  # fmt: skip


@numba.njit(cache=True, nogil=True, inline="always")
def order_level(
    kind: int, side: float, close: float, offset: float, atr: float, use_atr: bool
) -> float:  # pragma: no cover - compiled; equal to the reference loop in the tests
    """The price level of an entry order decided at ``close`` (NaN: cannot be placed)."""
    dist = offset * atr if use_atr else offset * close
    if kind == LIMIT:
        return close - side * dist
    return close + side * dist


@numba.njit(cache=True, nogil=True, inline="always")
def order_fill(
    kind: int, side: float, level: float, open_: float, high: float, low: float
) -> float:  # pragma: no cover - compiled
    """The fill price of a working entry order in this bar, NaN when it does not fill."""
    if level != level:
        return np.nan
    buy = side > 0.0
    if kind == LIMIT:
        if buy:
            return open_ if open_ <= level else (level if low <= level else np.nan)
        return open_ if open_ >= level else (level if high >= level else np.nan)
    if buy:
        return open_ if open_ >= level else (level if high >= level else np.nan)
    return open_ if open_ <= level else (level if low <= level else np.nan)


@numba.njit(cache=True, nogil=True, inline="always")
def entry_weight(
    w: float, price: float, atr: float, use_atr: bool, orders: np.ndarray, room: float
) -> float:  # pragma: no cover - compiled
    """The weight of a new position with target ``w`` filled at ``price``.

    ``weight`` sizing: ``w``. ``risk`` sizing: ``sign(w) x risk x price / distance`` (the
    distance to the stop level), capped at ``max_weight`` and at ``room`` (the gross
    weight ``max_gross_leverage`` leaves); 0 when the distance is unknown (an ATR not yet
    defined).
    """
    if orders[3] != 1.0 or w == 0.0:
        return w
    dist = orders[7] * atr if use_atr else orders[7] * price
    if not (dist > 0.0):
        return 0.0
    size = orders[4] * price / dist
    size = min(size, orders[5], max(room, 0.0))
    return size if w > 0.0 else -size


@numba.njit(cache=True, nogil=True, inline="always")
def participation_cap(u: float, new: float, cap: float) -> float:  # pragma: no cover - compiled
    """The position after a trade from ``u`` towards ``new`` under a cap of ``cap`` units.

    Closing is never capped (a flip closes in full); the part that opens or adds trades at
    most ``cap`` units; the rest is dropped.
    """
    if u != 0.0 and _sign(new) != _sign(u):
        return _sign(new) * min(abs(new), cap)
    if abs(new) > abs(u):
        return u + _sign(new - u) * min(abs(new - u), cap)
    return new


@numba.njit(cache=True, nogil=True, inline="always")
def impact_cost(k: float, traded: float, vol: float, price: float) -> float:  # pragma: no cover
    """Zipline's volume-share impact: ``k x min(|traded| / vol, 1)^2`` of the notional."""
    if k == 0.0 or traded == 0.0:
        return 0.0
    share = 1.0 if vol <= 0.0 else min(abs(traded) / vol, 1.0)
    return k * share * share * abs(traded) * price


@numba.njit(cache=True, nogil=True)
def _mark(trades, stats, dec, kind):  # pragma: no cover - compiled  # fmt: skip
    """Decision bar and order type of the trade just recorded."""
    k = int(stats[0]) - 1
    if trades.shape[0] > k and trades.shape[1] > 9:
        trades[k, 8] = dec
        trades[k, 9] = kind


@numba.njit(cache=True, nogil=True)
def _place_order(
    t, j, w, kind, held, o_side, o_level, o_w, o_dec, close, atr, use_atr, offset, levels,
):  # pragma: no cover - compiled  # fmt: skip
    """A scheduled decision with entry orders: cancel, place; returns the weight for the market.

    An order on the other side than the target (or with a flat target) is cancelled; a
    target that opens a position (its sign not the held one) places an order unless one
    of its side works already, and a position held on the other side is closed at market
    (weight 0). The level is the strategy's ``levels[t, j]`` when it supplies them
    (:mod:`._levels`; ``levels`` is ``(0, 0)`` otherwise), else :func:`order_level`. A level
    not defined (NaN: the strategy's "no order", or an ATR before its lookback) places
    nothing.
    """
    ws = _sign(w)
    if o_side[j] != 0.0 and ws != o_side[j]:
        o_side[j] = 0.0
    if ws == 0.0 or ws == _sign(held):
        return w
    if o_side[j] == 0.0:
        if levels.shape[0] > 0:
            level = levels[t, j]
        else:
            level = order_level(kind, ws, close[t, j], offset, atr[t, j], use_atr)
        if level == level and level > 0.0:
            o_side[j] = ws
            o_level[j] = level
            o_w[j] = w
            o_dec[j] = t
    return 0.0


@numba.njit(cache=True, nogil=True)
def _fill_orders(
    t, kind, valid, o_side, o_level, o_w, o_dec, x_locked, x_value, last_signal, open_, high,
    low, close, equity, cash, units, entry_bar, entry_fill, peak, trade_atr, atr, use_atr,
    orders, dec_of, type_of, fresh, fee, slip, fixed, min_comm, cost_out, stats, volume,
):  # pragma: no cover - compiled  # fmt: skip
    """Fill the working entry orders that this bar reaches; expire the old ones; new cash.

    A fill is sized from ``equity`` (the last close's) and, with risk sizing, capped by
    the gross room left by the positions valued at the last close.
    """
    a = units.shape[0]
    for j in range(a):
        side = o_side[j]
        if side == 0.0 or t <= o_dec[j]:
            continue
        fill = order_fill(kind, side, o_level[j], open_[t, j], high[t, j], low[t, j])
        if fill != fill:
            if valid > 0 and t - o_dec[j] >= valid:
                o_side[j] = 0.0
                x_locked[j] = True
                x_value[j] = last_signal[j]
            continue
        o_side[j] = 0.0
        room = np.inf
        if orders[3] == 1.0:
            gross = 0.0
            for k in range(a):
                if k != j:
                    gross += abs(units[k] * close[t - 1, k])
            room = orders[6] - gross / equity
        w = entry_weight(o_w[j], fill, atr[o_dec[j], j], use_atr, orders, room)
        desired = w * equity / fill
        if orders[10] < np.inf:
            desired = participation_cap(0.0, desired, orders[10] * volume[t, j])
        if desired == 0.0 or equity <= 0.0:
            continue
        notional = abs(desired) * fill
        paid = _order_costs(notional, t, fee[j], slip[j], fixed, min_comm, cost_out)
        cash -= desired * fill + paid
        imp = impact_cost(orders[11], desired, volume[t, j], fill)
        cost_out[t, 1] += imp
        cash -= imp
        stats[3] += notional / equity
        units[j] = desired
        entry_bar[j] = t
        entry_fill[j] = fill
        peak[j] = fill
        trade_atr[j] = atr[o_dec[j], j]
        dec_of[j] = o_dec[j]
        type_of[j] = kind
        fresh[j] = True
    return cash


@numba.njit(cache=True, nogil=True)
def _order_costs(
    notional: float, t: int, fee: float, slip: float, fixed: float, min_comm: float,
    cost_out: NDArray[np.float64],
) -> float:  # pragma: no cover - compiled  # fmt: skip
    """Cost of one order of ``notional`` (currency), added to the cost table; returns it."""
    f = max(fee * notional, min_comm)
    s = slip * notional
    cost_out[t, 0] += f
    cost_out[t, 1] += s
    cost_out[t, 2] += fixed
    return f + s + fixed


def volatility_scale(
    close: NDArray[np.float64], lookback: int, periods_per_year: float
) -> NDArray[np.float64]:
    """``1 / sigma`` per bar and asset for ``sizing = volatility`` (0 where undefined).

    ``sigma[t, j]``: the sample standard deviation of ``close[s, j] / close[s - 1, j] - 1``
    for ``s`` in ``t - lookback + 1 .. t``, times ``sqrt(periods_per_year)``; data up to t.
    """
    import pandas as pd

    rets = pd.DataFrame(close).pct_change()
    sigma = rets.rolling(lookback, min_periods=lookback).std().to_numpy() * math.sqrt(
        periods_per_year
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(sigma > 0.0, 1.0 / sigma, 0.0)
    return np.ascontiguousarray(np.nan_to_num(inv, nan=0.0, posinf=0.0))
