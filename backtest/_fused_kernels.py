"""Fused compiled kernels behind :func:`backtest.engine.simulate_batch` (via ``_fused``).

One pass over the bars per parameter set computes the target positions, the cost of
every change of position, each asset's return, the portfolio's return and equity,
its drawdown, the trade count and winners, exposure and turnover; the remaining
return metrics come from a buffer of ``n_bars`` returns that stays in the CPU cache.
Nothing of shape ``(n_bars, k)`` is built unless the caller keeps the return series.
Parameter sets run in parallel (``numba.prange``), one buffer per group of sets.

The arithmetic is :func:`backtest.engine.simulate`'s, operation for operation: the
moving averages come from the same cumulative sums, the momentum signal from the same
division, sums use numpy's own pairwise summation and products are sequential, so the
return metrics are bit-identical to the single backtest (exposure and turnover are
summed in another order and agree to rounding).

Position sources (``source`` argument):

* :data:`TABLE`: a table of signals per distinct window, ``(n_rows, n_bars,
  n_assets)``; a set is long while row ``a`` is above row ``b`` (SMA: the fast and slow
  averages; momentum: the trailing return and a row of zeros), short while below
  when it is long-short. Used while the table fits in memory.
* :data:`SMA_CUMSUM` / :data:`MOMENTUM_CLOSE`: the same signals recomputed on the fly
  from cumulative sums or closes, when a table would be too large.

Any other strategy goes through ``batch_positions``, :func:`accumulate_positions` and
:func:`return_metrics`.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numpy.typing import NDArray

#: Metric columns of the kernels' output, in the order of ``metrics.METRIC_NAMES``.
TOTAL_RETURN, CAGR, VOLATILITY, SHARPE, SORTINO, MAX_DRAWDOWN, CALMAR = range(7)
N_TRADES, WIN_RATE, EXPOSURE, TURNOVER = range(7, 11)
#: Extra output columns: final wealth and whether it was ever wiped out; CAGR and Calmar
#: are finished from them in numpy by :func:`finish_growth` (numpy's ``**`` may use
#: vectorised math that differs from the C library's ``pow`` in the last bit).
WEALTH, RUINED = 11, 12
N_METRICS = 11
N_OUT = 13

#: Position sources of :func:`fused_backtests`.
TABLE = 0
SMA_CUMSUM = 1
MOMENTUM_CLOSE = 2

_STD_RTOL = 1e-12  # metrics.py: a smaller std relative to the mean is a constant series
_BLOCK = 128  # numpy's pairwise-summation leaf size
_PLAIN, _SQDEV = 0, 2  # what the pairwise sums add up (see pairwise_sums)


@numba.njit(cache=True, nogil=True, inline="always")
def _downside(x: float) -> float:  # pragma: no cover - compiled
    """``np.minimum(x, 0.0) ** 2`` (NaN propagates as in np.minimum)."""
    y = x if (x < 0.0 or x != x) else 0.0
    return y * y


@numba.njit(cache=True, nogil=True)
def _leaf_plain_down(
    a: NDArray[np.float64], lo: int, n: int
) -> tuple[float, float]:  # pragma: no cover - compiled
    """The pairwise-summation leaf over ``x`` and ``min(x, 0) ** 2`` at once.

    As numpy: at most 128 terms, eight running sums.
    """
    if n < 8:
        res = 0.0
        dres = 0.0
        for i in range(lo, lo + n):
            res += a[i]
            dres += _downside(a[i])
        return res, dres
    r0 = a[lo]
    r1 = a[lo + 1]
    r2 = a[lo + 2]
    r3 = a[lo + 3]
    r4 = a[lo + 4]
    r5 = a[lo + 5]
    r6 = a[lo + 6]
    r7 = a[lo + 7]
    d0 = _downside(r0)
    d1 = _downside(r1)
    d2 = _downside(r2)
    d3 = _downside(r3)
    d4 = _downside(r4)
    d5 = _downside(r5)
    d6 = _downside(r6)
    d7 = _downside(r7)
    end = lo + n - n % 8
    j = lo + 8
    while j < end:
        x0 = a[j]
        x1 = a[j + 1]
        x2 = a[j + 2]
        x3 = a[j + 3]
        x4 = a[j + 4]
        x5 = a[j + 5]
        x6 = a[j + 6]
        x7 = a[j + 7]
        r0 += x0
        r1 += x1
        r2 += x2
        r3 += x3
        r4 += x4
        r5 += x5
        r6 += x6
        r7 += x7
        d0 += _downside(x0)
        d1 += _downside(x1)
        d2 += _downside(x2)
        d3 += _downside(x3)
        d4 += _downside(x4)
        d5 += _downside(x5)
        d6 += _downside(x6)
        d7 += _downside(x7)
        j += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    dres = ((d0 + d1) + (d2 + d3)) + ((d4 + d5) + (d6 + d7))
    while j < lo + n:
        res += a[j]
        dres += _downside(a[j])
        j += 1
    return res, dres


@numba.njit(cache=True, nogil=True)
def _leaf_sqdev(a: NDArray[np.float64], lo: int, n: int, mean: float) -> float:  # pragma: no cover
    """The leaf over ``(x - mean) ** 2``."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            x = (((a[i]) - mean) * ((a[i]) - mean))
            res += x
        return res
    r0 = (((a[lo]) - mean) * ((a[lo]) - mean))
    r1 = (((a[lo + 1]) - mean) * ((a[lo + 1]) - mean))
    r2 = (((a[lo + 2]) - mean) * ((a[lo + 2]) - mean))
    r3 = (((a[lo + 3]) - mean) * ((a[lo + 3]) - mean))
    r4 = (((a[lo + 4]) - mean) * ((a[lo + 4]) - mean))
    r5 = (((a[lo + 5]) - mean) * ((a[lo + 5]) - mean))
    r6 = (((a[lo + 6]) - mean) * ((a[lo + 6]) - mean))
    r7 = (((a[lo + 7]) - mean) * ((a[lo + 7]) - mean))
    end = lo + n - n % 8
    j = lo + 8
    while j < end:
        r0 += (((a[j]) - mean) * ((a[j]) - mean))
        r1 += (((a[j + 1]) - mean) * ((a[j + 1]) - mean))
        r2 += (((a[j + 2]) - mean) * ((a[j + 2]) - mean))
        r3 += (((a[j + 3]) - mean) * ((a[j + 3]) - mean))
        r4 += (((a[j + 4]) - mean) * ((a[j + 4]) - mean))
        r5 += (((a[j + 5]) - mean) * ((a[j + 5]) - mean))
        r6 += (((a[j + 6]) - mean) * ((a[j + 6]) - mean))
        r7 += (((a[j + 7]) - mean) * ((a[j + 7]) - mean))
        j += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while j < lo + n:
        res += (((a[j]) - mean) * ((a[j]) - mean))
        j += 1
    return res


@numba.njit(cache=True, nogil=True, inline="always")
def _leaf_sum(
    a: NDArray[np.float64], lo: int, n: int, mode: int, mean: float
) -> tuple[float, float]:  # pragma: no cover - compiled
    if mode == _PLAIN:
        return _leaf_plain_down(a, lo, n)
    return _leaf_sqdev(a, lo, n, mean), 0.0


@numba.njit(cache=True, nogil=True)
def pairwise_sums(
    a: NDArray[np.float64], mode: int, mean: float, stack: NDArray[np.int64],
    values: NDArray[np.float64],
) -> tuple[float, float]:  # pragma: no cover - compiled; equal to np.sum in the tests
    """``np.sum`` of transforms of ``a`` with numpy's pairwise algorithm, bit for bit.

    numpy splits a run longer than 128 terms into two parts (the first a multiple of 8
    long, about half) and adds their sums. The recursion is unrolled on the scratch
    arrays ``stack`` (``(64, 3)`` ints) and ``values`` (``(64, 2)`` floats), so nothing
    is allocated per call (and numba cannot cache recursive functions).

    Args:
        a: The values.
        mode: ``0``: the sums of ``a`` and of ``min(a, 0) ** 2``; ``2``: the sum of
            ``(a - mean) ** 2`` (and 0).
        mean: The mean subtracted in mode 2.
        stack: Scratch space.
        values: Scratch space.
    """
    n = a.shape[0]
    if n <= _BLOCK:
        x, y = _leaf_sum(a, 0, n, mode, mean)
        return 0.0 + x, 0.0 + y
    depth = 0
    n_values = 0
    stack[0, 0] = 0
    stack[0, 1] = n
    stack[0, 2] = 0
    while depth >= 0:
        lo = stack[depth, 0]
        m = stack[depth, 1]
        if m <= _BLOCK:
            x, y = _leaf_sum(a, lo, m, mode, mean)
            values[n_values, 0] = x
            values[n_values, 1] = y
            n_values += 1
            depth -= 1
            continue
        state = stack[depth, 2]
        if state == 2:
            values[n_values - 2, 0] = values[n_values - 2, 0] + values[n_values - 1, 0]
            values[n_values - 2, 1] = values[n_values - 2, 1] + values[n_values - 1, 1]
            n_values -= 1
            depth -= 1
            continue
        half = m // 2
        half -= half % 8
        stack[depth, 2] = state + 1
        depth += 1
        stack[depth, 2] = 0
        if state == 0:
            stack[depth, 0] = lo
            stack[depth, 1] = half
        else:
            stack[depth, 0] = lo + half
            stack[depth, 1] = m - half
    return 0.0 + values[0, 0], 0.0 + values[0, 1]


@numba.njit(cache=True, nogil=True)
def _finish(
    buf: NDArray[np.float64], wealth: float, ruined: bool, min_ratio: float, ppy: int,
    stack: NDArray[np.int64], values: NDArray[np.float64], out: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled; equal to metrics.py in the tests
    """Write the seven return metrics into ``out[:7]`` (see :mod:`backtest.metrics`).

    ``wealth`` is the sequential product of ``1 + r``, ``ruined`` whether some
    ``1 + r <= 0`` and ``min_ratio`` the lowest equity / running peak.
    """
    n = buf.shape[0]
    nan = np.nan
    out[TOTAL_RETURN] = wealth - 1.0
    out[WEALTH] = wealth
    out[RUINED] = 1.0 if ruined else 0.0
    out[CAGR] = nan  # finish_growth
    out[CALMAR] = nan  # finish_growth
    dd = 1.0 - min_ratio if n > 0 else 0.0
    dd = min(max(dd, 0.0), 1.0) if dd == dd else dd
    out[MAX_DRAWDOWN] = dd
    if n < 2:
        out[VOLATILITY] = nan
        out[SHARPE] = nan
        out[SORTINO] = nan
        return
    total, down_total = pairwise_sums(buf, _PLAIN, 0.0, stack, values)
    mean = total / n
    down = down_total / n
    std = math.sqrt(pairwise_sums(buf, _SQDEV, mean, stack, values)[0] / (n - 1))
    root = math.sqrt(ppy)
    out[VOLATILITY] = std * root
    out[SHARPE] = nan if std <= _STD_RTOL * abs(mean) else mean / std * root
    downside = math.sqrt(down) * root
    out[SORTINO] = mean * ppy / downside if downside > 0.0 else nan


@numba.njit(cache=True, nogil=True, inline="always")
def _drawdown_step(
    wealth: float, peak: float, trough: float, min_ratio: float
) -> tuple[float, float, float]:  # pragma: no cover - compiled
    """Track ``min(equity / running peak)`` with one division per new high.

    Between two highs the peak is constant and ``x / peak`` is monotone in ``x``, so
    the lowest ratio of a drawdown is its trough over its peak: the same float numpy
    finds dividing every bar.
    """
    if wealth > peak:
        ratio = trough / peak
        if ratio < min_ratio:
            min_ratio = ratio
        return wealth, wealth, min_ratio
    if wealth < trough or wealth != wealth:
        trough = wealth
    return peak, trough, min_ratio


@numba.njit(cache=True, nogil=True, inline="always")
def _close_drawdown(peak: float, trough: float, min_ratio: float) -> float:  # pragma: no cover
    ratio = trough / peak
    return ratio if (ratio < min_ratio or ratio != ratio) else min_ratio


@numba.njit(cache=True, nogil=True)
def _one_asset(
    source: int, tab: NDArray[np.float64], data: NDArray[np.float64],
    r: NDArray[np.float64], w: float, a: int, b: int, start: int, ls: bool, cost: float,
    buf: NDArray[np.float64],
) -> tuple[float, float, float, float, float, bool, float]:  # pragma: no cover - compiled
    """One parameter set on one asset: fills ``buf``, returns counts and path stats."""
    n = buf.shape[0]
    prev = 0.0
    growth = 1.0
    trades = 0.0
    wins = 0.0
    expo = 0.0
    turn = 0.0
    wealth = 1.0
    ruined = False
    peak = 1.0
    trough = 1.0
    min_ratio = 1.0
    for t in range(n):
        cur = 0.0
        if t >= start:
            if source == TABLE:
                x = tab[a, t, 0]
                y = tab[b, t, 0]
            elif source == SMA_CUMSUM:
                x = (data[t + 1, 0] - data[t + 1 - a, 0]) / a
                y = (data[t + 1, 0] - data[t + 1 - b, 0]) / b
            else:
                x = data[t - b, 0] / data[t - b - a, 0] - 1.0
                y = 0.0
            if x > y:
                cur = 1.0
            elif ls and x < y:
                cur = -1.0
        rt = r[t, 0]
        d = abs(cur - prev)
        ret = 0.0 + w * ((1.0 + prev * rt) * (1.0 - cost * d) - 1.0)
        buf[t] = ret
        expo += w * abs(cur)
        turn += w * d
        # Trades: positions are -1, 0 or 1 here, so a change is a close and/or an open.
        if prev != 0.0:
            growth *= 1.0 + prev * rt
        if cur != prev:
            if prev != 0.0:
                growth *= 1.0 - cost * abs(prev)
                trades += 1.0
                if growth > 1.0:
                    wins += 1.0
            if cur != 0.0:
                growth = 1.0 - cost * abs(cur)
        prev = cur
        g = 1.0 + ret
        if g <= 0.0:
            ruined = True
        wealth *= g
        peak, trough, min_ratio = _drawdown_step(wealth, peak, trough, min_ratio)
    if prev != 0.0:
        trades += 1.0
        if growth > 1.0:
            wins += 1.0
    min_ratio = _close_drawdown(peak, trough, min_ratio)
    return trades, wins, expo, turn, wealth, ruined, min_ratio


@numba.njit(cache=True, nogil=True)
def _many_assets(
    source: int, tab: NDArray[np.float64], data: NDArray[np.float64],
    r: NDArray[np.float64], weights: NDArray[np.float64], a: int, b: int, start: int,
    ls: bool, cost: float, buf: NDArray[np.float64], prev: NDArray[np.float64],
    growth: NDArray[np.float64],
) -> tuple[float, float, float, float, float, bool, float]:  # pragma: no cover - compiled
    """One parameter set on every asset, combined with ``weights`` bar by bar."""
    n = buf.shape[0]
    n_assets = weights.shape[0]
    prev[:] = 0.0
    growth[:] = 1.0
    trades = 0.0
    wins = 0.0
    expo = 0.0
    turn = 0.0
    wealth = 1.0
    ruined = False
    peak = 1.0
    trough = 1.0
    min_ratio = 1.0
    for t in range(n):
        port = 0.0
        for j in range(n_assets):
            cur = 0.0
            if t >= start:
                if source == TABLE:
                    x = tab[a, t, j]
                    y = tab[b, t, j]
                elif source == SMA_CUMSUM:
                    x = (data[t + 1, j] - data[t + 1 - a, j]) / a
                    y = (data[t + 1, j] - data[t + 1 - b, j]) / b
                else:
                    x = data[t - b, j] / data[t - b - a, j] - 1.0
                    y = 0.0
                if x > y:
                    cur = 1.0
                elif ls and x < y:
                    cur = -1.0
            p = prev[j]
            rt = r[t, j]
            d = abs(cur - p)
            wj = weights[j]
            port += wj * ((1.0 + p * rt) * (1.0 - cost * d) - 1.0)
            expo += wj * abs(cur)
            turn += wj * d
            if cur != p or p != 0.0:
                g = growth[j]
                if p != 0.0:
                    g *= 1.0 + p * rt
                if cur != p:
                    if p != 0.0:
                        g *= 1.0 - cost * abs(p)
                        trades += 1.0
                        if g > 1.0:
                            wins += 1.0
                    if cur != 0.0:
                        g = 1.0 - cost * abs(cur)
                growth[j] = g
                prev[j] = cur
        buf[t] = port
        gp = 1.0 + port
        if gp <= 0.0:
            ruined = True
        wealth *= gp
        peak, trough, min_ratio = _drawdown_step(wealth, peak, trough, min_ratio)
    for j in range(n_assets):
        if prev[j] != 0.0:
            trades += 1.0
            if growth[j] > 1.0:
                wins += 1.0
    min_ratio = _close_drawdown(peak, trough, min_ratio)
    return trades, wins, expo, turn, wealth, ruined, min_ratio


@numba.njit(cache=True, nogil=True)
def _run_sets(
    lo: int, hi: int, source: int, tab: NDArray[np.float64], data: NDArray[np.float64],
    r: NDArray[np.float64], weights: NDArray[np.float64], a: NDArray[np.int64],
    b: NDArray[np.int64], start: NDArray[np.int64], long_short: NDArray[np.bool_],
    cost: float, ppy: int, keep_slot: NDArray[np.int64], kept: NDArray[np.float64],
    out: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    """Sets ``lo`` to ``hi`` of :func:`fused_backtests`, with their own scratch buffers."""
    n, n_assets = r.shape
    buf = np.empty(n)
    prev = np.empty(n_assets)
    growth = np.empty(n_assets)
    stack = np.empty((64, 3), np.int64)
    values = np.empty((64, 2))
    for i in range(lo, hi):
        if n_assets == 1:
            trades, wins, expo, turn, wealth, ruined, min_ratio = _one_asset(
                source, tab, data, r, weights[0], a[i], b[i], start[i], long_short[i],
                cost, buf,
            )
        else:
            trades, wins, expo, turn, wealth, ruined, min_ratio = _many_assets(
                source, tab, data, r, weights, a[i], b[i], start[i], long_short[i],
                cost, buf, prev, growth,
            )
        row = out[i]
        _finish(buf, wealth, ruined, min_ratio, ppy, stack, values, row)
        row[N_TRADES] = trades
        row[WIN_RATE] = wins / trades if trades > 0 else np.nan
        row[EXPOSURE] = expo / n
        row[TURNOVER] = turn / n * ppy
        slot = keep_slot[i]
        if slot >= 0:
            kept[slot, :] = buf


@numba.njit(cache=True, nogil=True, parallel=True)
def fused_backtests(
    source: int,
    tab: NDArray[np.float64],
    data: NDArray[np.float64],
    r: NDArray[np.float64],
    weights: NDArray[np.float64],
    a: NDArray[np.int64],
    b: NDArray[np.int64],
    start: NDArray[np.int64],
    long_short: NDArray[np.bool_],
    cost: float,
    ppy: int,
    keep_slot: NDArray[np.int64],
    kept: NDArray[np.float64],
    n_chunks: int,
) -> NDArray[np.float64]:  # pragma: no cover - compiled; equal to simulate() in the tests
    """Every metric of ``k`` parameter sets over all assets, in one pass per set.

    Args:
        source: :data:`TABLE`, :data:`SMA_CUMSUM` or :data:`MOMENTUM_CLOSE`.
        tab: ``TABLE``: signals ``(n_rows, n_bars, n_assets)`` (NaN while undefined).
        data: ``SMA_CUMSUM``: cumulative sums of closes after a zero row,
            ``(n_bars + 1, n_assets)``; ``MOMENTUM_CLOSE``: closes ``(n_bars, n_assets)``.
        r: Bar returns ``close[t] / close[t-1] - 1`` (0 on the first bar),
            ``(n_bars, n_assets)``.
        weights: Portfolio weight per asset.
        a: ``TABLE``: row of the left signal; otherwise SMA ``fast`` / momentum ``lookback``.
        b: ``TABLE``: row of the right signal; otherwise SMA ``slow`` / momentum ``skip``.
        start: Per set, the first bar whose signal is defined (flat before).
        long_short: Per set, whether it goes short when left < right.
        cost: Cost per unit of traded notional, as a fraction.
        ppy: Bars per year.
        keep_slot: Per set, the row of ``kept`` that receives its returns, or -1.
        kept: ``(n_kept, n_bars)`` portfolio returns of the kept sets (written).
        n_chunks: Groups of sets run in parallel (a few per thread).

    Returns:
        ``(k, N_OUT)``: the metrics in the order of ``metrics.METRIC_NAMES`` (CAGR and
        Calmar still to be finished by :func:`finish_growth`), then wealth and ruin.
    """
    k = a.shape[0]
    out = np.empty((k, N_OUT))
    n_chunks = max(1, min(k, n_chunks))
    for c in numba.prange(n_chunks):
        _run_sets(c * k // n_chunks, (c + 1) * k // n_chunks, source, tab, data, r, weights,
                  a, b, start, long_short, cost, ppy, keep_slot, kept, out)
    return out


@numba.njit(cache=True, nogil=True)
def fused_backtests_serial(
    source: int, tab: NDArray[np.float64], data: NDArray[np.float64], r: NDArray[np.float64],
    weights: NDArray[np.float64], a: NDArray[np.int64], b: NDArray[np.int64],
    start: NDArray[np.int64], long_short: NDArray[np.bool_], cost: float, ppy: int,
    keep_slot: NDArray[np.int64], kept: NDArray[np.float64],
) -> NDArray[np.float64]:  # pragma: no cover - compiled; equal to fused_backtests
    """:func:`fused_backtests` on the calling thread only.

    For few sets, and in worker processes forked after OpenMP started.
    """
    out = np.empty((a.shape[0], N_OUT))
    _run_sets(0, a.shape[0], source, tab, data, r, weights, a, b, start, long_short, cost,
              ppy, keep_slot, kept, out)
    return out


@numba.njit(cache=True, nogil=True, parallel=True)
def return_metrics(
    returns: NDArray[np.float64], ppy: int, n_chunks: int
) -> NDArray[np.float64]:  # pragma: no cover - compiled; equal to metrics.py in the tests
    """The seven return metrics of each row of ``returns`` (``(k, n_bars)``), in parallel.

    Returns:
        ``(k, N_OUT)`` like :func:`fused_backtests`, the trade columns left undefined
        (CAGR and Calmar still to be finished by :func:`finish_growth`).
    """
    k, n = returns.shape
    out = np.empty((k, N_OUT))
    n_chunks = max(1, min(k, n_chunks))
    for c in numba.prange(n_chunks):
        lo = c * k // n_chunks
        hi = (c + 1) * k // n_chunks
        buf = np.empty(n)
        stack = np.empty((64, 3), np.int64)
        values = np.empty((64, 2))
        for i in range(lo, hi):
            buf[:] = returns[i]
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
            _finish(buf, wealth, ruined, min_ratio, ppy, stack, values, out[i])
    return out


def finish_growth(out: NDArray[np.float64], n_bars: int, ppy: int) -> NDArray[np.float64]:
    """Fill CAGR and Calmar of a kernel output in place, exactly as ``metrics.py`` does."""
    wealth = out[:, WEALTH]
    ruined = out[:, RUINED] > 0.0
    if n_bars == 0:
        out[:, CAGR] = np.nan
    else:
        with np.errstate(invalid="ignore"):
            out[:, CAGR] = np.where(ruined, -1.0, np.abs(wealth) ** (ppy / n_bars) - 1.0)
    dd = out[:, MAX_DRAWDOWN]
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, CALMAR] = np.where(dd > 0.0, out[:, CAGR] / dd, np.nan)
    return out
