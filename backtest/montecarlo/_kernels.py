"""Compiled kernels: resample one path at a time and score it, chunk by chunk.

Nothing here allocates a ``paths x bars`` matrix: each path's returns live in one
scratch buffer of ``horizon`` floats, are scored, and are overwritten by the next
path. Only the equity curves of the first few paths (the fan sample) are kept.

Metric columns (``METRICS``) match :mod:`backtest.metrics` (the tests check it):
Sharpe is ``mean / std(ddof=1) * sqrt(periods_per_year)`` over all bars (NaN when
the returns do not vary), max drawdown counts the starting capital of 1 as a peak,
CAGR is ``-1`` once the capital is wiped out.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray

from backtest.montecarlo._rng import next_u64, randint, seed_path, uniform

IID = 0
STATIONARY = 1
CIRCULAR = 2
PERMUTE = 3

METRICS = (
    "total_return",
    "cagr",
    "sharpe_ratio",
    "max_drawdown",
    "time_under_water",
    "longest_drawdown_bars",
    "mean_return",
    "annual_volatility",
)
_TILE = 64  # bars transposed at once by fan_quantiles
_STD_RTOL = 1e-12  # as backtest.metrics: a std this small relative to the mean is zero


@numba.njit(cache=True, nogil=True, inline="always")
def _step(
    method: int,
    t: int,
    prev: int,
    n_src: int,
    p_new: float,
    block_len: int,
    state: NDArray[np.uint64],
    perm: NDArray[np.int64],
) -> tuple[int, bool]:  # pragma: no cover - compiled
    """Source index of bar ``t`` of a block or permutation path, and whether a block starts.

    (``IID`` paths are drawn by :func:`_fill_iid`.)
    """
    if method == STATIONARY:
        if t == 0 or uniform(state) < p_new:
            return randint(state, n_src), True
        nxt = prev + 1
        return (0 if nxt == n_src else nxt), False
    if method == CIRCULAR:
        if t % block_len == 0:
            return randint(state, n_src), True
        nxt = prev + 1
        return (0 if nxt == n_src else nxt), False
    # PERMUTE: one step of a Fisher-Yates shuffle (sampling without replacement)
    if t == 0:
        for i in range(n_src):
            perm[i] = i
    k = t + randint(state, n_src - t)
    chosen = perm[k]
    perm[k] = perm[t]
    perm[t] = chosen
    return chosen, True


_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)


@numba.njit(cache=True, nogil=True)
def _fill_iid(
    src: NDArray[np.float64], state: NDArray[np.uint64], buf: NDArray[np.float64]
) -> None:  # pragma: no cover - compiled
    """``buf[t] = src[i_t]`` with ``i_t`` uniform on ``[0, len(src))``, drawn with replacement.

    Two indices per 64 random bits: Lemire's multiply-shift on each 32-bit half, with
    his rejection step, so every index is exactly equally likely.
    """
    n = np.uint64(src.size)
    threshold = (np.uint64(4294967296) - n) % n  # 2**32 mod n
    horizon = buf.size
    t = 0
    while t < horizon:
        x = next_u64(state)
        m = (x & _LOW32) * n
        if (m & _LOW32) >= threshold:
            buf[t] = src[m >> _SHIFT32]
            t += 1
            if t == horizon:
                break
        m = (x >> _SHIFT32) * n
        if (m & _LOW32) >= threshold:
            buf[t] = src[m >> _SHIFT32]
            t += 1


@numba.njit(cache=True, nogil=True)
def draw_indices(
    n_src: int, method: int, block_size: float, horizon: int, key: NDArray[np.uint64], path: int
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:  # pragma: no cover - compiled
    """The source indices of one path and where its blocks start (for tests and plots)."""
    state = np.empty(4, np.uint64)
    seed_path(state, key, path)
    if method == IID:  # the kernel's own draw, on a source whose values are the indices
        drawn = np.empty(horizon)
        _fill_iid(np.arange(n_src).astype(np.float64), state, drawn)
        return drawn.astype(np.int64), np.ones(horizon, np.bool_)
    perm = np.empty(n_src if method == PERMUTE else 0, np.int64)
    idx = np.empty(horizon, np.int64)
    new = np.empty(horizon, np.bool_)
    p_new = 1.0 / block_size
    block_len = max(1, round(block_size))
    prev = 0
    for t in range(horizon):
        prev, flag = _step(method, t, prev, n_src, p_new, block_len, state, perm)
        idx[t] = prev
        new[t] = flag
    return idx, new


@numba.njit(cache=True, nogil=True)
def score(
    r: NDArray[np.float64], periods_per_year: float, shift: float, out: NDArray[np.float64],
    equity_out: NDArray[np.float32],
) -> None:  # pragma: no cover - compiled  # fmt: skip
    """Write the ``METRICS`` of one return path into ``out``.

    Args:
        r: Fractional returns of the path, one per bar (each >= -1).
        periods_per_year: Bars (or trades) per year, for annualising.
        shift: A value near the mean return, subtracted before summing squares so
            the variance keeps its precision.
        out: Row of ``len(METRICS)`` floats to fill.
        equity_out: Empty, or ``len(r) + 1`` floats to receive the equity curve
            (starting at 1).
    """
    n = r.size
    store = equity_out.size > 0
    if store:
        equity_out[0] = 1.0
    e = 1.0
    peak = 1.0
    mdd = 0.0
    floor = 1.0  # equity below this is a new max drawdown: peak * (1 - mdd)
    under = 0
    run = 0
    longest = 0
    s = 0.0
    ss = 0.0
    lo = np.inf
    hi = -np.inf
    for t in range(n):
        x = r[t]
        e *= 1.0 + x
        if e > peak:
            peak = e
            floor = peak * (1.0 - mdd)
        if e < peak:
            if e < floor:  # a deeper drawdown than any so far: divide only then
                mdd = 1.0 - e / peak
                floor = peak * (1.0 - mdd)
            under += 1
            run += 1
            if run > longest:
                longest = run
        else:
            run = 0
        d = x - shift
        s += d
        ss += d * d
        lo = min(lo, x)
        hi = max(hi, x)
        if store:
            equity_out[t + 1] = e
    out[0] = e - 1.0
    out[1] = -1.0 if e <= 0.0 else e ** (periods_per_year / n) - 1.0
    mean = shift + s / n
    std = np.nan
    if n > 1:
        std = np.sqrt(max(ss - s * s / n, 0.0) / (n - 1))
    if n < 2 or lo == hi or std <= _STD_RTOL * abs(mean):
        out[2] = np.nan
    else:
        out[2] = mean / std * np.sqrt(periods_per_year)
    out[3] = min(mdd, 1.0)
    out[4] = under / n
    out[5] = longest
    out[6] = mean
    out[7] = 0.0 if lo == hi else std * np.sqrt(periods_per_year)


@numba.njit(cache=True, nogil=True)
def resample_chunk(
    src: NDArray[np.float64], method: int, block_size: float, horizon: int, first_path: int,
    key: NDArray[np.uint64], periods_per_year: float, shift: float, out: NDArray[np.float64],
    fan: NDArray[np.float32],
) -> None:  # pragma: no cover - compiled  # fmt: skip
    """Resample and score paths ``first_path .. first_path + len(out) - 1``.

    Args:
        src: The observed returns (bar returns or per-trade returns).
        method: ``IID``, ``STATIONARY``, ``CIRCULAR`` or ``PERMUTE``.
        block_size: Mean (stationary) or fixed (circular) block length in bars.
        horizon: Bars per path.
        first_path: Number of the chunk's first path (keys its random stream).
        key: The run's root key (see :func:`backtest.montecarlo._rng.root_key`).
        periods_per_year: Bars (or trades) per year.
        shift: Mean of ``src`` (see :func:`score`).
        out: ``(paths, len(METRICS))`` rows to fill.
        fan: ``(m, horizon + 1)`` rows receiving the equity of the chunk's first
            ``m`` paths (``m`` may be 0).
    """
    n_src = src.size
    state = np.empty(4, np.uint64)
    buf = np.empty(horizon)
    perm = np.empty(n_src if method == PERMUTE else 0, np.int64)
    no_equity = np.empty(0, np.float32)
    p_new = 1.0 / block_size
    block_len = max(1, round(block_size))
    for j in range(out.shape[0]):
        seed_path(state, key, first_path + j)
        if method == IID:
            _fill_iid(src, state, buf)
        else:
            prev = 0
            for t in range(horizon):
                prev, _ = _step(method, t, prev, n_src, p_new, block_len, state, perm)
                buf[t] = src[prev]
        score(buf, periods_per_year, shift, out[j], fan[j] if j < fan.shape[0] else no_equity)


@numba.njit(cache=True, nogil=True)
def score_columns(
    returns: NDArray[np.float64],
    periods_per_year: float,
    out: NDArray[np.float64],
    fan: NDArray[np.float32],
) -> None:  # pragma: no cover - compiled
    """Score each column of a ``(bars, paths)`` return matrix (strategy re-runs)."""
    n, k = returns.shape
    buf = np.empty(n)
    no_equity = np.empty(0, np.float32)
    for j in range(k):
        total = 0.0
        for t in range(n):
            buf[t] = returns[t, j]
            total += buf[t]
        score(buf, periods_per_year, total / n, out[j], fan[j] if j < fan.shape[0] else no_equity)


@numba.njit(cache=True, nogil=True)
def _select(a: NDArray[np.float64], lo: int, hi: int, k: int) -> None:  # pragma: no cover
    """Partially order ``a[lo:hi]`` so ``a[k]`` holds its k-th smallest value.

    Quickselect with a median-of-three pivot and branch-free partitions (swaps
    always, advances by the comparison): about 2.5 times faster than a Hoare
    partition on random equity values, whose comparisons a CPU cannot predict.
    Values equal to the pivot are gathered next to it, so ties cost one pass.
    """
    hi -= 1
    while hi > lo:
        mid = (lo + hi) // 2
        if a[mid] < a[lo]:
            a[mid], a[lo] = a[lo], a[mid]
        if a[hi] < a[lo]:
            a[hi], a[lo] = a[lo], a[hi]
        if a[hi] < a[mid]:
            a[hi], a[mid] = a[mid], a[hi]
        pivot = a[mid]
        a[mid], a[hi] = a[hi], a[mid]  # park the pivot at the end
        store = lo
        for i in range(lo, hi):  # smaller values to the front
            v = a[i]
            a[i] = a[store]
            a[store] = v
            store += v < pivot
        a[store], a[hi] = a[hi], a[store]  # the pivot in its place
        if k < store:
            hi = store - 1
            continue
        equal = store + 1
        for i in range(store + 1, hi + 1):  # then values equal to the pivot
            v = a[i]
            a[i] = a[equal]
            a[equal] = v
            equal += v == pivot
        if k < equal:
            return
        lo = equal


@numba.njit(cache=True, nogil=True)
def fan_quantiles(
    fan: NDArray[np.float32], q: NDArray[np.float64]
) -> NDArray[np.float64]:  # pragma: no cover
    """Per-bar quantiles (``np.quantile``'s linear rule) of the rows of ``fan``.

    Uses selection, not sorting: the largest quantile first, each next one within
    the values left of the previous.

    Returns:
        ``(bars, len(q))`` equity quantiles.
    """
    m, n_bars = fan.shape
    res = np.empty((n_bars, q.size))
    tile = np.empty((_TILE, m))
    order = np.empty(q.size, dtype=np.int64)  # the largest level first: an insertion sort
    for jj in range(q.size):  # of the few levels (np.argsort would compile numba's sorting)
        i = jj
        while i > 0 and q[order[i - 1]] < q[jj]:
            order[i] = order[i - 1]
            i -= 1
        order[i] = jj
    for t in range(n_bars):
        if t % _TILE == 0:  # transpose a tile of bars: rows are read contiguously
            width = min(_TILE, n_bars - t)
            for i in range(m):
                for b in range(width):
                    tile[b, i] = fan[i, t + b]
        col = tile[t % _TILE]
        hi = m
        for jj in range(q.size):
            j = order[jj]
            pos = q[j] * (m - 1)
            below = int(np.floor(pos))
            _select(col, 0, hi, below)
            value = col[below]
            if pos > below:
                # the next order statistic: the smallest value right of ``below``; values
                # right of ``hi`` are at least ``col[hi - 1]`` (the previous selection)
                end = hi if below + 1 < hi else m  # (a repeated level: scan everything)
                nxt = col[below + 1]
                for i in range(below + 2, end):
                    nxt = min(nxt, col[i])
                value += (nxt - value) * (pos - below)
            res[t, j] = value
            hi = below + 1
    return res
