"""Engine v1's sleeve accounting, and the small per-position helpers the kernels share.

Each asset is a sleeve of capital of weight ``sleeve[j]`` reset to its target at every
close; sleeve j holds ``q = w / sleeve[j]`` of its capital and returns
``(1 + q[t-1] r[t]) (1 - c |q[t] - q[t-1]|) - 1`` (exactly engine v1), plus the exits of
:mod:`backtest.engine._exits` (a stopped sleeve earns ``q (fill / close[t-1] - 1)``, pays
``c |q|`` on its growth and is flat afterwards) and carry on the weights held. Called by
:func:`backtest.engine._kernel.run_book`.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray

from backtest.engine._exits import (
    END,
    MAX_BARS,
    NO_EXIT,
    SIGNAL,
    intrabar_exit,
    reentry_gate,
    time_stop,
    update_peak,
)
from backtest.engine._trades import _trade_step


@numba.njit(cache=True, nogil=True)
def _record(
    trades: NDArray[np.float64], stats: NDArray[np.float64], j: int, direction: float,
    entry_bar: int, exit_bar: int, entry_fill: float, exit_fill: float, ret: float, reason: int,
) -> None:  # pragma: no cover - compiled  # fmt: skip
    k = int(stats[0])
    stats[0] += 1.0
    if ret > 0.0:
        stats[1] += 1.0
    if trades.shape[0] > k:
        trades[k, 0] = j
        trades[k, 1] = direction
        trades[k, 2] = entry_bar
        trades[k, 3] = exit_bar
        trades[k, 4] = entry_fill
        trades[k, 5] = exit_fill
        trades[k, 6] = ret
        trades[k, 7] = reason
        if trades.shape[1] > 9:  # decided at the fill bar, a market order (the units kernel
            trades[k, 8] = entry_bar  # overwrites both for next_open and entry orders)
            trades[k, 9] = 0.0


@numba.njit(cache=True, nogil=True)
def _sign(x: float) -> float:
    return 1.0 if x > 0.0 else (-1.0 if x < 0.0 else 0.0)


@numba.njit(cache=True, nogil=True)
def _gate(
    sig: float, w: float, locked: NDArray[np.bool_], locked_value: NDArray[np.float64], j: int
) -> float:  # pragma: no cover - compiled
    """The target after the re-entry lock of :func:`~backtest.engine._exits.reentry_gate`."""
    if not locked[j]:
        return w
    _, still = reentry_gate(sig, True, locked_value[j])
    locked[j] = still
    return 0.0 if still else w


@numba.njit(cache=True, nogil=True)
def _sleeves(
    open_, high, low, close, target, signal, hold, leave, split, div, sleeve, c, fee, slip,
    borrow_bar, fin_bar, cash_bar, stops, atr, use_atr, max_bars, lock, ret_out, cost_out,
    held_out, trades, stats,
):  # pragma: no cover - compiled  # fmt: skip
    """Sleeve accounting (see the module docstring): engine v1's formula plus exits and carry.

    ``c``, ``fee`` and ``slip`` are per asset ``(a,)``: sleeve j pays ``c[j]``.
    """
    n, a = close.shape
    has_stops = (stops[0] == stops[0]) or (stops[1] == stops[1]) or (stops[2] == stops[2])
    held = np.zeros(a)
    prev_w = np.zeros(a)
    entry_bar = np.zeros(a, np.int64)
    entry_fill = np.zeros(a)
    peak = np.zeros(a)
    trade_atr = np.full(a, np.nan)
    growth = np.ones(a)
    locked = np.zeros(a, np.bool_)
    locked_value = np.zeros(a)
    last_signal = np.zeros(a)
    equity = 1.0
    universe = hold.shape[0] > 0  # (0, 0) rule arrays: a full panel without actions
    actions = False
    for t in range(n if universe else 0):
        for j in range(a):
            if split[t, j] != 1.0 or div[t, j] != 0.0:
                actions = True
    for t in range(n):
        ret = 0.0
        if t > 0:
            short = 0.0
            gross = 0.0
            net = 0.0
            for j in range(a):
                gross += abs(prev_w[j])
                net += prev_w[j]
                if prev_w[j] < 0.0:
                    short -= prev_w[j]
            borrow = borrow_bar * short
            financing = fin_bar * max(0.0, gross - 1.0)
            interest = cash_bar * max(0.0, 1.0 - net)
            ret += interest - borrow - financing
            cost_out[t, 3] = equity * borrow
            cost_out[t, 4] = equity * financing
            cost_out[t, 5] = equity * interest
        for j in range(a):
            s = sleeve[j]
            rt = close[t, j] / close[t - 1, j] - 1.0 if t > 0 else 0.0
            k = 1.0
            dv = 0.0
            if actions and t > 0:  # a total return on the ex-date (split, then dividend)
                k = split[t, j]
                dv = div[t, j]
                rt = k * (close[t, j] + dv) / close[t - 1, j] - 1.0
                entry_fill[j] /= k
                peak[j] /= k
                trade_atr[j] /= k
            p = held[j]
            value = 1.0 + p * rt
            stopped = False
            if p != 0.0 and has_stops and t > entry_bar[j]:
                reason, fill = intrabar_exit(
                    _sign(p), entry_fill[j], peak[j], trade_atr[j], use_atr,
                    stops[0], stops[1], stops[2], open_[t, j], high[t, j], low[t, j],
                )  # fmt: skip
                if reason != NO_EXIT:
                    g = 1.0 + p * (k * (fill + dv) / close[t - 1, j] - 1.0)
                    value = g * (1.0 - c[j] * abs(p))
                    _record(trades, stats, j, _sign(p), entry_bar[j], t, entry_fill[j], fill,
                            growth[j] * value - 1.0, reason)  # fmt: skip
                    cost_out[t, 0] += equity * s * fee[j] * abs(p) * g
                    cost_out[t, 1] += equity * s * slip[j] * abs(p) * g
                    stats[3] += s * abs(p)
                    stopped = True
                    p = 0.0
                    if lock:
                        locked[j] = True
                        locked_value[j] = last_signal[j]
                else:
                    peak[j] = update_peak(_sign(p), peak[j], high[t, j], low[t, j])
            sig = signal[t, j]
            q = _gate(sig, target[t, j] / s if s != 0.0 else 0.0, locked, locked_value, j)
            if universe and not hold[t, j]:
                q = 0.0
            if stopped and not lock:  # stop_reentry=next_bar: this decision is skipped
                q = 0.0
            timed_out = time_stop(p, q, t - entry_bar[j], max_bars)
            if timed_out:
                q = 0.0
                if lock:
                    locked[j] = True
                    locked_value[j] = sig
            last_signal[j] = sig
            d = abs(q - p)
            ret += s * (value * (1.0 - c[j] * d) - 1.0)
            cost_out[t, 0] += equity * s * fee[j] * d * value
            cost_out[t, 1] += equity * s * slip[j] * d * value
            stats[2] += abs(s * q)
            stats[3] += s * d
            if stopped:
                growth[j] = 1.0 - c[j] * abs(q) if q != 0.0 else 1.0
            else:
                growth[j], ended, ended_growth = _trade_step(growth[j], p, q, rt, c[j])
                if ended:
                    why = MAX_BARS if timed_out else SIGNAL
                    if universe and leave[t, j] != 0:
                        why = leave[t, j]
                    _record(trades, stats, j, _sign(p), entry_bar[j], t, entry_fill[j],
                            close[t, j], ended_growth - 1.0, why)  # fmt: skip
            if q != 0.0 and _sign(q) != _sign(p):
                entry_bar[j] = t
                entry_fill[j] = close[t, j]
                peak[j] = close[t, j]
                trade_atr[j] = atr[t, j]
            held[j] = q
            prev_w[j] = s * q
            if held_out.shape[0] == n:
                held_out[t, j] = s * q
        ret_out[t] = ret
        equity *= 1.0 + ret
    for j in range(a):
        if held[j] != 0.0:  # int(END): an int64 as at the other calls (a literal 3 would
            # compile a second _record)
            _record(trades, stats, j, _sign(held[j]), entry_bar[j], n - 1, entry_fill[j],
                    close[n - 1, j], growth[j] - 1.0, int(END))  # fmt: skip
