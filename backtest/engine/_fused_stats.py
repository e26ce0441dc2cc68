"""The return metrics of the fused kernels, operation for operation as :mod:`backtest.metrics`.

Sums use numpy's own pairwise summation (:func:`pairwise_sums`), products are
sequential, the drawdown is the lowest equity over its running peak: the results are
bit-identical to :mod:`backtest.metrics` on the same machine. CAGR and Calmar are
finished in numpy (:func:`finish_growth`), whose ``**`` may differ from the C
library's ``pow`` in the last bit.
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

_STD_RTOL = 1e-12  # metrics.py: a smaller std relative to the mean is a constant series
_BLOCK = 128  # numpy's pairwise-summation leaf size
#: What the pairwise sums add up (see pairwise_sums). numpy ints: numba types a Python int
#: constant as a literal and would compile pairwise_sums (and its leaves) once per mode.
_PLAIN, _SQDEV = np.int64(0), np.int64(2)


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
    # numpy starts its eight sums at the first eight terms; starting at 0.0 differs only
    # in the sign of a zero sum, which pairwise_sums' ``0.0 + sum`` makes +0.0 either way
    r0 = r1 = r2 = r3 = r4 = r5 = r6 = r7 = 0.0
    d0 = d1 = d2 = d3 = d4 = d5 = d6 = d7 = 0.0
    end = lo + n - n % 8
    j = lo
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
            x = ((a[i]) - mean) * ((a[i]) - mean)
            res += x
        return res
    r0 = r1 = r2 = r3 = r4 = r5 = r6 = r7 = 0.0  # (squares: never a zero of either sign)
    end = lo + n - n % 8
    j = lo
    while j < end:
        r0 += ((a[j]) - mean) * ((a[j]) - mean)
        r1 += ((a[j + 1]) - mean) * ((a[j + 1]) - mean)
        r2 += ((a[j + 2]) - mean) * ((a[j + 2]) - mean)
        r3 += ((a[j + 3]) - mean) * ((a[j + 3]) - mean)
        r4 += ((a[j + 4]) - mean) * ((a[j + 4]) - mean)
        r5 += ((a[j + 5]) - mean) * ((a[j + 5]) - mean)
        r6 += ((a[j + 6]) - mean) * ((a[j + 6]) - mean)
        r7 += ((a[j + 7]) - mean) * ((a[j + 7]) - mean)
        j += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while j < lo + n:
        res += ((a[j]) - mean) * ((a[j]) - mean)
        j += 1
    return res


@numba.njit(cache=True, nogil=True, inline="always")
def _leaf_sum(
    a: NDArray[np.float64], lo: int, n: int, mode: int | np.int64, mean: float
) -> tuple[float, float]:  # pragma: no cover - compiled
    if mode == _PLAIN:
        return _leaf_plain_down(a, lo, n)
    return _leaf_sqdev(a, lo, n, mean), 0.0


@numba.njit(cache=True, nogil=True, inline="always")
def scratch() -> tuple[NDArray[np.int64], NDArray[np.float64]]:  # pragma: no cover - compiled
    """:func:`pairwise_sums`' scratch space ``(stack, values)``, one per thread."""
    return np.empty((64, 3), np.int64), np.empty((64, 2))


@numba.njit(cache=True, nogil=True)
def pairwise_sums(
    a: NDArray[np.float64], mode: int | np.int64, mean: float,
    stack: NDArray[np.int64], values: NDArray[np.float64],  # scratch()
) -> tuple[float, float]:  # pragma: no cover - compiled; equal to np.sum in tests  # fmt: skip
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
    n = a.shape[0]  # (a run of at most 128 terms is a leaf at depth 0)
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
def finish_returns(
    buf: NDArray[np.float64],
    path: tuple[float, bool, float],
    ppy: int,
    space: tuple[NDArray[np.int64], NDArray[np.float64]],
    out: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled; equal to metrics.py in the tests
    """Write the seven return metrics of ``buf`` into ``out[:7]`` (see :mod:`backtest.metrics`).

    ``path`` is :func:`path_stats`' (wealth, ruined, lowest equity / running peak) of
    ``buf``; ``space`` the :func:`scratch` of :func:`pairwise_sums`.
    """
    wealth, ruined, min_ratio = path
    stack, values = space
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


#: :func:`wealth_step`'s state before the first bar: wealth, ruined, peak, trough, min_ratio.
PATH_START = (1.0, False, 1.0, 1.0, 1.0)


@numba.njit(cache=True, nogil=True, inline="always")
def wealth_step(
    x: float, wealth: float, ruined: bool, peak: float, trough: float, min_ratio: float
) -> tuple[float, bool, float, float, float]:  # pragma: no cover - compiled
    """One bar's portfolio return ``x``: the wealth, ruin (``1 + x <= 0``) and drawdown state.

    Start from :data:`PATH_START`; :func:`_close_drawdown` finishes the lowest equity /
    running peak.
    """
    g = 1.0 + x
    if g <= 0.0:
        ruined = True
    wealth *= g
    peak, trough, min_ratio = _drawdown_step(wealth, peak, trough, min_ratio)
    return wealth, ruined, peak, trough, min_ratio


@numba.njit(cache=True, nogil=True, inline="always")
def path_stats(buf: NDArray[np.float64]) -> tuple[float, bool, float]:  # pragma: no cover
    """Final wealth, whether some ``1 + r <= 0``, and the lowest equity / running peak."""
    wealth, ruined, peak, trough, min_ratio = PATH_START
    for t in range(buf.shape[0]):
        wealth, ruined, peak, trough, min_ratio = wealth_step(
            buf[t], wealth, ruined, peak, trough, min_ratio
        )
    return wealth, ruined, _close_drawdown(peak, trough, min_ratio)


@numba.njit(cache=True, nogil=True, parallel=True)
def return_metrics(
    returns: NDArray[np.float64], ppy: int, n_chunks: int
) -> NDArray[np.float64]:  # pragma: no cover - compiled; equal to metrics.py in the tests
    """The seven return metrics of each row of ``returns`` (``(k, n_bars)``), in parallel.

    Returns:
        ``(k, N_OUT)`` like the fused kernels (``_fused_kernels.run_sets``), the trade
        columns left undefined (CAGR and Calmar still to be finished by
        :func:`finish_growth`).
    """
    k, n = returns.shape
    out = np.empty((k, N_OUT))
    n_chunks = max(1, min(k, n_chunks))
    for c in numba.prange(n_chunks):
        lo = c * k // n_chunks
        hi = (c + 1) * k // n_chunks
        buf = np.empty(n)
        space = scratch()
        for i in range(lo, hi):
            for t in range(n):  # (a slice assignment compiles numba's shape-error text)
                buf[t] = returns[i, t]
            finish_returns(buf, path_stats(buf), ppy, space, out[i])
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
