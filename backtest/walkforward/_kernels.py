"""Compiled loops of the walk-forward: portfolio returns and per-window Sharpe ratios."""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray


@numba.njit(cache=True, nogil=True)
def accumulate_returns(
    pos: NDArray[np.float64],
    r: NDArray[np.float64],
    cost: float,
    weight: float,
    port: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled; checked against engine.simulate in the tests
    """``port[t, i] += weight * ((1 + pos[t-1, i]·r[t])·(1 - cost·|Δpos|) - 1)``.

    The engine's convention: the target at the close of bar t is held over t+1, the
    position before the first bar is flat, a NaN target (warming up) is flat.
    """
    n, k = pos.shape
    prev = np.zeros(k)
    for t in range(n):  # row by row: both arrays are C-ordered (bars x sets)
        rt = r[t]
        for i in range(k):
            cur = pos[t, i]
            if cur != cur:
                cur = 0.0
            p = prev[i]
            port[t, i] += weight * ((1.0 + p * rt) * (1.0 - cost * abs(cur - p)) - 1.0)
            prev[i] = cur


@numba.njit(cache=True, nogil=True)
def window_sharpe(
    returns: NDArray[np.float64], start: int, end: int
) -> NDArray[np.float64]:  # pragma: no cover - compiled; checked against metrics in tests
    """Per-period Sharpe (mean / std, ``ddof=1``) of rows ``[start, end)`` of each column.

    Two passes per column (mean, then squared deviations), fastest on a
    column-contiguous (Fortran-ordered) ``(bars, sets)`` array. NaN with fewer than two
    rows or where the standard deviation is at most 1e-12 of the mean (flat), as
    :func:`backtest.metrics.sharpe_ratio`.
    """
    n = end - start
    k = returns.shape[1]
    out = np.full(k, np.nan)
    if n < 2:
        return out
    for i in range(k):
        total = 0.0
        for t in range(start, end):
            total += returns[t, i]
        mean = total / n
        ss = 0.0
        for t in range(start, end):
            d = returns[t, i] - mean
            ss += d * d
        sd = np.sqrt(ss / (n - 1))
        if sd > 1e-12 * abs(mean):  # the flat rule of backtest.metrics.sharpe_ratio
            out[i] = mean / sd
    return out


@numba.njit(cache=True, nogil=True, fastmath=True)
def _column_sum(col: NDArray[np.float64]) -> float:  # pragma: no cover - compiled
    total = 0.0
    for t in range(col.shape[0]):
        total += col[t]
    return total


@numba.njit(cache=True, nogil=True, fastmath=True)
def _segment_sums(
    col: NDArray[np.float64], lo: int, hi: int, shift: float
) -> tuple[float, float]:  # pragma: no cover - compiled
    """Sum of ``col[lo:hi] - shift`` and of its square (vectorised reduction)."""
    a = 0.0
    b = 0.0
    for t in range(lo, hi):
        y = col[t] - shift
        a += y
        b += y * y
    return a, b


@numba.njit(cache=True, nogil=True)
def _changes(col: NDArray[np.float64], lo: int, hi: int) -> bool:  # pragma: no cover
    """Whether ``col`` changes between two consecutive rows of ``[lo, hi)``."""
    for t in range(lo + 1, hi):  # noqa: SIM110 - a plain loop compiles; any(genexpr) does not
        if col[t] != col[t - 1]:
            return True
    return False


@numba.njit(cache=True, nogil=True)
def windows_sharpe(
    returns: NDArray[np.float64], starts: NDArray[np.int64], ends: NDArray[np.int64]
) -> NDArray[np.float64]:  # pragma: no cover - compiled; checked against metrics in tests
    """Per-period Sharpe of every column over many row windows ``[starts[j], ends[j])``.

    The window edges cut the rows into segments; one pass per column sums each
    segment's returns minus the column mean (the shift keeps the variance free of
    cancellation) and their squares, and notes whether the returns change inside it
    and at its first row. Each window then adds up its segments. A window whose
    returns never change is flat (NaN), as is one with fewer than two rows, as in
    :func:`backtest.metrics.sharpe_ratio`; otherwise it agrees with the two-pass
    formula to about 1e-13 relative.

    Returns:
        ``(n_windows, n_columns)`` per-period Sharpe ratios.
    """
    n, k = returns.shape
    w = starts.shape[0]
    # the sorted distinct edges (0, n and every start and end) and each row's edge index,
    # by marking rows: no sort (np.unique would compile numba's sorting for this alone)
    slot = np.zeros(n + 1, dtype=np.int64)
    slot[0] = slot[n] = 1
    for j in range(w):
        slot[starts[j]] = slot[ends[j]] = 1
    edges = np.empty(n + 1, dtype=np.int64)
    n_edges = 0
    for row in range(n + 1):
        if slot[row]:
            edges[n_edges] = row
            slot[row] = n_edges
            n_edges += 1
    n_seg = n_edges - 1
    first = np.empty(w, dtype=np.int64)
    last = np.empty(w, dtype=np.int64)
    for j in range(w):
        first[j] = slot[starts[j]]
        last[j] = slot[ends[j]]
    s1 = np.empty(n_seg)
    s2 = np.empty(n_seg)
    inner = np.empty(n_seg, dtype=np.bool_)  # a change between two rows of the segment
    entry = np.empty(n_seg, dtype=np.bool_)  # a change from the row before the segment
    out = np.full((w, k), np.nan)
    for i in range(k):
        col = returns[:, i]
        shift = _column_sum(col) / n
        for g in range(n_seg):
            lo = edges[g]
            hi = edges[g + 1]
            s1[g], s2[g] = _segment_sums(col, lo, hi, shift)
            inner[g] = _changes(col, lo, hi)
            entry[g] = lo > 0 and col[lo] != col[lo - 1]
        for j in range(w):
            m = ends[j] - starts[j]
            if m < 2:
                continue
            a = 0.0
            b = 0.0
            changed = False
            for g in range(first[j], last[j]):
                a += s1[g]
                b += s2[g]
                changed = changed or inner[g] or (g > first[j] and entry[g])
            if not changed:
                continue
            my = a / m
            var = (b - m * my * my) / (m - 1)
            mean = my + shift
            if var > 0.0:
                sd = np.sqrt(var)
                if sd > 1e-12 * abs(mean):
                    out[j, i] = mean / sd
    return out


@numba.njit(cache=True, nogil=True)
def sharpe_moments(x: NDArray[np.float64]) -> tuple[float, float, float]:  # pragma: no cover
    """Per-period Sharpe, skewness and Pearson kurtosis of one return series.

    The definitions of :func:`backtest.overfitting.return_moments` (Sharpe with
    ``ddof=1``, moment skewness and kurtosis), compiled for the per-fold DSR; a
    constant series gives ``(nan, 0, 3)``.
    """
    n = x.shape[0]
    total = 0.0
    for t in range(n):
        total += x[t]
    mean = total / n
    m2 = 0.0
    m3 = 0.0
    m4 = 0.0
    for t in range(n):
        d = x[t] - mean
        d2 = d * d
        m2 += d2
        m3 += d2 * d
        m4 += d2 * d2
    m2 /= n
    m3 /= n
    m4 /= n
    if m2 <= 0.0 or n < 2:
        return np.nan, 0.0, 3.0
    std = np.sqrt(m2 * n / (n - 1))
    return mean / std, m3 / m2**1.5, m4 / (m2 * m2)
