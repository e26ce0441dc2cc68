"""The stop rules as a plain per-bar Python loop: the independent reference for the kernels.

Written from the rules in ``backtest/engine/_exits.py``'s docstring, not from its code:
levels are computed explicitly for each side, every price is a Python float.
The sleeve loop (:func:`sleeve_with_stops`) is the default ``rebalance = bar`` accounting
with exits: each asset's sleeve is reset to its target every bar, a stopped sleeve earns
``p * (fill / close[t-1] - 1)`` on the stop bar, pays ``c * |p|`` on its growth and is flat
afterwards. ``tests/engine_reference.py`` (the portfolio loop) uses :func:`exit_in_bar`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Rules:
    """Exit rules for the reference loop (``None`` = disabled)."""

    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None
    use_atr: bool = False
    max_bars: int = 0
    lock: bool = True


def exit_in_bar(
    side: int,
    entry: float,
    peak: float,
    atr: float,
    rules: Rules,
    o: float,
    h: float,
    low: float,
) -> tuple[str, float] | None:
    """``(reason, fill)`` when the position is stopped out inside the bar, else ``None``."""

    def dist(level: float, ref: float) -> float:
        return level * atr if rules.use_atr else level * ref

    if rules.use_atr and (atr is None or math.isnan(atr)):
        return None
    candidates = []  # (level, reason)
    if side > 0:
        if rules.stop_loss is not None:
            candidates.append((entry - dist(rules.stop_loss, entry), "stop_loss"))
        if rules.trailing_stop is not None:
            candidates.append((peak - dist(rules.trailing_stop, peak), "trailing_stop"))
        if candidates:
            # nearer = higher for a long; a tie goes to stop_loss (listed first, max is stable)
            level, reason = max(candidates, key=lambda c: c[0])
            if low <= level:
                return reason, (o if o <= level else level)
        if rules.take_profit is not None:
            level = entry + dist(rules.take_profit, entry)
            if h >= level:
                return "take_profit", (o if o >= level else level)
        return None
    if rules.stop_loss is not None:
        candidates.append((entry + dist(rules.stop_loss, entry), "stop_loss"))
    if rules.trailing_stop is not None:
        candidates.append((peak + dist(rules.trailing_stop, peak), "trailing_stop"))
    if candidates:
        level, reason = min(candidates, key=lambda c: c[0])
        if h >= level:
            return reason, (o if o >= level else level)
    if rules.take_profit is not None:
        level = entry - dist(rules.take_profit, entry)
        if low <= level:
            return "take_profit", (o if o <= level else level)
    return None


def atr_reference(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, lookback: int
) -> np.ndarray:
    """Mean true range over ``lookback`` bars, a plain loop."""
    n = len(close)
    tr = []
    for t in range(n):
        parts = [high[t] - low[t]]
        if t > 0:
            parts += [abs(high[t] - close[t - 1]), abs(low[t] - close[t - 1])]
        tr.append(max(parts))
    out = np.full(n, np.nan)
    for t in range(lookback - 1, n):
        out[t] = sum(tr[t - lookback + 1 : t + 1]) / lookback
    return out


@dataclass
class Trade:
    """One trade of the reference loop."""

    direction: int
    entry_bar: int
    entry_price: float
    exit_bar: int = -1
    exit_price: float = math.nan
    reason: str = ""
    growth: float = 1.0


@dataclass
class SleeveResult:
    """Per-bar sleeve returns, end-of-bar positions and the trades of one asset."""

    returns: list[float] = field(default_factory=list)
    positions: list[float] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    turnover: float = 0.0


def sleeve_with_stops(
    target: np.ndarray,
    o: np.ndarray,
    h: np.ndarray,
    low: np.ndarray,
    c: np.ndarray,
    cost: float,
    rules: Rules,
    atr: np.ndarray | None = None,
) -> SleeveResult:
    """One asset, ``execution = close``, ``rebalance = bar``, with exits (see module doc)."""
    n = len(c)
    out = SleeveResult()
    pos = 0.0  # held over the coming bar
    prev_target = 0.0
    locked = False
    locked_value = 0.0
    trade: Trade | None = None
    peak = math.nan
    trade_atr = math.nan
    for t in range(n):
        growth = 1.0
        stopped_now = False
        if pos != 0.0 and trade is not None:
            hit = exit_in_bar(
                int(np.sign(pos)), trade.entry_price, peak, trade_atr, rules, o[t], h[t], low[t]
            )
            if hit is not None:
                reason, fill = hit
                part = 1.0 + pos * (fill / c[t - 1] - 1.0)
                trade.growth *= part
                trade.growth *= 1.0 - cost * abs(pos)
                growth = part * (1.0 - cost * abs(pos))
                out.turnover += abs(pos)
                trade.exit_bar, trade.exit_price, trade.reason = t, fill, reason
                out.trades.append(trade)
                trade = None
                pos = 0.0
                stopped_now = True
                if rules.lock:
                    locked, locked_value = True, prev_target
            else:
                part = 1.0 + pos * (c[t] / c[t - 1] - 1.0)
                trade.growth *= part
                growth = part
                peak = max(peak, h[t]) if pos > 0 else min(peak, low[t])
        raw = float(target[t])
        want = raw
        if locked:
            if raw == locked_value:
                want = 0.0
            else:
                locked = False
        if trade is None and pos == 0.0 and stopped_now and not rules.lock:
            want = 0.0  # next_bar: re-entry from the next bar's decision on
        reason = "signal"
        if (
            trade is not None
            and rules.max_bars > 0
            and t - trade.entry_bar >= rules.max_bars
            and np.sign(want) == np.sign(pos)
        ):
            want = 0.0
            reason = "max_bars"
            if rules.lock:
                locked, locked_value = True, raw
        d = abs(want - pos)
        growth *= 1.0 - cost * d
        out.turnover += d
        if trade is not None and np.sign(want) != np.sign(pos):
            trade.growth *= 1.0 - cost * abs(pos)
            trade.exit_bar, trade.exit_price, trade.reason = t, c[t], reason
            out.trades.append(trade)
            trade = None
        elif trade is not None and want != pos:
            trade.growth *= 1.0 - cost * d
        if want != 0.0 and trade is None:
            trade = Trade(int(np.sign(want)), t, float(c[t]), growth=1.0 - cost * abs(want))
            peak = float(c[t])
            trade_atr = float(atr[t]) if atr is not None else math.nan
        pos = want
        prev_target = raw
        out.returns.append(growth - 1.0)
        out.positions.append(pos)
    if trade is not None:
        trade.exit_bar, trade.exit_price, trade.reason = n - 1, c[n - 1], "end"
        out.trades.append(trade)
    return out


# ---------------------------------------------------------------- cash and units with exits


def units_with_stops(
    o: np.ndarray,
    h: np.ndarray,
    low: np.ndarray,
    c: np.ndarray,
    weights: np.ndarray,
    signal: np.ndarray,
    rebal: list[bool],
    cost: float,
    rules: Rules,
    next_open: bool,
) -> tuple[list[float], list[dict]]:
    """Cash/units book (proportional costs, no carry, no band) with exits: returns, trades.

    ``weights``/``signal`` are ``(n, a)``: the target weights and the strategy's own output
    (the re-entry lock compares signals). Orders decided at the close of t fill at that
    close, or at the open of t+1 with ``next_open``; a stop fills inside the bar; a time
    stop trades off schedule. A trade's return is ``side * (x - 1) - cost * (1 + x)`` with
    ``x = exit / entry``.
    """
    n, a = c.shape
    cash, equity = 1.0, 1.0
    units = [0.0] * a
    trade: list[dict | None] = [None] * a
    locked = [False] * a
    locked_value = [0.0] * a
    last_signal = [0.0] * a
    returns: list[float] = []
    trades: list[dict] = []
    pending: dict | None = None

    def execute(t: int, prices: np.ndarray, order: dict) -> None:
        nonlocal cash
        value = cash + sum(units[j] * prices[j] for j in range(a))
        for j in range(a):
            if not (order["scheduled"] or order["force"][j]):
                continue
            u, w = units[j], order["want"][j]
            new = w * value / prices[j]
            if new == u:
                continue
            cash -= (new - u) * prices[j] + cost * abs(new - u) * prices[j]
            tr = trade[j]
            if u != 0 and np.sign(new) != np.sign(u):
                assert tr is not None
                x = prices[j] / tr["entry_price"]
                tr.update(exit_bar=t, exit_price=prices[j], reason=order["why"][j])
                tr["return"] = tr["direction"] * (x - 1) - cost * (1 + x)
                trades.append(tr)
                trade[j] = None
            if new != 0 and np.sign(new) != np.sign(u):
                trade[j] = {"asset": j, "direction": int(np.sign(new)), "entry_bar": t,
                            "entry_price": float(prices[j]), "peak": float(prices[j])}  # fmt: skip
            units[j] = new

    for t in range(n):
        if pending is not None:
            execute(t, o[t], pending)
            pending = None
        stopped = [False] * a
        for j in range(a):
            tr = trade[j]
            if tr is None or not (t > tr["entry_bar"] or next_open):
                continue
            hit = exit_in_bar(tr["direction"], tr["entry_price"], tr["peak"], math.nan, rules,
                              o[t, j], h[t, j], low[t, j])  # fmt: skip
            if hit is None:
                tr["peak"] = (
                    max(tr["peak"], h[t, j]) if tr["direction"] > 0 else min(tr["peak"], low[t, j])
                )
                continue
            reason, fill = hit
            cash += units[j] * fill - cost * abs(units[j]) * fill
            x = fill / tr["entry_price"]
            tr.update(exit_bar=t, exit_price=fill, reason=reason)
            tr["return"] = tr["direction"] * (x - 1) - cost * (1 + x)
            trades.append(tr)
            trade[j] = None
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
            changed = t == 0 or np.sign(sig) != np.sign(signal[t - 1, j])
            why[j] = "signal" if changed else "rebalance"
            tr = trade[j]
            held = t - tr["entry_bar"] + (1 if next_open else 0) if tr is not None else -1
            if (
                tr is not None
                and rules.max_bars > 0
                and np.sign(w) == tr["direction"]
                and held >= rules.max_bars
            ):
                w, force[j], why[j] = 0.0, True, "max_bars"
                if rules.lock:
                    locked[j], locked_value[j] = True, sig
            last_signal[j] = sig
            want[j] = w
        if rebal[t] or any(force):
            order = {"want": want, "force": force, "why": why, "scheduled": rebal[t]}
            if next_open:
                pending = order
            else:
                execute(t, c[t], order)
        value = cash + sum(units[j] * c[t, j] for j in range(a))
        returns.append(value / equity - 1.0)
        equity = value
    for j in range(a):
        tr = trade[j]
        if tr is not None:
            x = c[n - 1, j] / tr["entry_price"]
            tr.update(exit_bar=n - 1, exit_price=float(c[n - 1, j]), reason="end")
            tr["return"] = tr["direction"] * (x - 1) - cost * (1 + x)
            trades.append(tr)
    return returns, trades
