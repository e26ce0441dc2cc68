"""The generic batched path: positions of many parameter sets -> every metric, compiled.

Any strategy with its own ``batch_positions`` (see :mod:`backtest.strategies`) takes
this path in :func:`backtest.engine.simulate_batch`. The sets are cut into blocks of a
few MB of positions (:func:`block_size`): many sets per call of the strategy (so it
shares its work per distinct parameter). A block is asset-major: the strategy returns
one asset's positions of every set in the block, and :func:`_asset_pass` reads them at
once, while they are still in the CPU's cache (read later, from a block of every
asset, they cost almost twice as much), adding each set's weighted return to its row
of the block's portfolio returns and counting trades and winners, exposure and
turnover; on the last asset also the equity and drawdown, and then, while the row is
in cache, every metric with the fused kernels' streaming statistics
(:mod:`backtest.engine._fused_stats`): bit-identical to :mod:`backtest.metrics`.
Nothing of shape ``(k, n_bars)`` is built, nor positions of more than one asset of a
block.

Blocks run on several threads (:func:`evaluate_blocks`), each calling the strategy and
then the kernel (compiled without the GIL) for its own block, so a strategy whose
``batch_positions`` releases the GIL (numba ``nogil``, numpy on large arrays) runs on
every core along with the kernels. The outcome does not depend on the number of
threads: each set is computed by one thread, the same way.

The arithmetic is :func:`backtest.engine.simulate`'s under engine v1's defaults (the
sleeve accounting of :mod:`backtest.engine._sleeves`), operation for operation
(``(1 + q[t-1] r[t]) (1 - c |q[t] - q[t-1]|) - 1`` per asset with ``q = (p w) / w`` the
sleeve's holding, added with its weight to a portfolio starting at 0, asset after
asset), so the return metrics equal the single backtest's bit for bit; exposure and
turnover are summed in another order and agree to rounding. Stops, schedules, limits
and every other engine v2 option never come here (:func:`~backtest.engine.simulate_batch`
sends them to the fused-stops or the per-bar kernel paths).
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np
from numpy.typing import NDArray

from backtest.engine._fused_stats import (
    N_METRICS,
    N_OUT,
    PATH_START,
    _close_drawdown,
    finish_growth,
    scratch,
    wealth_step,
)
from backtest.engine._lanes import run_in_lanes
from backtest.engine._rows import NO_COUNTS, finish_row, kept_rows
from backtest.engine._trades import _trade_step, count_trade

#: Sets per block are a multiple of this (a cache line of positions per bar).
LINE = 8
#: Bytes a block holds at once: its portfolio rows and one asset's positions (a row of
#: each per set). As large as that allows, a block asks the strategy for many sets at
#: once (its call costs some fixed work, its Python and its per-parameter tables,
#: shared by the block).
BLOCK_BYTES = 8 * 2**20
#: Blocks per lane at least, where there are sets enough: sets differ in cost (a short
#: window trades more), and several blocks per lane let a lane that finished early take
#: another instead of waiting.
BLOCKS_PER_LANE = 4


def block_size(n_bars: int, k: int, lanes: int) -> int:
    """Sets per block: at most :data:`BLOCK_BYTES` held at once, a multiple of LINE.

    At least ``LINE`` sets; with several lanes, at least :data:`BLOCKS_PER_LANE` blocks
    per lane where the sets allow, in a number the lanes share evenly. The number of
    assets does not matter: a block holds one asset's positions at a time.
    """
    per_set = max(16 * n_bars, 1)  # a portfolio row and a row of positions
    m = max(LINE, BLOCK_BYTES // per_set)
    m -= m % LINE
    if lanes > 1:
        n_blocks = max(-(-k // m), BLOCKS_PER_LANE * lanes)
        n_blocks = -(-n_blocks // lanes) * lanes  # a multiple of the lanes
        share = -(-k // n_blocks)
        m = max(LINE, share + (-share) % LINE)
    return m


@numba.njit(cache=True, nogil=True, inline="always")
def _holding(v: float, w: float) -> float:  # pragma: no cover - compiled
    """The sleeve's holding of a position ``v`` at weight ``w``.

    ``(v w) / w``, what :func:`backtest.engine._sleeves._sleeves` derives from the
    target weight ``v w`` (0 for a zero weight; NaN while warming up is flat), so the
    returns equal :func:`~backtest.engine.simulate`'s bit for bit; -1, 0 and 1 without
    the division (it gives them back unchanged).
    """
    if v != v or w == 0.0:
        return 0.0
    if (v == 1.0) | (v == -1.0) | (v == 0.0):  # one branch, taken alike for every bar
        return v
    return (v * w) / w


#: Columns of a block's running counts per set (see :func:`_asset_pass`).
TRADES, WINS, EXPO, TURN = range(4)
N_COUNTS = 4


@numba.njit(cache=True, nogil=True)
def _asset_pass(
    pos: NDArray[np.float64], r: NDArray[np.float64], w: float, cost: float,
    acc: NDArray[np.float64], counts: NDArray[np.float64], first: bool, last: bool, ppy: int,
    out: NDArray[np.float64], keep_slot: NDArray[np.int64], kept: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled; equal to simulate() in the tests  # fmt: skip
    """One asset of a block of ``m`` sets, set after set, while its positions are in cache.

    ``pos`` is the asset's positions ``(n_bars, m)`` just returned by the strategy;
    each set's weighted return goes into its row of ``acc`` (``(m, n_bars)``, written
    on the ``first`` asset, added to after it), and its trades, winners, exposure and
    turnover into its row of ``counts``. On the ``last`` asset the row is finished
    while it is in cache: the equity and drawdown on the way, then every metric with
    :func:`finish_row` into ``out[s]`` (and the row into ``kept[keep_slot[s]]`` when
    that is >= 0).
    """
    n, m = pos.shape
    space = scratch()
    for c in range(m):
        row = acc[c]
        growth = 1.0
        prev = 0.0
        trades, wins, expo, turn = NO_COUNTS
        wealth, ruined, peak, trough, min_ratio = PATH_START
        for t in range(n):
            cur = _holding(pos[t, c], w)
            # the portfolio starts at 0 (``0.0 + x``, as simulate adds its first asset)
            if cur == prev:
                if prev == 0.0:  # flat: a return of 0 (the portfolio's is never -0.0)
                    if first:
                        row[t] = 0.0
                    if not last:
                        continue
                    x = row[t]
                else:  # held: (1 + p r) (1 - c * 0) - 1, as simulate computes it
                    held = 1.0 + prev * r[t]
                    growth *= held
                    x = (0.0 if first else row[t]) + w * (held - 1.0)
                    row[t] = x
                    expo += abs(cur)
            else:
                rt = r[t]
                d = abs(cur - prev)
                ret = (1.0 + prev * rt) * (1.0 - cost * d) - 1.0
                growth, ended, ended_growth = _trade_step(growth, prev, cur, rt, cost)
                if ended:
                    trades, wins = count_trade(ended_growth, trades, wins)
                x = (0.0 if first else row[t]) + w * ret
                row[t] = x
                expo += abs(cur)
                turn += d
                prev = cur
            if last:  # (the branch is the same for every bar: no cost)
                wealth, ruined, peak, trough, min_ratio = wealth_step(
                    x, wealth, ruined, peak, trough, min_ratio
                )
        if prev != 0.0:  # the trade still open at the end counts
            trades, wins = count_trade(growth, trades, wins)
        k = counts[c]
        k[TRADES] += trades
        k[WINS] += wins
        k[EXPO] += w * expo
        k[TURN] += w * turn
        if last:
            path = (wealth, ruined, _close_drawdown(peak, trough, min_ratio))
            totals = (k[TRADES], k[WINS], k[EXPO], k[TURN])
            finish_row(row, path, totals, ppy, space, out[c], kept, keep_slot[c])


#: ``(lo, hi) -> (j -> positions (n_bars, hi - lo) of asset j for sets lo..hi)``.
BlockPositions = Callable[[int, int], Callable[[int], NDArray[np.float64]]]


def evaluate_blocks(
    positions: BlockPositions,
    k: int,
    r: NDArray[np.float64],
    cost: float,
    weights: NDArray[np.float64],
    ppy: int,
    keep: NDArray[np.bool_] | None,
    *,
    lanes: int = 1,
    block: int | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """Every metric of ``k`` parameter sets over all assets, a block of sets at a time.

    Args:
        positions: ``(lo, hi) -> (j -> (n_bars, hi - lo) positions of asset j)``; NaN is
            flat. Asked for assets in order, once per block.
        k: Parameter sets.
        r: Bar returns ``close[t] / close[t-1] - 1`` (0 first), ``(n_assets, n_bars)``.
        cost: Cost per unit of traded notional, as a fraction.
        weights: Portfolio weight per asset.
        ppy: Bars per year.
        keep: Which sets' portfolio returns to return (``None``: none).
        lanes: Threads running blocks at once (the strategy and the kernel both).
        block: Sets per block (default :func:`block_size`).

    Returns:
        ``(metrics (k, 11) in metrics.METRIC_NAMES order, kept returns (n_bars, n_kept)
        or None)``.
    """
    n_assets, n_bars = r.shape
    out = np.empty((k, N_OUT))
    keep_slot, kept = kept_rows(keep, k, n_bars)
    w = np.ascontiguousarray(weights, dtype=np.float64)
    size = block or block_size(n_bars, k, lanes)

    def run(lo: int) -> None:
        hi = min(k, lo + size)
        of_asset = positions(lo, hi)
        acc = np.empty((hi - lo, n_bars))
        counts = np.zeros((hi - lo, N_COUNTS))
        for j in range(n_assets):  # each asset's positions while they are in cache
            pos = of_asset(j)  # row- or column-major (column-major reads a set in order)
            _asset_pass(pos, r[j], float(w[j]), cost, acc, counts, j == 0, j == n_assets - 1,
                        int(ppy), out[lo:hi], keep_slot[lo:hi], kept)  # fmt: skip

    run_in_lanes(run, range(0, k, size), lanes)  # raises the first block's error, if any
    finish_growth(out, n_bars, int(ppy))
    return out[:, :N_METRICS], (kept.T if len(kept) else None)
