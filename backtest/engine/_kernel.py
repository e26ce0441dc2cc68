"""The per-bar state machine: target weights + bars -> portfolio returns, costs, trades.

One compiled function, :func:`run_book`, holds every rule of the portfolio engine: the
schedule of rebalances, the drift band, the two execution timings, each cost, the exits
of :mod:`backtest.engine._exits`, and the trades. The single backtest calls it once; the
batched path calls it once per parameter set inside a compiled loop (:func:`run_books`).
``tests/engine_reference.py`` is the plain Python loop of the same rules.

Two accountings:

* **sleeves** (``units=False``; the default ``rebalance=bar``, ``execution=close``, no
  band, no per-order costs; :mod:`backtest.engine._sleeves`): capital is split into one
  sleeve per asset of weight
  ``sleeve[j]``, reset to target at every close; sleeve j holds ``q = w / sleeve[j]`` of
  its capital and returns ``(1 + q[t-1] r[t]) (1 - c |q[t] - q[t-1]|) - 1``: engine v1's
  formula, reproduced exactly;
* **units** (everything else): cash and units per asset from ``capital``; holdings drift
  with prices; at a rebalance each asset is traded to ``w * equity / price`` (only when
  its weight left the band, or its sign changes), and every traded unit pays
  ``fee + slippage`` of its asset (with ``min_commission`` on the fee of each order) plus
  ``fixed_cost`` per order.

Real universes (:mod:`backtest.engine._universe`): targets are 0 where an asset may not
be held (``hold``); a holding in an asset leaving the tradable set is closed at the
close of its last tradable bar whatever the schedule and the execution (``leave``: the
exit reason); on an ex-date, after the carry and before any trade, units are multiplied
by the split and ``units x dividend`` is paid in cash (sleeves: the bar's total return).

Carry costs accrue at the start of each bar on what was held over it: borrow on short
notional, financing on gross exposure above equity, interest on positive cash.
Cost table columns (:data:`COST_COLUMNS`) are in currency and positive when paid
(``cash_interest`` is positive when earned).
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray

from backtest.engine._exits import (
    END,
    MAX_BARS,
    NO_EXIT,
    REBALANCE,
    SESSION_END,
    SIGNAL,
    intrabar_exit,
    time_exit,
    update_peak,
)
from backtest.engine._orders import (
    MARKET,
    _fill_orders,
    _mark,
    _order_costs,
    _place_order,
    entry_weight,
    impact_cost,
    participation_cap,
)
from backtest.engine._sessions import flat_decision
from backtest.engine._sleeves import _gate, _record, _sign, _sleeves

COST_COLUMNS = ("fees", "slippage", "fixed", "borrow", "financing", "cash_interest")
#: Trade record fields written by :func:`run_book` (float64 rows).
TRADE_FIELDS = (
    "asset",
    "direction",
    "entry_bar",
    "exit_bar",
    "entry_fill",
    "exit_fill",
    "return",
    "reason",
    "decision_bar",
    "order_type",
)
#: Per-set statistics written by :func:`run_book`.
STAT_FIELDS = ("n_trades", "n_wins", "exposure", "turnover")


@numba.njit(cache=True, nogil=True)
def _units(
    open_, high, low, close, target, signal, hold, leave, split, div, rebal, next_open, threshold,
    capital, fee, slip, fixed, min_comm, borrow_bar, fin_bar, cash_bar, stops, atr, use_atr,
    max_bars, lock, orders, levels, sess_id, sess_end, volume, ret_out, cost_out, held_out, trades,
    stats,
):  # pragma: no cover - compiled  # fmt: skip
    """Cash and units accounting (see the module docstring; entry orders: :mod:`._orders`)."""
    n, a = close.shape
    c = fee + slip
    has_stops = (stops[0] == stops[0]) or (stops[1] == stops[1]) or (stops[2] == stops[2])
    units = np.zeros(a)
    cash = capital
    equity = capital
    entry_bar = np.zeros(a, np.int64)
    entry_fill = np.zeros(a)
    peak = np.zeros(a)
    trade_atr = np.full(a, np.nan)
    locked = np.zeros(a, np.bool_)
    locked_value = np.zeros(a)
    last_signal = np.zeros(a)
    want = np.zeros(a)  # target weights of the latest decision
    force = np.zeros(a, np.bool_)  # a time stop trades off schedule
    why = np.zeros(a, np.int64)  # exit reason of a decision that closes a trade
    pending = False
    dec_bar = 0
    stopped = np.zeros(a, np.bool_)
    kind = int(orders[0])
    has_orders = kind != MARKET
    valid = int(orders[2])
    o_side = np.zeros(a)  # working entry order: side (0: none), level, weight, decision bar
    o_level = np.zeros(a)
    o_w = np.zeros(a)
    o_dec = np.zeros(a, np.int64)
    x_locked = np.zeros(a, np.bool_)  # flat after an expiry until the target changes
    x_value = np.zeros(a)
    dec_of = np.zeros(a, np.int64)  # decision bar and order type of each open trade
    type_of = np.zeros(a, np.int64)
    fresh = np.zeros(a, np.bool_)  # filled by an order in this bar: exits from the next bar
    sessions = orders[8] != 0.0  # flat at each session's end
    by_session = orders[9] != 0.0  # max_bars counts sessions
    carry = borrow_bar != 0.0 or fin_bar != 0.0 or cash_bar != 0.0
    universe = hold.shape[0] > 0  # (0, 0) rule arrays: a full panel without actions
    leave_row, act_row = _rows(leave, split, div, n)
    exits = has_stops or max_bars > 0
    for t in range(n):
        if exits:
            stopped[:] = False
        if t > 0 and carry:  # carry over bar t, on what the previous close left
            short = 0.0
            gross = 0.0
            for j in range(a):
                v = units[j] * close[t - 1, j]
                gross += abs(v)
                if v < 0.0:
                    short -= v
            borrow = borrow_bar * short
            financing = fin_bar * max(0.0, gross - equity)
            interest = cash_bar * max(0.0, cash)
            cash += interest - borrow - financing
            cost_out[t, 3] = borrow
            cost_out[t, 4] = financing
            cost_out[t, 5] = interest
        if act_row[t] and t > 0:  # the ex-date: after the carry over the bar, before trades
            for j in range(a):
                k = split[t, j]
                if k != 1.0 and units[j] != 0.0:
                    units[j] *= k
                    entry_fill[j] /= k
                    peak[j] /= k
                    trade_atr[j] /= k
                if k != 1.0 and o_side[j] != 0.0:  # a working entry order's level too
                    o_level[j] /= k
                cash += units[j] * div[t, j]
        if next_open and pending:
            if not _idle(open_, t, want, force, rebal[dec_bar], units, cash, orders[3] == 1.0):
                cash = _rebalance(open_[t], t, dec_bar, want, force, why, rebal[dec_bar], threshold,
                                  cash, units, entry_bar, entry_fill, peak, trade_atr, atr, fee,
                                  slip, fixed, min_comm, cost_out, trades, stats, orders, use_atr,
                                  dec_of, type_of, volume[t])  # fmt: skip
            pending = False
        if has_orders:
            working = False
            for j in range(a):
                fresh[j] = False
                if o_side[j] != 0.0:
                    if universe and not hold[t, j]:  # no fill where it is not tradable
                        o_side[j] = 0.0
                    else:
                        working = True
            if working:
                cash = _fill_orders(t, kind, valid, o_side, o_level, o_w, o_dec, x_locked,
                                    x_value, last_signal, open_, high, low, close, equity, cash,
                                    units, entry_bar, entry_fill, peak, trade_atr, atr, use_atr,
                                    orders, dec_of, type_of, fresh, fee, slip, fixed, min_comm,
                                    cost_out, stats, volume)  # fmt: skip
        if has_stops:
            for j in range(a):
                u = units[j]
                if u == 0.0 or fresh[j]:
                    continue
                if not (t > entry_bar[j] or (next_open and t == entry_bar[j])):
                    continue
                reason, fill = intrabar_exit(
                    _sign(u), entry_fill[j], peak[j], trade_atr[j], use_atr,
                    stops[0], stops[1], stops[2], open_[t, j], high[t, j], low[t, j],
                )  # fmt: skip
                if reason == NO_EXIT:
                    peak[j] = update_peak(_sign(u), peak[j], high[t, j], low[t, j])
                    continue
                notional = abs(u) * fill
                cash += _order_costs(notional, t, fee[j], slip[j], fixed, min_comm, cost_out) * -1.0
                imp = impact_cost(orders[11], u, volume[t, j], fill)
                cost_out[t, 1] += imp
                cash += u * fill - imp
                stats[3] += notional / equity
                x = fill / entry_fill[j]
                _record(trades, stats, j, _sign(u), entry_bar[j], t, entry_fill[j], fill,
                        _sign(u) * (x - 1.0) - c[j] * (1.0 + x), reason)  # fmt: skip
                _mark(trades, stats, dec_of[j], type_of[j])
                units[j] = 0.0
                stopped[j] = True
                if lock:
                    locked[j] = True
                    locked_value[j] = last_signal[j]
        # ---- the close of bar t: decide (off-schedule decisions matter only with exits)
        any_force = False
        flat = sessions and flat_decision(t, next_open, sess_end)
        for j in range(a):
            if not (rebal[t] or exits or has_orders or flat):
                break
            sig = signal[t, j]
            # (_gate is called only on a locked asset: each compiled call costs about as
            # much as the rest of the bar's work, and an unlocked gate returns its weight)
            w = _gate(sig, target[t, j], locked, locked_value, j) if locked[j] else target[t, j]
            if universe and not hold[t, j]:
                w = 0.0
            if stopped[j] and not lock:  # stop_reentry=next_bar: this decision is skipped
                w = 0.0
            if has_orders:
                w = _gate(sig, w, x_locked, x_value, j) if x_locked[j] else w
            force[j] = False
            why[j] = SIGNAL if (t == 0 or _sign(sig) != _sign(signal[t - 1, j])) else REBALANCE
            if universe and leave[t, j] != 0:
                why[j] = leave[t, j]
            held_sign = _sign(units[j])
            # bars held when the exit fills: at this close, or at the next open (t + 1)
            held = t - entry_bar[j] + (1 if next_open else 0)
            if by_session:
                held = sess_id[min(t + (1 if next_open else 0), n - 1)] - sess_id[entry_bar[j]]
            if held_sign != 0.0 and _sign(w) == held_sign and time_exit(held, max_bars):
                w = 0.0
                force[j] = True
                any_force = True
                why[j] = MAX_BARS
                if lock:
                    locked[j] = True
                    locked_value[j] = sig
            if flat:  # the session ends: close, open nothing, cancel the working orders
                o_side[j] = 0.0
                w = 0.0
                if held_sign != 0.0:
                    force[j] = True
                    any_force = True
                    why[j] = SESSION_END
            elif has_orders and rebal[t] and (o_side[j] != 0.0 or _sign(w) not in (0.0, held_sign)):
                w = _place_order(t, j, w, kind, units[j], o_side, o_level, o_w, o_dec, close,
                                 atr, use_atr, orders[1], levels)  # fmt: skip
            last_signal[j] = sig
            want[j] = w
        if rebal[t] or any_force:
            if next_open:
                pending = True
                dec_bar = t
            elif not _idle(close, t, want, force, rebal[t], units, cash, orders[3] == 1.0):
                cash = _rebalance(close[t], t, t, want, force, why, rebal[t], threshold, cash,
                                  units, entry_bar, entry_fill, peak, trade_atr, atr, fee, slip,
                                  fixed, min_comm, cost_out, trades, stats, orders, use_atr,
                                  dec_of, type_of, volume[t])  # fmt: skip
        if leave_row[t]:  # a leaving asset is closed at this close, whatever the schedule
            for j in range(a):
                u = units[j]
                if leave[t, j] == 0 or u == 0.0:
                    continue
                fill = close[t, j]
                notional = abs(u) * fill
                cash -= _order_costs(notional, t, fee[j], slip[j], fixed, min_comm, cost_out)
                cash += u * fill
                stats[3] += notional / equity
                x = fill / entry_fill[j]
                _record(trades, stats, j, _sign(u), entry_bar[j], t, entry_fill[j], fill,
                        _sign(u) * (x - 1.0) - c[j] * (1.0 + x), leave[t, j])  # fmt: skip
                _mark(trades, stats, dec_of[j], type_of[j])
                units[j] = 0.0
        value = cash
        gross = 0.0
        for j in range(a):
            v = units[j] * close[t, j]
            value += v
            gross += abs(v)
        ret_out[t] = value / equity - 1.0
        if value != 0.0:
            stats[2] += gross / value
        if held_out.shape[0] == n:
            for j in range(a):
                held_out[t, j] = units[j] * close[t, j] / value
        equity = value
    for j in range(a):
        if units[j] != 0.0:
            x = close[n - 1, j] / entry_fill[j]
            ret = _sign(units[j]) * (x - 1.0) - c[j] * (1.0 + x)
            _record(trades, stats, j, _sign(units[j]), entry_bar[j], n - 1, entry_fill[j],
                    close[n - 1, j], ret, END)  # fmt: skip
            _mark(trades, stats, dec_of[j], type_of[j])


@numba.njit(cache=True, nogil=True)
def _rows(
    leave: NDArray[np.int64], split: NDArray[np.float64], div: NDArray[np.float64], n: int
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:  # pragma: no cover - compiled
    """Per bar: whether some holding must be closed (``leave``), whether it is an ex-date."""
    leaving = np.zeros(n, np.bool_)
    ex = np.zeros(n, np.bool_)
    a = leave.shape[1]
    for t in range(leave.shape[0]):
        for j in range(a):
            if leave[t, j] != 0:
                leaving[t] = True
            if split[t, j] != 1.0 or div[t, j] != 0.0:
                ex[t] = True
    return leaving, ex


@numba.njit(cache=True, nogil=True)
def _rebalance(
    price, t, dec, want, force, why, scheduled, threshold, cash, units, entry_bar, entry_fill,
    peak, trade_atr, atr, fee, slip, fixed, min_comm, cost_out, trades, stats, orders, use_atr,
    dec_of, type_of, vol_row,
):  # pragma: no cover - compiled  # fmt: skip
    """Trade each asset towards ``want`` at ``price`` (one row); returns the new cash.

    Every asset is sized from the equity before this rebalance's orders. An asset is
    traded when the rebalance is scheduled (its weight outside the band, or its sign
    changing) or when a time stop forces it; then to exactly its target. With risk
    sizing (:mod:`._orders`) a new position's weight comes from its stop distance, in
    asset order (the gross room is what the assets before it left), and a held position
    is never resized.
    """
    a = units.shape[0]
    c = fee + slip
    value = cash
    for j in range(a):
        value += units[j] * price[j]
    if value <= 0.0:
        return cash
    risk = orders[3] == 1.0
    for j in range(a):
        u = units[j]
        w = want[j]
        if _kept(u, w, scheduled or force[j], risk):
            continue
        in_band = abs(u * price[j] / value - w) <= threshold
        if threshold > 0.0 and not force[j] and _sign(w) == _sign(u) and in_band:
            continue
        if risk and w != 0.0 and _sign(w) != _sign(u):
            gross = 0.0
            for k in range(a):
                if k != j:
                    gross += abs(units[k] * price[k])
            w = entry_weight(w, price[j], atr[dec, j], use_atr, orders, orders[6] - gross / value)
        desired = w * value / price[j]
        if orders[10] < np.inf:  # the participation cap (engine._orders)
            desired = participation_cap(u, desired, orders[10] * vol_row[j])
        delta = desired - u
        if delta == 0.0:
            continue
        notional = abs(delta) * price[j]
        paid = _order_costs(notional, t, fee[j], slip[j], fixed, min_comm, cost_out)
        cash -= delta * price[j] + paid
        imp = impact_cost(orders[11], delta, vol_row[j], price[j])
        cost_out[t, 1] += imp
        cash -= imp
        stats[3] += notional / value
        if u != 0.0 and _sign(desired) != _sign(u):
            x = price[j] / entry_fill[j]
            _record(trades, stats, j, _sign(u), entry_bar[j], t, entry_fill[j], price[j],
                    _sign(u) * (x - 1.0) - c[j] * (1.0 + x), why[j])  # fmt: skip
            _mark(trades, stats, dec_of[j], type_of[j])
        if desired != 0.0 and _sign(desired) != _sign(u):
            dec_of[j] = dec
            type_of[j] = MARKET
            entry_bar[j] = t
            entry_fill[j] = price[j]
            peak[j] = price[j]
            trade_atr[j] = atr[dec, j]
        units[j] = desired
    return cash


@numba.njit(cache=True, nogil=True, inline="always")
def _kept(u: float, w: float, due: bool, risk: bool) -> bool:  # pragma: no cover - compiled
    """Whether :func:`_rebalance` leaves a holding ``u`` as it is, before sizing it.

    Not ``due`` (neither scheduled nor forced), or sized from the risk and held on the
    side of its target ``w`` (a risk-sized position is never resized).
    """
    return not due or (risk and u != 0.0 and _sign(w) == _sign(u))


@numba.njit(cache=True, nogil=True)
def _idle(prices, t, want, force, scheduled, units, cash, risk):  # pragma: no cover  # fmt: skip
    """Whether :func:`_rebalance` at ``prices[t]`` would trade nothing (then it is not called).

    True when the book's value is not positive (it returns at once), or when each asset
    is :func:`_kept`, or flat with a flat target at a finite, non-zero price and a finite
    value (its order, ``0 x value / price``, is 0). Most bars of a trend or entry-order
    strategy are such bars; the call's setup costs more than the bar's other work (and
    a row view of the prices costs a third of this call: the matrix and ``t`` are passed).
    """
    a = units.shape[0]
    price = prices[t]
    value = cash
    for j in range(a):
        value += units[j] * price[j]
    if value <= 0.0:
        return True
    finite = abs(value) < np.inf
    for j in range(a):
        u = units[j]
        w = want[j]
        if _kept(u, w, scheduled or force[j], risk):
            continue
        if u == 0.0 and w == 0.0 and finite and abs(price[j]) < np.inf and price[j] != 0.0:
            continue
        return False
    return True


def _book(
    open_, high, low, close, target, signal, hold, leave, split, div, sleeve, rebal, units_mode,
    next_open, threshold, capital, fee, slip, fixed, min_comm, borrow_bar, fin_bar, cash_bar,
    stops, atr, use_atr, max_bars, lock, orders, levels, sess_id, sess_end, volume, ret_out,
    cost_out, held_out, trades, stats,
):  # equal to tests/engine_reference.py  # fmt: skip
    """Simulate one book; results go into the ``*_out``, ``trades`` and ``stats`` arrays.

    Args:
        open_: Opens, ``(n, a)`` (the closes when unused); likewise ``high``, ``low``.
        high: Highs.
        low: Lows.
        close: Closes.
        target: Target weights decided at each close (after limits and overlays).
        signal: The strategy's own targets (the re-entry lock, signal vs rebalance exits).
        hold: ``(n, a)`` bool: the asset may be held after bar t's close (targets are 0
            where not; :mod:`backtest.engine._universe`). ``hold``, ``leave``, ``split``
            and ``div`` all ``(0, 0)``: a full panel without actions (nothing to check).
        leave: ``(n, a)`` int64: the exit reason of a forced close at bar t's close (0: none).
        split: ``(n, a)`` new shares per old share on the ex-date (1.0 when none).
        div: ``(n, a)`` cash per share going ex on that bar (0.0 when none).
        sleeve: Sleeve weight per asset (sleeve accounting only).
        rebal: ``(n,)`` bool: whether the decision of bar t is traded (the schedule).
        units_mode: Cash and units accounting (else sleeves).
        next_open: Fill decisions at the next bar's open (else at the decision close).
        threshold: Drift band on weights (0: no band).
        capital: Initial capital (units accounting).
        fee: Fee per unit of traded notional (a fraction), per asset ``(a,)``.
        slip: Slippage per unit of traded notional (a fraction), per asset ``(a,)``.
        fixed: Cost per order, in currency.
        min_comm: Minimum fee per order, in currency.
        borrow_bar: Per-bar borrow rate on short notional.
        fin_bar: Per-bar financing rate on gross exposure above equity.
        cash_bar: Per-bar interest rate on positive cash.
        stops: ``[stop_loss, take_profit, trailing_stop]``, NaN when off.
        atr: ATR per bar and asset (used when ``use_atr``).
        use_atr: Stop levels are ATR multiples.
        max_bars: Time stop (0: off).
        lock: After an exit by a stop, stay flat until the signal changes.
        orders: Entry orders and sizing, :data:`~backtest.engine._orders.ORDER_FIELDS`
            (units accounting only).
        levels: The strategy's entry order levels ``(n, a)`` (:mod:`._levels`), or ``(0, 0)``
            for the engine's ``entry_offset`` levels.
        sess_id: Session number of each bar ``(n,)`` (:mod:`._sessions`).
        sess_end: Whether each bar ends its session ``(n,)``.
        volume: Volumes ``(n, a)`` (participation cap and impact; the closes when unused).
        ret_out: Portfolio return per bar, ``(n,)``.
        cost_out: Cost table in currency, ``(n, 6)`` (:data:`COST_COLUMNS`), zeroed.
        held_out: Weights held after each close ``(n, a)``, or ``(0, 0)`` (not kept).
        trades: Trade records ``(m, 10)`` (:data:`TRADE_FIELDS`); beyond ``m`` only counted.
        stats: ``[n_trades, n_wins, exposure sum, turnover sum]``, zeroed.
    """
    if units_mode:
        _units(open_, high, low, close, target, signal, hold, leave, split, div, rebal, next_open,
               threshold, capital, fee, slip, fixed, min_comm, borrow_bar, fin_bar, cash_bar,
               stops, atr, use_atr, max_bars, lock, orders, levels, sess_id, sess_end, volume,
               ret_out, cost_out, held_out, trades,
               stats)  # fmt: skip
    else:
        _sleeves(open_, high, low, close, target, signal, hold, leave, split, div, sleeve,
                 fee + slip, fee, slip, borrow_bar, fin_bar, cash_bar, stops, atr, use_atr,
                 max_bars, lock, ret_out, cost_out, held_out, trades, stats)  # fmt: skip


#: :func:`_book` from Python (:func:`~backtest.engine.simulate`): it calls the one compiled
#: accounting the book uses, so a run compiles ``_units`` or ``_sleeves``, not both (about
#: a third of a cold run's compile time).
run_book = _book
#: The same dispatch compiled, for compiled callers (the batched kernel's set loop).
run_book_compiled = numba.njit(cache=True, nogil=True)(_book)
