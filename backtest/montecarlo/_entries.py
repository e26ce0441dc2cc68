"""``random_entries``: the observed positions against the returns of other times (a timing null).

The null hypothesis: the strategy's timing carries no information about the returns
that follow, so its Sharpe is no better than that of the very same positions earning
the same returns in another order. Each path keeps the observed positions (so the
trades, their lengths, directions and sizes, the exposure and the costs are exactly the
observed ones) and reorders the bars' returns (all assets together): the return series
is cut into blocks of ``block_size`` bars, and the blocks are laid out again in a
random order, each moved by a circular displacement ``d`` in ``[lo, hi]``:

* ``lo`` is the warm-up (declared ``warmup_bars``, or measured as the bars before the
  first position) plus one: a block moved later by fewer bars would pay a position
  with the very returns its indicator read (a look-ahead that inflates the null);
* ``hi`` is the number of bars minus the mean trade length and one: a block moved
  earlier by less than a trade pairs positions with nearly their own next returns
  (the observed timing, which would cost power); ``bars - 1`` when the trades are
  too long for that.

The reordering is a permutation, so every path earns the same returns in total: the
book's drift is the observed one and only the timing differs (placing trades at random
times instead changes the exposure to the drift, which is what made that null
conservative for price-driven strategies). Blocks, rather than one circular shift,
give thousands of distinct orders, so the null's spread is well estimated even for
books of long trades. When no order fits the constraints in a few tries, one circular
shift by a uniform ``d`` in ``[lo, hi]`` (which always fits) is used.

Calibration (GBM prices, no skill, 40 paths a case so that p < 0.05 means at most one
path beats the observed: a nominal 2/41 = 0.049; ``tests/test_montecarlo_calibration.py``),
with 5-bar blocks (``conf/montecarlo/random_entries.yaml``): P(p < 0.05) = 0.044 over
cases 0-999 and 0.0485 over cases 1000-2999 for SmaCross(5, 20) long-only; 0.049 and
0.060 for a long/short momentum book (4 assets, lookback 63, skip 5). 20-bar blocks
keep more volatility clustering but narrow the null for books of long trades (0.066
for the momentum book over 3,000 cases). Strong edges get p < 0.05.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numpy.typing import NDArray

from backtest.errors import ConfigError

Segments = tuple[tuple[NDArray[np.float64], ...], ...]  # per asset: the trades' position runs
_TRIES = 20


def trade_segments(positions: NDArray[np.float64]) -> Segments:
    """Per asset, the position values of each trade (a run of one non-zero sign)."""
    out = []
    for j in range(positions.shape[1]):
        x = positions[:, j]
        s = np.sign(x)
        change = np.flatnonzero(np.diff(np.concatenate(([0.0], s))) != 0)
        runs = []
        for i, start in enumerate(change):
            stop = change[i + 1] if i + 1 < change.size else x.size
            if s[start] != 0:
                runs.append(x[start:stop].copy())
        out.append(tuple(runs))
    return tuple(out)


def measured_warmup(positions: NDArray[np.float64]) -> int:
    """Bars before the first non-flat position of any asset (the strategy's warm-up)."""
    active = np.flatnonzero((positions != 0.0).any(axis=1))
    return int(active[0]) if active.size else positions.shape[0]


def displacement_range(
    positions: NDArray[np.float64], warmup_bars: int | None = None
) -> tuple[int, int]:
    """``(lo, hi)``: the circular displacements a block of returns may be moved by.

    Args:
        positions: The observed positions (bars x assets).
        warmup_bars: The strategy's declared warm-up; measured from the positions when None.

    Returns:
        ``lo = warm-up + 1`` and ``hi = returns - mean trade length - 1`` (``returns - 1``
        when trades are too long for that, e.g. buy and hold), ``returns`` being the
        bars less the first (which has no return).

    Raises:
        ConfigError: A warm-up as long as the data (key ``montecarlo.method``).
    """
    n = positions.shape[0] - 1  # bar returns: the first bar has none
    warm = measured_warmup(positions) if warmup_bars is None else int(warmup_bars)
    lengths = [s.size for segs in trade_segments(positions) for s in segs]
    mean_length = math.ceil(float(np.mean(lengths))) if lengths else 0
    lo, hi = warm + 1, n - mean_length - 1
    if hi < lo:  # trades too long to clear: keep the warm-up bound (validity), drop this one
        hi = n - 1
    if lo > hi:
        raise ConfigError(
            f"random_entries moves returns by at least the warm-up plus one ({lo} bars), "
            f"which {n} bars cannot hold; declare a shorter warmup_bars or use more bars",
            key="montecarlo.method",
        )
    return lo, hi


@numba.njit(cache=True, nogil=True)
def _block_order(
    n: int, block: int, lo: int, hi: int, u: NDArray[np.float64], src: NDArray[np.int64]
) -> bool:  # pragma: no cover - compiled; checked by the displacement tests
    """Fill ``src`` with blocks in a random order, every displacement in ``[lo, hi]``.

    Left to right, each next block is drawn uniformly (``u``, one uniform per block)
    among the unused blocks whose move to the current bar is allowed. False when none
    is (the caller tries again).
    """
    m = (n + block - 1) // block
    used = np.zeros(m, dtype=np.bool_)
    ok = np.empty(m, dtype=np.int64)
    at = 0
    for step in range(m):
        count = 0
        for b in range(m):
            if not used[b]:
                d = (at - b * block) % n
                if lo <= d <= hi:
                    ok[count] = b
                    count += 1
        if count == 0:
            return False
        b = ok[min(int(u[step] * count), count - 1)]
        used[b] = True
        length = min(block, n - b * block)
        for i in range(length):
            src[at + i] = b * block + i
        at += length
    return True


def return_order(
    n: int, block: int, lo: int, hi: int, rng: np.random.Generator
) -> NDArray[np.int64]:
    """Source of each of ``n`` bar returns on one null path (a permutation of ``range(n)``).

    Blocks of ``block`` bars in a random order, each moved by a circular displacement
    in ``[lo, hi]``; failing that within a few tries, one circular shift by a uniform
    displacement in ``[lo, hi]``.
    """
    block = max(1, int(block))
    src = np.empty(n, dtype=np.int64)
    for _ in range(_TRIES):
        if _block_order(n, block, lo, hi, rng.random((n + block - 1) // block), src):
            return src
    d = int(rng.integers(lo, hi + 1))
    return (np.arange(n) - d) % n
