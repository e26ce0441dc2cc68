"""Compiled kernels of the SPA test: the stationary bootstrap's draws and its exceedances.

The draws come from the caller's NumPy ``Generator`` inside compiled code (numba
implements ``Generator.integers`` and ``Generator.random`` with NumPy's own
algorithms on the same bit generator), in the order of
:class:`arch.bootstrap.StationaryBootstrap`: per draw, one integer per bar, then one
uniform per bar. So the same seed gives the same positions as NumPy calls from Python
would, without a Python loop over draws.

A draw's bootstrap mean of a trial is the sum of its returns over the draw's bar
positions; a stationary-bootstrap draw is a few runs of consecutive bars, so that sum
is a difference of two cumulative sums per run instead of one addition per bar: about
``bars / block_size`` vector operations per draw instead of ``bars``.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray


@numba.njit(cache=True, nogil=True)
def stationary_draws(
    rng: np.random.Generator, n_bars: int, n_bootstrap: int, p: float
) -> NDArray[np.int64]:  # pragma: no cover - compiled
    """Bar positions of ``n_bootstrap`` stationary-bootstrap draws, one row per draw.

    Row ``r`` takes ``n_bars`` integers in ``[0, n_bars)``, then ``n_bars`` uniforms
    from ``rng``; bar ``t > 0`` continues the block (the previous position plus one,
    wrapping to 0) unless its uniform is at most ``p``, where it keeps its integer.
    """
    idx = np.empty((n_bootstrap, n_bars), dtype=np.int64)
    for r in range(n_bootstrap):
        # element by element: a slice assignment compiles numba's shape-error text
        starts = rng.integers(0, n_bars, size=n_bars)
        u = rng.random(size=n_bars)
        for t in range(n_bars):
            if t == 0 or u[t] <= p:
                idx[r, t] = starts[t]
            else:
                nxt = idx[r, t - 1] + 1
                idx[r, t] = 0 if nxt == n_bars else nxt
    return idx


@numba.njit(cache=True, nogil=True)
def exceedances(
    idx: NDArray[np.int64],
    prefix: NDArray[np.float64],
    centres: NDArray[np.float64],
    best: float,
) -> NDArray[np.int64]:  # pragma: no cover - compiled
    """Per centre, the draws whose largest re-centred bootstrap mean exceeds ``best``.

    Args:
        idx: Bar positions of the draws (draws x bars).
        prefix: Cumulative sums of the differentials, a zero row first
            ((bars + 1) x trials): the sum over bars ``a..b`` is
            ``prefix[b + 1] - prefix[a]``.
        centres: One centring vector per row (centres x trials).
        best: The observed statistic (the largest mean differential).

    Returns:
        For each centre ``c``, the number of draws with
        ``max_k (mean_k(draw) - c_k) > best``.
    """
    reps, t = idx.shape
    k = prefix.shape[1]
    hits = np.zeros(centres.shape[0], dtype=np.int64)
    acc = np.empty(k)
    for r in range(reps):
        acc[:] = 0.0
        start = idx[r, 0]
        prev = start
        for s in range(1, t + 1):
            cur = idx[r, s] if s < t else -2  # a sentinel closes the last run
            if cur != prev + 1:
                for j in range(k):
                    acc[j] += prefix[prev + 1, j] - prefix[start, j]
                start = cur
            prev = cur
        for c in range(centres.shape[0]):
            top = -np.inf
            for j in range(k):
                v = acc[j] / t - centres[c, j]
                if v > top:
                    top = v
            if top > best:
                hits[c] += 1
    return hits


@numba.njit(cache=True, nogil=True)
def kernel_variance(
    x: NDArray[np.float64], block_size: float
) -> NDArray[np.float64]:  # pragma: no cover
    """Arch's stationary-bootstrap variance of each column of demeaned ``x``, in O(bars).

    ``(1/T) [Σ_s x_s² + 2 Σ_{j<s} κ(s-j) x_j x_s]`` with
    ``κ(i) = (1 - i/T) q^i + (i/T) q^(T-i)`` and ``q = 1 - 1/block_size``: the same sum as
    ``Σ_i w_i γ_i`` over the lag-i autocovariances, accumulated bar by bar through four
    running sums over ``j < s`` (``Σ q^(s-j) x_j``, ``Σ (s-j) q^(s-j) x_j``, ``Σ q^j x_j``,
    ``Σ j q^j x_j``; the second kernel term is ``q^(T-s) q^j``, so no power exceeds 1)
    instead of one autocovariance per lag.
    """
    t, k = x.shape
    q = 1.0 - 1.0 / block_size
    a = np.zeros(k)  # Σ_{j<l} q^(l-j) x_j
    b = np.zeros(k)  # Σ_{j<l} (l-j) q^(l-j) x_j
    c = np.zeros(k)  # Σ_{j<l} q^j x_j
    e = np.zeros(k)  # Σ_{j<l} j q^j x_j
    acc = np.zeros(k)
    q_tail = np.empty(t)  # q^(t-s) / t
    q_tail[t - 1] = q / t
    for s in range(t - 2, -1, -1):
        q_tail[s] = q_tail[s + 1] * q
    q_head = 1.0  # q^(s-1)
    for s in range(t):
        if s > 0:
            for j in range(k):
                xp = x[s - 1, j]
                b[j] = q * (b[j] + a[j] + xp)
                a[j] = q * (a[j] + xp)
                c[j] += q_head * xp
                e[j] += (s - 1) * q_head * xp
            q_head *= q
        w = q_tail[s]
        for j in range(k):
            xs = x[s, j]
            acc[j] += xs * (xs + 2.0 * (a[j] - b[j] / t + w * (s * c[j] - e[j])))
    return acc / t
