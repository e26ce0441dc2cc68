"""Entry orders, expiry and risk sizing as a plain per-bar Python loop: the independent reference.

Written from the rules in ``backtest/engine/_orders.py``'s docstring (and ``_exits.py``'s for
the stops), not from the kernel's code: Python floats and dicts, one bar at a time. A
cash-and-units book with proportional costs (``cost`` per unit of traded notional), no
carry and no band; orders decided at a scheduled close work from the next bar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tests.reference_exits import Rules, exit_in_bar


@dataclass
class Orders:
    """The order and sizing options of the reference (``engine.*`` names)."""

    entry_order: str = "market"
    entry_offset: float = 0.0
    entry_valid_bars: int | None = None
    sizing: str = "weight"
    risk_per_trade: float = 0.0
    max_weight: float = math.inf
    max_gross: float = math.inf
    flat_at_session_end: bool = False
    max_bars_unit: str = "bars"
    max_participation: float = math.inf
    impact: float = 0.0


def _sign(x: float) -> int:
    return int(x > 0) - int(x < 0)


def level_of(kind: str, side: int, close: float, dist: float) -> float:
    """Limit buy below the close, limit short above; stop buy above, stop short below."""
    if kind == "limit":
        return close - dist if side > 0 else close + dist
    return close + dist if side > 0 else close - dist


def fill_of(kind: str, side: int, level: float, o: float, h: float, low: float) -> float | None:
    """Where a working order fills in a bar (``None``: it does not)."""
    if kind == "limit" and side > 0:  # buy at the level or better (lower)
        if o <= level:
            return o
        return level if low <= level else None
    if kind == "limit":  # sell short at the level or better (higher)
        if o >= level:
            return o
        return level if h >= level else None
    if side > 0:  # stop buy: triggered at the level or above, a gap fills at the open
        if o >= level:
            return o
        return level if h >= level else None
    if o <= level:
        return o
    return level if low <= level else None


def units_with_orders(
    o: np.ndarray,
    h: np.ndarray,
    low: np.ndarray,
    c: np.ndarray,
    weights: np.ndarray,
    signal: np.ndarray,
    rebal: list[bool],
    cost: float | list[float],
    rules: Rules,
    orders: Orders,
    next_open: bool,
    atr: np.ndarray | None = None,
    days: list | None = None,
    volume: np.ndarray | None = None,
    levels: np.ndarray | None = None,
) -> tuple[list[float], list[dict]]:
    """Returns per bar and trades of a book with entry orders, expiry, stops and sizing.

    ``weights`` / ``signal`` are ``(n, a)`` target weights and the strategy's own output;
    ``atr`` ``(n, a)`` when ``rules.use_atr`` (offsets and stop distances in ATR multiples);
    ``days`` the calendar day of each bar (sessions: a session ends where the day changes);
    ``volume`` ``(n, a)`` for the participation cap and the impact; ``cost`` the rate of
    every asset, or one per asset (per-asset fees and slippage); ``levels`` ``(n, a)`` the
    strategy's own entry levels (``entry_price``: the order decided at close t is placed at
    ``levels[t, j]``, NaN places none) instead of the offset from the close.

    Volume: an order that opens or adds to a position trades at most ``max_participation x
    volume`` units of that part (closing is never capped; the rest is dropped); every traded
    unit pays an impact of ``impact x min(units / volume, 1) ** 2`` of its notional.
    """
    n, a = c.shape
    rate = list(cost) if isinstance(cost, list | tuple) else [float(cost)] * a
    cash = equity = 1.0
    units = [0.0] * a
    trade: list[dict | None] = [None] * a
    working: list[dict | None] = [None] * a  # the entry order of each asset
    locked, locked_value = [False] * a, [0.0] * a  # after a stop (signal_change)
    expired, expired_value = [False] * a, [0.0] * a  # after an order's expiry
    last_signal = [0.0] * a
    returns: list[float] = []
    trades: list[dict] = []
    pending: dict | None = None
    kind = orders.entry_order
    days = days if days is not None else [0] * n
    # a session ends at bar t when bar t + 1 is on another day; its number counts the days
    ends = [t + 1 < n and days[t + 1] != days[t] for t in range(n)]
    number = [0] * n
    for t in range(1, n):
        number[t] = number[t - 1] + (days[t] != days[t - 1])
    risk = orders.sizing == "risk"

    def capped(t: int, j: int, u: float, new: float) -> float:
        """The position after the participation cap: closing free, adding at most p x volume."""
        if math.isinf(orders.max_participation):
            return new
        cap = orders.max_participation * float(volume[t, j])  # type: ignore[index]
        if u != 0 and _sign(new) != _sign(u):  # a flip: the close is free, the opening capped
            return _sign(new) * min(abs(new), cap)
        if abs(new) > abs(u):  # adding
            return u + _sign(new - u) * min(abs(new - u), cap)
        return new

    def impact_cost(t: int, j: int, units_traded: float, price: float) -> float:
        if orders.impact == 0 or units_traded == 0:
            return 0.0
        vol = float(volume[t, j])  # type: ignore[index]
        share = 1.0 if vol <= 0 else min(abs(units_traded) / vol, 1.0)
        return orders.impact * share**2 * abs(units_traded) * price

    def atr_at(t: int, j: int) -> float:
        return float(atr[t, j]) if atr is not None else math.nan

    def dist(t: int, j: int, level: float, price: float) -> float:
        return level * atr_at(t, j) if rules.use_atr else level * price

    def risk_weight(side: int, price: float, dec: int, j: int, room: float) -> float:
        d = dist(dec, j, rules.stop_loss, price)  # type: ignore[arg-type]
        if not d > 0:
            return 0.0
        size = min(orders.risk_per_trade * price / d, orders.max_weight, max(room, 0.0))
        return side * size

    def close_trade(j: int, t: int, price: float, reason: str) -> None:
        tr = trade[j]
        assert tr is not None
        x = price / tr["entry_price"]
        tr.update(exit_bar=t, exit_price=float(price), reason=reason)
        tr["return"] = tr["direction"] * (x - 1) - rate[j] * (1 + x)
        trades.append(tr)
        trade[j] = None

    def open_trade(j: int, t: int, dec: int, price: float, side: int, how: str) -> None:
        trade[j] = {"asset": j, "direction": side, "entry_bar": t, "decision_bar": dec,
                    "order_type": how, "entry_price": float(price), "peak": float(price),
                    "atr": atr_at(dec, j)}  # fmt: skip

    def execute(t: int, prices: np.ndarray, order: dict) -> None:
        nonlocal cash
        value = cash + sum(units[j] * prices[j] for j in range(a))
        for j in range(a):
            if not (order["scheduled"] or order["force"][j]):
                continue
            u, w = units[j], order["want"][j]
            if risk and u != 0 and _sign(w) == _sign(u):
                continue  # a risk-sized trade keeps its size
            if risk and w != 0 and _sign(w) != _sign(u):
                others = sum(abs(units[k] * prices[k]) for k in range(a) if k != j) / value
                w = risk_weight(_sign(w), prices[j], order["dec"], j, orders.max_gross - others)
            new = capped(t, j, u, w * value / prices[j])
            if new == u:
                continue
            cash -= (new - u) * prices[j] + rate[j] * abs(new - u) * prices[j]
            cash -= impact_cost(t, j, new - u, prices[j])
            if u != 0 and _sign(new) != _sign(u):
                close_trade(j, t, prices[j], order["why"][j])
            if new != 0 and _sign(new) != _sign(u):
                open_trade(j, t, order["dec"], prices[j], _sign(new), "market")
            units[j] = new

    for t in range(n):
        if pending is not None:
            execute(t, o[t], pending)
            pending = None
        just_filled = [False] * a
        for j in range(a):  # working entry orders
            wo = working[j]
            if wo is None or t <= wo["dec"]:
                continue
            fill = fill_of(kind, wo["side"], wo["level"], o[t, j], h[t, j], low[t, j])
            if fill is None:
                valid = orders.entry_valid_bars
                if valid is not None and t - wo["dec"] >= valid:
                    working[j] = None
                    expired[j], expired_value[j] = True, last_signal[j]
                continue
            working[j] = None
            w = wo["w"]
            if risk:
                others = sum(abs(units[k] * c[t - 1, k]) for k in range(a) if k != j) / equity
                w = risk_weight(wo["side"], fill, wo["dec"], j, orders.max_gross - others)
            new = capped(t, j, 0.0, w * equity / fill)
            if new == 0:
                continue
            cash -= new * fill + rate[j] * abs(new) * fill + impact_cost(t, j, new, fill)
            units[j] = new
            open_trade(j, t, wo["dec"], fill, wo["side"], kind)
            just_filled[j] = True
        stopped = [False] * a
        for j in range(a):
            tr = trade[j]
            if tr is None or just_filled[j] or not (t > tr["entry_bar"] or next_open):
                continue
            hit = exit_in_bar(tr["direction"], tr["entry_price"], tr["peak"], tr["atr"], rules,
                              o[t, j], h[t, j], low[t, j])  # fmt: skip
            if hit is None:
                tr["peak"] = (
                    max(tr["peak"], h[t, j]) if tr["direction"] > 0 else min(tr["peak"], low[t, j])
                )
                continue
            reason, fill = hit
            cash += units[j] * fill - rate[j] * abs(units[j]) * fill
            cash -= impact_cost(t, j, units[j], fill)
            close_trade(j, t, fill, reason)
            units[j] = 0.0
            stopped[j] = True
            if rules.lock:
                locked[j], locked_value[j] = True, last_signal[j]
        want, force, why = [0.0] * a, [False] * a, [""] * a
        for j in range(a):
            sig = float(signal[t, j])
            w = float(weights[t, j])
            if locked[j]:
                if sig == locked_value[j]:
                    w = 0.0
                else:
                    locked[j] = False
            if stopped[j] and not rules.lock:
                w = 0.0
            if expired[j]:
                if sig == expired_value[j]:
                    w = 0.0
                else:
                    expired[j] = False
            changed = t == 0 or _sign(sig) != _sign(signal[t - 1, j])
            why[j] = "signal" if changed else "rebalance"
            tr = trade[j]
            held = t - tr["entry_bar"] + (1 if next_open else 0) if tr is not None else -1
            if tr is not None and orders.max_bars_unit == "sessions":
                at = min(t + 1, n - 1) if next_open else t
                held = number[at] - number[tr["entry_bar"]]
            if (
                tr is not None
                and rules.max_bars > 0
                and _sign(w) == tr["direction"]
                and held >= rules.max_bars
            ):
                w, force[j], why[j] = 0.0, True, "max_bars"
                if rules.lock:
                    locked[j], locked_value[j] = True, sig
            # next_open: flatten at the close before the session's last bar (filled at its
            # open); close: at the session's last close
            flat = orders.flat_at_session_end and (
                (t + 1 < n and ends[t + 1]) if next_open else ends[t]
            )
            if flat:
                working[j] = None
                w = 0.0
                if units[j] != 0:
                    force[j], why[j] = True, "session_end"
            elif kind != "market" and rebal[t]:
                side = _sign(w)
                wo = working[j]
                if wo is not None and wo["side"] != side:
                    working[j] = wo = None  # the target left the order's side: cancelled
                if side != 0 and side != _sign(units[j]):
                    if wo is None:
                        lvl = (
                            float(levels[t, j]) if levels is not None
                            else level_of(kind, side, float(c[t, j]),
                                          dist(t, j, orders.entry_offset, float(c[t, j])))
                        )  # fmt: skip
                        if not math.isnan(lvl) and lvl > 0:
                            working[j] = {"side": side, "level": lvl, "w": w, "dec": t}
                    w = 0.0  # nothing opens at market; a position on the other side closes
            last_signal[j] = sig
            want[j] = w
        if rebal[t] or any(force):
            order = {"want": want, "force": force, "why": why, "scheduled": rebal[t], "dec": t}
            if next_open:
                pending = order
            else:
                execute(t, c[t], order)
        value = cash + sum(units[j] * c[t, j] for j in range(a))
        returns.append(value / equity - 1.0)
        equity = value
    for j in range(a):
        if trade[j] is not None:
            close_trade(j, n - 1, float(c[n - 1, j]), "end")
    return returns, trades
