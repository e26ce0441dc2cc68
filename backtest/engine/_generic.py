"""The generic batched path: positions of many parameter sets -> every metric, compiled.

Any strategy with its own ``batch_positions`` (see :mod:`backtest.strategies`) takes
this path in :func:`backtest.engine.simulate_batch`: the strategy gives an ``(n_bars,
k)`` array of positions per asset, :func:`accumulate` adds each asset's weighted
returns of the ``k`` sets into one ``(k, n_bars)`` matrix (counting trades and
winners, exposure and turnover on the way) and :func:`finish_metrics` computes the
return metrics of every row with the fused kernels' streaming statistics
(:mod:`backtest.engine._fused_stats`): bit-identical to :mod:`backtest.metrics`, with
no temporary ``(n_bars, k)`` arrays and in parallel over blocks of sets.

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


@numba.njit(cache=True, nogil=True)
def _accumulate_block(
    lo: int,
    hi: int,
    pos: NDArray[np.float64],
    r: NDArray[np.float64],
    cost: float,
    weight: float,
    port: NDArray[np.float64],
    counts: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled; equal to simulate() in the tests
    """Sets ``lo`` to ``hi`` of :func:`accumulate` (one asset), one set at a time.

    The running state lives in registers; a set's returns are written to one
    contiguous row of ``port``; the sets of a block read the same cache lines of ``pos``.
    """
    n = pos.shape[0]
    tmp = np.empty((LINE, n))
    for i in range(lo, hi):
        s = (i - lo) % LINE
        if s == 0:  # copy the next LINE sets' columns: each cache line of pos read once
            m = min(LINE, hi - i)
            for t in range(n):
                for q in range(m):
                    tmp[q, t] = pos[t, i + q]
        col = tmp[s]
        row = port[i]
        growth = 1.0
        prev = 0.0
        trades = 0.0
        wins = 0.0
        expo = 0.0
        turn = 0.0
        for t in range(n):
            cur = col[t]
            if cur != cur:  # NaN while warming up means flat
                cur = 0.0
            rt = r[t]
            d = abs(cur - prev)
            row[t] += weight * ((1.0 + prev * rt) * (1.0 - cost * d) - 1.0)
            expo += abs(cur)
            turn += d
            if cur != prev or prev != 0.0:
                growth, ended, ended_growth = _trade_step(growth, prev, cur, rt, cost)
                if ended:
                    trades += 1.0
                    if ended_growth > 1.0:
                        wins += 1.0
            prev = cur
        if prev != 0.0:
            trades += 1.0
            if growth > 1.0:
                wins += 1.0
        counts[i, 0] += trades
        counts[i, 1] += wins
        counts[i, 2] += weight * expo
        counts[i, 3] += weight * turn


@numba.njit(cache=True, nogil=True, parallel=True)
def _accumulate_parallel(
    pos: NDArray[np.float64],
    r: NDArray[np.float64],
    cost: float,
    weight: float,
    port: NDArray[np.float64],
    counts: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    k = pos.shape[1]
    n_blocks = (k + BLOCK - 1) // BLOCK
    for b in numba.prange(n_blocks):
        _accumulate_block(b * BLOCK, min(k, (b + 1) * BLOCK), pos, r, cost, weight, port, counts)


@numba.njit(cache=True, nogil=True)
def _accumulate_serial(
    pos: NDArray[np.float64],
    r: NDArray[np.float64],
    cost: float,
    weight: float,
    port: NDArray[np.float64],
    counts: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    _accumulate_block(0, pos.shape[1], pos, r, cost, weight, port, counts)


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
    if parallel:
        _accumulate_parallel(pos, r, cost, weight, port, counts)
    else:
        _accumulate_serial(pos, r, cost, weight, port, counts)


@numba.njit(cache=True, nogil=True)
def _metrics_block(
    lo: int,
    hi: int,
    port: NDArray[np.float64],
    counts: NDArray[np.float64],
    ppy: int,
    out: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled; equal to metrics.py in the tests
    n = port.shape[1]
    stack = np.empty((64, 3), np.int64)
    values = np.empty((64, 2))
    for i in range(lo, hi):
        buf = port[i]
        wealth = 1.0
        ruined = False
        peak = 1.0
        trough = 1.0
        min_ratio = 1.0
        for t in range(n):
            g = 1.0 + buf[t]
            if g <= 0.0:
                ruined = True
            wealth *= g
            peak, trough, min_ratio = _drawdown_step(wealth, peak, trough, min_ratio)
        min_ratio = _close_drawdown(peak, trough, min_ratio)
        row = out[i]
        _finish(buf, wealth, ruined, min_ratio, ppy, stack, values, row)
        trades = counts[i, 0]
        row[N_TRADES] = trades
        row[WIN_RATE] = counts[i, 1] / trades if trades > 0 else np.nan
        row[EXPOSURE] = counts[i, 2] / n
        row[TURNOVER] = counts[i, 3] / n * ppy


@numba.njit(cache=True, nogil=True, parallel=True)
def _metrics_parallel(
    port: NDArray[np.float64], counts: NDArray[np.float64], ppy: int, out: NDArray[np.float64]
) -> None:  # pragma: no cover - compiled
    k = port.shape[0]
    n_blocks = (k + BLOCK - 1) // BLOCK
    for b in numba.prange(n_blocks):
        _metrics_block(b * BLOCK, min(k, (b + 1) * BLOCK), port, counts, ppy, out)


@numba.njit(cache=True, nogil=True)
def _metrics_serial(
    port: NDArray[np.float64], counts: NDArray[np.float64], ppy: int, out: NDArray[np.float64]
) -> None:  # pragma: no cover - compiled
    _metrics_block(0, port.shape[0], port, counts, ppy, out)


def finish_metrics(
    port: NDArray[np.float64], counts: NDArray[np.float64], ppy: int, *, parallel: bool
) -> NDArray[np.float64]:
    """Every metric of each row of ``port``, in ``metrics.METRIC_NAMES`` order.

    Args:
        port: Portfolio returns ``(k, n_bars)``.
        counts: What :func:`accumulate` counted, ``(k, 4)``.
        ppy: Bars per year.
        parallel: Run blocks of sets on all of numba's threads.

    Returns:
        ``(k, 11)`` metrics.
    """
    out = np.empty((port.shape[0], N_OUT))
    if parallel:
        _metrics_parallel(port, counts, int(ppy), out)
    else:
        _metrics_serial(port, counts, int(ppy), out)
    finish_growth(out, port.shape[1], int(ppy))
    return out[:, :N_METRICS]
