"""Fused kernels with exits: the SmaCross / Momentum sets of a search with stop levels.

The same one-pass-per-set design as :mod:`backtest.engine._fused_kernels` (signals read
from a shared table, metrics streamed, no ``(n_bars, k)`` matrix), with the per-position
exits of :mod:`backtest.engine._exits` evaluated inside each bar from the opens, highs and
lows. Each set carries its own ``stop_loss``, ``take_profit``, ``trailing_stop`` (NaN:
none) and ``max_bars`` (0: none), so a grid of strategy parameters x stop levels runs in one
call with no Python per set.

Accounting (``execution = close``, ``rebalance = bar``, the sleeve of each asset reset to
its target every bar): ``ret = (1 + p * r) * (1 - c * |p' - p|) - 1`` on a bar without a
stop; on a stop bar the sleeve earns ``p * (fill / close[t-1] - 1)``, pays ``c * |p|`` on
that growth, then ``c * |p'|`` for what it holds after the close (0 while locked flat).
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray

from backtest.engine._exits import NO_EXIT, intrabar_exit, reentry_gate, time_stop, update_peak
from backtest.engine._fused_kernels import _target  # the same position sources
from backtest.engine._fused_stats import path_stats, scratch
from backtest.engine._rows import NO_COUNTS, Counts, add_counts, finish_row
from backtest.engine._trades import count_trade


@numba.njit(cache=True, nogil=True)
def _asset_stops(
    source: int, tab: NDArray[np.float64], data: NDArray[np.float64],  # the signals
    ohlc: NDArray[np.float64], atr: NDArray[np.float64], j: int, w: float,  # the asset
    a: int, b: int, start: int, ls: bool, cost: float,  # the set
    sl: float, tp: float, tsl: float, max_bars: int, use_atr: bool, lock: bool,  # its exits
    buf: NDArray[np.float64],
) -> Counts:  # pragma: no cover - compiled  # fmt: skip
    """One asset's sleeve of one set, added into ``buf`` (weighted); its state in scalars.

    Returns the asset's counts (weighted; see :mod:`backtest.engine._rows`).
    """
    n = buf.shape[0]
    p = 0.0
    g = 1.0
    entry = 0.0
    peak = 0.0
    trade_atr = 0.0
    entry_bar = 0
    locked = False
    locked_value = 0.0
    raw_prev = 0.0
    trades, wins, expo, turn = NO_COUNTS
    prev_close = ohlc[3, j, 0]
    for t in range(n):
        close = ohlc[3, j, t]
        part = 1.0
        stopped = False
        if p != 0.0:
            reason, fill = intrabar_exit(
                p, entry, peak, trade_atr, use_atr, sl, tp, tsl,
                ohlc[0, j, t], ohlc[1, j, t], ohlc[2, j, t],
            )  # fmt: skip
            if reason != NO_EXIT:
                part = 1.0 + p * (fill / prev_close - 1.0)
                g *= part
                g *= 1.0 - cost * abs(p)
                part *= 1.0 - cost * abs(p)
                turn += w * abs(p)
                trades, wins = count_trade(g, trades, wins)
                stopped = True
                if lock:
                    locked = True
                    locked_value = raw_prev
                p = 0.0
            else:
                part = 1.0 + p * (close / prev_close - 1.0)
                g *= part
                peak = update_peak(p, peak, ohlc[1, j, t], ohlc[2, j, t])
        raw = _target(source, tab, data, t, j, a, b, start, ls, 0.0, 0.0, 0.0)
        cur, locked = reentry_gate(raw, locked, locked_value)
        if stopped and not lock:
            cur = 0.0
        if time_stop(p, cur, t - entry_bar, max_bars):
            cur = 0.0
            if lock:
                locked = True
                locked_value = raw
        d = abs(cur - p)
        ret = w * (part * (1.0 - cost * d) - 1.0)
        expo += w * abs(cur)
        turn += w * d
        if cur != p:
            if p != 0.0 and ((cur > 0.0) != (p > 0.0) or (cur < 0.0) != (p < 0.0)):
                g *= 1.0 - cost * abs(p)
                trades, wins = count_trade(g, trades, wins)
                p = 0.0
            if p == 0.0:
                g = 1.0 - cost * abs(cur)
                entry = close
                peak = close
                trade_atr = atr[j, t]
                entry_bar = t
            else:
                g *= 1.0 - cost * d
        p = cur
        raw_prev = raw
        prev_close = close
        buf[t] += ret
    if p != 0.0:  # the trade still open at the end counts
        trades, wins = count_trade(g, trades, wins)
    counts = (trades, wins, expo, turn)
    return counts


@numba.njit(cache=True, nogil=True)
def run_sets(
    lo: int, hi: int,
    source: int, tab: NDArray[np.float64], data: NDArray[np.float64],
    ohlc: NDArray[np.float64], atr: NDArray[np.float64], weights: NDArray[np.float64],
    a: NDArray[np.int64], b: NDArray[np.int64], start: NDArray[np.int64],
    long_short: NDArray[np.bool_], cost: float,
    stops: NDArray[np.float64], use_atr: bool, lock: bool,
    ppy: int, keep_slot: NDArray[np.int64], kept: NDArray[np.float64], out: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled  # fmt: skip
    """Every metric of sets ``lo`` to ``hi`` with exits into ``out``, with their own buffers.

    Args:
        lo: First set.
        hi: One past the last set.
        source: Where signals come from, as ``_fused_kernels.run_sets``.
        tab: Signal table (``TABLE``).
        data: Cumulative sums or closes (the other sources).
        ohlc: ``(4, n_assets, n_bars)``: opens, highs, lows, closes.
        atr: ``(n_assets, n_bars)`` ATR known at each close (NaN when unused).
        weights: Portfolio weight per asset.
        a: Left signal row / fast window / lookback per set.
        b: Right signal row / slow window / skip per set.
        start: First bar with a defined signal, per set.
        long_short: Per set, whether it goes short.
        cost: Cost per unit of traded notional, as a fraction.
        stops: ``(k, 4)``: stop_loss, take_profit, trailing_stop (NaN: none), max_bars (0: none).
        use_atr: Levels are ATR multiples.
        lock: ``stop_reentry = signal_change``.
        ppy: Bars per year.
        keep_slot: Per set, the row of ``kept`` receiving its returns, or -1.
        kept: ``(n_kept, n_bars)`` returns of the kept sets (written).
        out: ``(k, N_OUT)`` as ``_fused_kernels.run_sets`` (rows ``lo`` to ``hi``).
    """
    buf = np.empty(ohlc.shape[2])
    space = scratch()
    for i in range(lo, hi):
        buf[:] = 0.0
        counts = NO_COUNTS
        for j in range(weights.shape[0]):  # sleeves are independent: one asset at a time
            part = _asset_stops(
                source, tab, data, ohlc, atr, j, weights[j], a[i], b[i], start[i],
                long_short[i], cost, stops[i, 0], stops[i, 1], stops[i, 2], int(stops[i, 3]),
                use_atr, lock, buf,
            )  # fmt: skip
            counts = add_counts(counts, part)
        finish_row(buf, path_stats(buf), counts, ppy, space, out[i], kept, keep_slot[i])
