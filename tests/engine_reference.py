"""The portfolio engine as a plain per-bar Python loop: the independent reference.

Written from the rules in the README's "Portfolio engine" section and the docstrings of
``backtest/engine/_kernel.py``, ``_limits.py`` and ``_schedule.py`` (not from their code):
Python floats, dicts and lists, one bar at a time. ``reference_backtest`` returns what
``simulate`` returns (returns, the cost table, trades, exposure, turnover) so the tests
can compare the two to 1e-9. Exits (stops) are in ``tests/reference_exits.py``.

Universes and corporate actions (from ``backtest/engine/_universe.py``'s docstring): an
asset is held only while tradable (``Bars.tradable`` and a finite close); on its last
tradable bar a holding is closed at that close (``delisted`` when the close is missing
from the next bar, else ``untradable``), at ``close x (1 + delist_return)`` when the data
gives one; prices are carried forward after delisting. On an ex-date, before any trade:
units x split, cash += units x dividend (sleeves: the bar's total return).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

COSTS = ("fees", "slippage", "fixed", "borrow", "financing", "cash_interest")


@dataclass
class Options:
    """Engine options of the reference (the names of ``engine.*``)."""

    fee_bps: float | list[float] = 0.0  # one per asset: per-asset costs
    slippage_bps: float | list[float] = 0.0
    initial_capital: float = 1.0
    rebalance: str | int = "bar"
    rebalance_threshold: float = 0.0
    execution: str = "close"
    fixed_cost: float = 0.0
    min_commission: float = 0.0
    borrow_rate: float = 0.0
    financing_rate: float = 0.0
    cash_rate: float = 0.0
    max_gross_leverage: float | None = None
    max_weight: float | None = None
    long_only: bool = False
    target_volatility: float | None = None
    vol_lookback: int = 63
    periods_per_year: float = 252.0

    @property
    def sleeves(self) -> bool:
        return (
            self.rebalance == "bar"
            and self.execution == "close"
            and self.rebalance_threshold == 0
            and self.fixed_cost == 0
            and self.min_commission == 0
        )


@dataclass
class Result:
    returns: list[float]
    costs: list[dict[str, float]]
    trades: list[dict[str, Any]] = field(default_factory=list)
    exposure: float = 0.0
    turnover: float = 0.0
    limited: list[bool] = field(default_factory=list)


def schedule(index: pd.DatetimeIndex, rebalance: str | int) -> list[bool]:
    """Rebalance bars: every bar, first bar of each period, or every N bars."""
    out = []
    prev = None
    for t, stamp in enumerate(index):
        if rebalance in ("bar", 1):
            out.append(True)
            continue
        if isinstance(rebalance, int):
            out.append(t % rebalance == 0)
            continue
        d = stamp.to_pydatetime()
        key = {
            "D": (d.year, d.month, d.day),
            "W": tuple(d.isocalendar())[:2],
            "M": (d.year, d.month),
            "Q": (d.year, (d.month - 1) // 3),
        }[rebalance]
        out.append(t == 0 or key != prev)
        prev = key
    return out


def limits(
    target: list[list[float]], close: list[list[float]], o: Options
) -> tuple[list[list[float]], list[bool]]:
    """long_only, max_weight, vol overlay, max_weight again, gross cap; whether a limit bound.

    The limits bind last: the overlay scales the clipped book, then each weight is clipped
    to ``max_weight`` again and the gross cap scales the whole row down.
    """
    n = len(target)
    base: list[list[float]] = []
    out: list[list[float]] = []
    flags: list[bool] = []
    book: list[float] = [0.0] * n
    for t in range(n):
        hit = False
        row = []
        for w in target[t]:
            w = 0.0 if w != w else float(w)
            if o.long_only and w < 0:
                w, hit = 0.0, True
            if o.max_weight is not None and abs(w) > o.max_weight:
                w, hit = math.copysign(o.max_weight, w), True
            row.append(w)
        base.append(row)
        if t > 0:
            book[t] = sum(
                base[t - 1][j] * (close[t][j] / close[t - 1][j] - 1) for j in range(len(row))
            )
        scaled = list(row)
        if o.target_volatility is not None and t >= o.vol_lookback:
            window = book[t - o.vol_lookback + 1 : t + 1]
            sigma = statistics.stdev(window) * math.sqrt(o.periods_per_year)
            if sigma > 0:
                scaled = []
                for w in row:
                    w *= o.target_volatility / sigma
                    if o.max_weight is not None and abs(w) > o.max_weight:
                        w, hit = math.copysign(o.max_weight, w), True
                    scaled.append(w)
        gross = sum(abs(w) for w in scaled)
        if o.max_gross_leverage is not None and gross > o.max_gross_leverage:
            scaled, hit = [w * (o.max_gross_leverage / gross) for w in scaled], True
        out.append(scaled)
        flags.append(hit)
    return out, flags


def _per_asset(bps: float | list[float], a: int) -> list[float]:
    """A cost option as a fraction per asset (a list of bps is one per asset)."""
    values = list(bps) if isinstance(bps, list | tuple) else [float(bps)] * a
    assert len(values) == a
    return [v / 1e4 for v in values]


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


@dataclass
class Universe:
    """Per bar and asset: the price the book is valued and filled at, and the rules."""

    price: list[list[float]]
    hold: list[list[bool]]
    leave: list[list[str]]
    split: list[list[float]]
    dividend: list[list[float]]


def universe(bars: Any) -> Universe:
    """The universe rules of ``bars`` as plain lists (see the module docstring)."""
    raw = bars.close.to_numpy().tolist()
    n, a = len(raw), len(raw[0])

    def field_(name: str, default: Any) -> list[list[Any]]:
        frame = getattr(bars, name, None)
        return [[default] * a for _ in range(n)] if frame is None else frame.to_numpy().tolist()

    member = field_("tradable", True)
    dr = field_("delist_return", float("nan"))
    split = field_("split", 1.0)
    div = field_("dividend", 0.0)
    listed = [[raw[t][j] == raw[t][j] for j in range(a)] for t in range(n)]
    tradable = [[bool(member[t][j]) and listed[t][j] for j in range(a)] for t in range(n)]
    price = [[0.0] * a for _ in range(n)]
    leave = [[""] * a for _ in range(n)]
    for j in range(a):
        first = next((raw[t][j] for t in range(n) if listed[t][j]), 1.0)
        last = first
        for t in range(n):
            if listed[t][j]:
                last = raw[t][j] * (1 + dr[t][j]) if dr[t][j] == dr[t][j] else raw[t][j]
            price[t][j] = last
            if tradable[t][j] and t + 1 < n and not tradable[t + 1][j]:
                leave[t][j] = "untradable" if listed[t + 1][j] else "delisted"
            if t == n - 1 and tradable[t][j] and dr[t][j] == dr[t][j]:
                leave[t][j] = "delisted"
    hold = [[tradable[t][j] and not leave[t][j] for j in range(a)] for t in range(n)]
    return Universe(price, hold, leave, split, div)


def reference_backtest(
    bars: Any, target: np.ndarray, signal: np.ndarray, sleeve: list[float], o: Options
) -> Result:
    """The book of ``target`` weights (``signal``: the strategy's own output) on ``bars``."""
    u = universe(bars)
    close = u.price
    raw_opens = (bars.open if bars.open is not None else bars.close).to_numpy().tolist()
    opens = [[x if x == x else close[t][j] for j, x in enumerate(row)]
             for t, row in enumerate(raw_opens)]  # fmt: skip
    target = np.where(np.array(u.hold), target, 0.0)
    signal = np.where(np.array(u.hold), signal, 0.0)
    vol_close = getattr(o, "vol_close", None) or close
    weights, flags = limits(target.tolist(), vol_close, o)
    rebal = schedule(bars.index, o.rebalance)
    if o.sleeves:
        res = _sleeves(close, weights, sleeve, o, u)
    else:
        res = _units(close, opens, weights, signal.tolist(), rebal, o, u)
    res.limited = flags
    return res


def _sleeves(
    close: list[list[float]],
    weights: list[list[float]],
    sleeve: list[float],
    o: Options,
    u: Universe,
) -> Result:
    """Engine v1: each asset's sleeve is reset to its target every bar."""
    n, a = len(close), len(close[0])
    c_fee, c_slip = _per_asset(o.fee_bps, a), _per_asset(o.slippage_bps, a)
    c = [f + s for f, s in zip(c_fee, c_slip, strict=True)]
    q_prev = [0.0] * a
    growth = [1.0] * a
    entry = [0] * a
    entry_fill = [0.0] * a
    equity = 1.0
    res = Result([], [])
    exposure = turnover = 0.0
    rb, rf, rc = (
        o.borrow_rate / o.periods_per_year,
        o.financing_rate / o.periods_per_year,
        o.cash_rate / o.periods_per_year,
    )
    for t in range(n):
        cost = dict.fromkeys(COSTS, 0.0)
        ret = 0.0
        if t > 0:
            held = [sleeve[j] * q_prev[j] for j in range(a)]
            short = sum(-w for w in held if w < 0)
            gross = sum(abs(w) for w in held)
            net = sum(held)
            cost["borrow"] = equity * rb * short
            cost["financing"] = equity * rf * max(0.0, gross - 1)
            cost["cash_interest"] = equity * rc * max(0.0, 1 - net)
            ret += rc * max(0.0, 1 - net) - rb * short - rf * max(0.0, gross - 1)
        for j in range(a):
            r = 0.0
            if t > 0:  # the total return of the bar: split, then dividend per new share
                k, dv = u.split[t][j], u.dividend[t][j]
                r = k * (close[t][j] + dv) / close[t - 1][j] - 1
                entry_fill[j] /= k
            p = q_prev[j]
            q = weights[t][j] / sleeve[j] if sleeve[j] else 0.0
            g = 1 + p * r
            d = abs(q - p)
            ret += sleeve[j] * (g * (1 - c[j] * d) - 1)
            cost["fees"] += equity * sleeve[j] * c_fee[j] * d * g
            cost["slippage"] += equity * sleeve[j] * c_slip[j] * d * g
            exposure += abs(sleeve[j] * q)
            turnover += sleeve[j] * d
            # trades: runs of one sign; resizes charged to the trade held
            if p != 0:
                growth[j] *= g
            if _sign(q) != _sign(p):
                if p != 0:
                    res.trades.append(
                        dict(asset=j, direction=_sign(p), entry_bar=entry[j], exit_bar=t,
                             entry_fill=entry_fill[j], exit_fill=close[t][j],
                             ret=growth[j] * (1 - c[j] * abs(p)) - 1,
                             reason=u.leave[t][j] or "signal")
                    )  # fmt: skip
                growth[j] = 1 - c[j] * abs(q) if q != 0 else 1.0
                entry[j] = t
                entry_fill[j] = close[t][j]
            elif q != p:
                growth[j] *= 1 - c[j] * d
            q_prev[j] = q
        res.returns.append(ret)
        res.costs.append(cost)
        equity *= 1 + ret
    for j in range(a):
        if q_prev[j] != 0:
            res.trades.append(
                dict(asset=j, direction=_sign(q_prev[j]), entry_bar=entry[j], exit_bar=n - 1,
                     entry_fill=entry_fill[j], exit_fill=close[n - 1][j], ret=growth[j] - 1,
                     reason="end")
            )  # fmt: skip
    res.exposure = exposure / n
    res.turnover = turnover / n * o.periods_per_year
    return res


def _units(
    close: list[list[float]],
    opens: list[list[float]],
    weights: list[list[float]],
    signal: list[list[float]],
    rebal: list[bool],
    o: Options,
    un: Universe,
) -> Result:
    """Cash and units: drift between rebalances, every traded unit charged."""
    n, a = len(close), len(close[0])
    fee, slip = _per_asset(o.fee_bps, a), _per_asset(o.slippage_bps, a)
    ppy = o.periods_per_year
    cash = o.initial_capital
    units = [0.0] * a
    open_trade: list[dict[str, Any] | None] = [None] * a
    equity = o.initial_capital
    res = Result([], [])
    exposure = turnover = 0.0
    pending: tuple[int, list[float]] | None = None

    def close_out(t: int, j: int, price: float, reason: str) -> None:
        tr = open_trade[j]
        assert tr is not None
        x = price / tr["entry_fill"]
        ret = _sign(units[j]) * (x - 1) - (fee[j] + slip[j]) * (1 + x)
        tr.update(exit_bar=t, exit_fill=price, ret=ret, reason=reason)
        res.trades.append(tr)
        open_trade[j] = None

    def trade(
        t: int, dec: int, prices: list[float], want: list[float], cost: dict[str, float]
    ) -> None:
        nonlocal cash, turnover
        value = cash + sum(units[j] * prices[j] for j in range(a))
        for j in range(a):
            u, w = units[j], want[j]
            in_band = abs(u * prices[j] / value - w) <= o.rebalance_threshold
            if o.rebalance_threshold > 0 and _sign(w) == _sign(u) and in_band:
                continue
            new = w * value / prices[j]
            delta = new - u
            if delta == 0:
                continue
            notional = abs(delta) * prices[j]
            f = max(fee[j] * notional, o.min_commission)
            s = slip[j] * notional
            cash -= delta * prices[j] + f + s + o.fixed_cost
            cost["fees"] += f
            cost["slippage"] += s
            cost["fixed"] += o.fixed_cost
            turnover += notional / value
            if u != 0 and _sign(new) != _sign(u):
                tr = open_trade[j]
                assert tr is not None
                x = prices[j] / tr["entry_fill"]
                changed = dec == 0 or _sign(signal[dec][j]) != _sign(signal[dec - 1][j])
                ret = _sign(u) * (x - 1) - (fee[j] + slip[j]) * (1 + x)
                reason = un.leave[dec][j] or ("signal" if changed else "rebalance")
                tr.update(exit_bar=t, exit_fill=prices[j], ret=ret, reason=reason)
                res.trades.append(tr)
                open_trade[j] = None
            if new != 0 and _sign(new) != _sign(u):
                open_trade[j] = dict(
                    asset=j, direction=_sign(new), entry_bar=t, entry_fill=prices[j]
                )
            units[j] = new

    for t in range(n):
        cost = dict.fromkeys(COSTS, 0.0)
        if t > 0:
            vals = [units[j] * close[t - 1][j] for j in range(a)]
            borrow = o.borrow_rate / ppy * sum(-v for v in vals if v < 0)
            financing = o.financing_rate / ppy * max(0.0, sum(abs(v) for v in vals) - equity)
            interest = o.cash_rate / ppy * max(0.0, cash)
            cash += interest - borrow - financing
            cost.update(borrow=borrow, financing=financing, cash_interest=interest)
            for j in range(a):  # ex-date: split the units, then the dividend per new share
                if units[j] != 0:
                    units[j] *= un.split[t][j]
                    cash += units[j] * un.dividend[t][j]
                    tr = open_trade[j]
                    assert tr is not None
                    tr["entry_fill"] /= un.split[t][j]
        if pending is not None:  # next_open: yesterday's decision at today's open
            trade(t, pending[0], opens[t], pending[1], cost)
            pending = None
        if rebal[t]:
            if o.execution == "next_open":
                pending = (t, list(weights[t]))
            else:
                trade(t, t, close[t], weights[t], cost)
        for j in range(a):  # a leaving asset: closed at this close, whatever the schedule
            if un.leave[t][j] and units[j] != 0:
                notional = abs(units[j]) * close[t][j]
                f = max(fee[j] * notional, o.min_commission)
                s = slip[j] * notional
                cash += units[j] * close[t][j] - f - s - o.fixed_cost
                cost["fees"] += f
                cost["slippage"] += s
                cost["fixed"] += o.fixed_cost
                turnover += notional / equity
                close_out(t, j, close[t][j], un.leave[t][j])
                units[j] = 0.0
        value = cash + sum(units[j] * close[t][j] for j in range(a))
        exposure += sum(abs(units[j] * close[t][j]) for j in range(a)) / value
        res.returns.append(value / equity - 1)
        res.costs.append(cost)
        equity = value
    for j in range(a):
        tr = open_trade[j]
        if tr is not None:
            x = close[n - 1][j] / tr["entry_fill"]
            ret = tr["direction"] * (x - 1) - (fee[j] + slip[j]) * (1 + x)
            tr.update(exit_bar=n - 1, exit_fill=close[n - 1][j], ret=ret, reason="end")
            res.trades.append(tr)
    res.exposure = exposure / n
    res.turnover = turnover / n * ppy
    return res
