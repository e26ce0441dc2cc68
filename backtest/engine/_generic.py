"""The generic batched path: positions of many parameter sets -> every metric, compiled.

Any strategy with its own ``batch_positions`` (see :mod:`backtest.strategies`) takes
this path in :func:`backtest.engine.simulate_batch`: the strategy gives an ``(n_bars,
k)`` array of positions per asset. :func:`accumulate` adds each asset but the last's
weighted returns of the ``k`` sets into one ``(k, n_bars)`` matrix (counting trades and
winners, exposure and turnover on the way); :func:`finish` adds the last asset's set
by set into a buffer that stays in the CPU cache and computes every metric from it
with the fused kernels' streaming statistics (:mod:`backtest.engine._fused_stats`):
bit-identical to :mod:`backtest.metrics`. On one asset nothing of shape ``(k,
n_bars)`` is built besides the positions. Blocks of sets run in parallel.

The arithmetic is :func:`backtest.engine.simulate`'s, operation for operation
(``(1 + p[t-1] r[t]) (1 - c |p[t] - p[t-1]|) - 1`` per asset, added with its weight to
a portfolio starting at 0, asset after asset), so the return metrics equal the single
backtest's bit for bit; exposure and turnover are summed in another order and agree to
rounding.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray

from backtest.engine._fused_stats import (
    EXPOSURE,
    N_METRICS,
    N_OUT,
    N_TRADES,
    TURNOVER,
    WIN_RATE,
    _close_drawdown,
    _drawdown_step,
    _finish,
    finish_growth,
)
from backtest.engine._trades import _trade_step

#: Sets per block of the parallel kernels.
BLOCK = 16
#: Doubles per cache line: sets whose positions are copied out of ``pos`` together.
LINE = 8


@numba.njit(cache=True, nogil=True, inline="always")
def _step(
    cur: float, prev: float, rt: float, cost: float, growth: float, trades: float, wins: float
) -> tuple[float, float, float, float]:  # pragma: no cover - compiled
    """One bar of one set: the asset's return, and the trade count / winners / growth."""
    d = abs(cur - prev)
    ret = (1.0 + prev * rt) * (1.0 - cost * d) - 1.0
    if cur != prev or prev != 0.0:
        growth, ended, ended_growth = _trade_step(growth, prev, cur, rt, cost)
        if ended:
            trades += 1.0
            if ended_growth > 1.0:
                wins += 1.0
    return ret, growth, trades, wins


@numba.njit(cache=True, nogil=True, inline="always")
def _copy_line(
    pos: NDArray[np.float64], i: int, hi: int, tmp: NDArray[np.float64]
) -> None:  # pragma: no cover - compiled
    """Copy up to LINE sets' columns from ``i`` on (each cache line of pos read once)."""
    m = min(LINE, hi - i)
    for t in range(pos.shape[0]):
        for q in range(m):
            v = pos[t, i + q]
            tmp[q, t] = 0.0 if v != v else v  # NaN while warming up means flat


@numba.njit(cache=True, nogil=True)
def _block(
    lo: int,
    hi: int,
    pos: NDArray[np.float64],
    r: NDArray[np.float64],
    cost: float,
    weight: float,
    port: NDArray[np.float64],
    counts: NDArray[np.float64],
    last: bool,
    ppy: int,
    out: NDArray[np.float64],
    keep_slot: NDArray[np.int64],
    kept: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled; equal to simulate() in the tests
    """Sets ``lo`` to ``hi`` of one asset, one set at a time.

    Not ``last``: add the asset's weighted returns to ``port[i]``. ``last``: add them to
    ``port[i]`` (a row of zeros when ``port`` has one row: one asset) in a buffer,
    track equity and drawdown on the way, and write the set's metrics to ``out[i]``.
    The running state lives in registers; the sets of a block read the same cache lines
    of ``pos``; the bar loops hold no test of ``last``.
    """
    n = pos.shape[0]
    tmp = np.empty((LINE, n))
    buf = np.empty(n)
    stack = np.empty((64, 3), np.int64)
    values = np.empty((64, 2))
    shared = port.shape[0] == 1 and last
    for i in range(lo, hi):
        s = (i - lo) % LINE
        if s == 0:
            _copy_line(pos, i, hi, tmp)
        col = tmp[s]
        row = port[0] if shared else port[i]
        growth = 1.0
        prev = 0.0
        trades = 0.0
        wins = 0.0
        expo = 0.0
        turn = 0.0
        if not last:
            for t in range(n):
                cur = col[t]
                ret, growth, trades, wins = _step(cur, prev, r[t], cost, growth, trades, wins)
                row[t] += weight * ret
                expo += abs(cur)
                turn += abs(cur - prev)
                prev = cur
        else:
            wealth = 1.0
            ruined = False
            peak = 1.0
            trough = 1.0
            min_ratio = 1.0
            for t in range(n):
                cur = col[t]
                ret, growth, trades, wins = _step(cur, prev, r[t], cost, growth, trades, wins)
                x = row[t] + weight * ret
                buf[t] = x
                expo += abs(cur)
                turn += abs(cur - prev)
                prev = cur
                g = 1.0 + x
                if g <= 0.0:
                    ruined = True
                wealth *= g
                peak, trough, min_ratio = _drawdown_step(wealth, peak, trough, min_ratio)
            min_ratio = _close_drawdown(peak, trough, min_ratio)
            _finish(buf, wealth, ruined, min_ratio, ppy, stack, values, out[i])
        if prev != 0.0:
            trades += 1.0
            if growth > 1.0:
                wins += 1.0
        counts[i, 0] += trades
        counts[i, 1] += wins
        counts[i, 2] += weight * expo
        counts[i, 3] += weight * turn
        if not last:
            continue
        res = out[i]
        total = counts[i, 0]
        res[N_TRADES] = total
        res[WIN_RATE] = counts[i, 1] / total if total > 0 else np.nan
        res[EXPOSURE] = counts[i, 2] / n
        res[TURNOVER] = counts[i, 3] / n * ppy
        slot = keep_slot[i]
        if slot >= 0:
            kept[slot, :] = buf


@numba.njit(cache=True, nogil=True, parallel=True)
def _blocks_parallel(
    pos: NDArray[np.float64],
    r: NDArray[np.float64],
    cost: float,
    weight: float,
    port: NDArray[np.float64],
    counts: NDArray[np.float64],
    last: bool,
    ppy: int,
    out: NDArray[np.float64],
    keep_slot: NDArray[np.int64],
    kept: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    k = pos.shape[1]
    n_blocks = (k + BLOCK - 1) // BLOCK
    for b in numba.prange(n_blocks):
        _block(
            b * BLOCK,
            min(k, (b + 1) * BLOCK),
            pos,
            r,
            cost,
            weight,
            port,
            counts,
            last,
            ppy,
            out,
            keep_slot,
            kept,
        )


_NO_OUT = np.empty((0, N_OUT))
_NO_SLOT = np.empty(0, np.int64)
_NO_KEPT = np.empty((0, 0))


def accumulate(
    pos: NDArray[np.float64],
    r: NDArray[np.float64],
    cost: float,
    weight: float,
    port: NDArray[np.float64],
    counts: NDArray[np.float64],
    *,
    parallel: bool,
) -> None:
    """Add one asset's weighted returns of ``k`` sets to ``port`` in place.

    Args:
        pos: Positions ``(n_bars, k)`` (NaN is flat).
        r: The asset's bar returns ``close[t] / close[t-1] - 1`` (0 first), ``(n_bars,)``.
        cost: Cost per unit of traded notional, as a fraction.
        weight: The asset's portfolio weight.
        port: Portfolio returns ``(k, n_bars)``, added to.
        counts: ``(k, 4)``: trades, winning trades, summed weighted exposure and
            turnover, added to.
        parallel: Run blocks of sets on all of numba's threads.
    """
    args = (pos, r, cost, weight, port, counts, False, 0, _NO_OUT, _NO_SLOT, _NO_KEPT)
    if parallel:
        _blocks_parallel(*args)
    else:
        _block(0, pos.shape[1], *args)


def finish(
    pos: NDArray[np.float64],
    r: NDArray[np.float64],
    cost: float,
    weight: float,
    port: NDArray[np.float64],
    counts: NDArray[np.float64],
    ppy: int,
    keep: NDArray[np.bool_] | None,
    *,
    parallel: bool,
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """Add the last asset and compute every metric of the ``k`` sets.

    Args:
        pos: The last asset's positions ``(n_bars, k)``.
        r: Its bar returns.
        cost: Cost per unit of traded notional, as a fraction.
        weight: Its portfolio weight.
        port: The other assets' summed returns ``(k, n_bars)``; one row of zeros for
            one asset.
        counts: What :func:`accumulate` counted for the other assets (zeros for none).
        ppy: Bars per year.
        keep: Which sets' portfolio returns to return (``None``: none).
        parallel: Run blocks of sets on all of numba's threads.

    Returns:
        ``(metrics (k, 11) in metrics.METRIC_NAMES order, kept returns (n_bars, n_kept)
        or None)``.
    """
    n, k = pos.shape
    out = np.empty((k, N_OUT))
    keep_slot = np.full(k, -1, dtype=np.int64)
    n_keep = 0 if keep is None else int(np.count_nonzero(keep))
    if keep is not None and n_keep:
        keep_slot[np.flatnonzero(keep)] = np.arange(n_keep)
    kept = np.empty((n_keep, n))
    args = (pos, r, cost, weight, port, counts, True, int(ppy), out, keep_slot, kept)
    if parallel:
        _blocks_parallel(*args)
    else:
        _block(0, k, *args)
    finish_growth(out, n, int(ppy))
    return out[:, :N_METRICS], (kept.T if n_keep else None)
