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
    edges = np.unique(np.concatenate((starts, ends, np.array([0, n], dtype=np.int64))))
    n_seg = edges.shape[0] - 1
    first = np.searchsorted(edges, starts)
    last = np.searchsorted(edges, ends)
    s1 = np.empty(n_seg)
    s2 = np.empty(n_seg)
    inner = np.empty(n_seg, dtype=np.bool_)  # a change between two rows of the segment
    entry = np.empty(n_seg, dtype=np.bool_)  # a change from the row before the segment
    out = np.full((w, k), np.nan)
    for i in range(k):
        total = 0.0
        for t in range(n):
            total += returns[t, i]
        shift = total / n
        for g in range(n_seg):
            lo = edges[g]
            hi = edges[g + 1]
            a = 0.0
            b = 0.0
            changed = False
            prev = returns[lo, i]
            for t in range(lo, hi):
                x = returns[t, i]
                y = x - shift
                a += y
                b += y * y
                changed = changed or x != prev
                prev = x
            s1[g] = a
            s2[g] = b
            inner[g] = changed
            entry[g] = lo > 0 and returns[lo, i] != returns[lo - 1, i]
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
