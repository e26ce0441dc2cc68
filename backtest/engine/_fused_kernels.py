"""Fused compiled kernels behind :func:`backtest.engine.simulate_batch` (via ``_fused``).

One pass over the bars per parameter set computes the target positions, the cost of
every change of position, each asset's return, the portfolio's return and equity,
its drawdown, the trade count and winners, exposure and turnover; the remaining
return metrics come from a buffer of ``n_bars`` returns that stays in the CPU cache.
Nothing of shape ``(n_bars, k)`` is built unless the caller keeps the return series.
Groups of parameter sets run on the batched paths' threads
(:func:`backtest.engine._lanes.run_chunks`), one buffer per group.

The arithmetic is :func:`backtest.engine.simulate`'s, operation for operation: the
moving averages come from the same cumulative sums, the momentum signal from the same
division, sums use numpy's own pairwise summation and products are sequential, so the
return metrics are bit-identical to the single backtest (exposure and turnover are
summed in another order and agree to rounding).

Position sources (``source`` argument):

* :data:`TABLE`: a table of signals per distinct window, ``(n_rows, n_assets,
  n_bars)``; a set is long while row ``a`` is above row ``b`` (SMA: the fast and slow
  averages; momentum: the trailing return and a row of zeros), short while below
  when it is long-short. Used while the table fits in memory.
* :data:`SMA_CUMSUM` / :data:`MOMENTUM_CLOSE`: the same signals recomputed on the fly
  from cumulative sums or closes, when a table would be too large.

Any other strategy goes through ``batch_positions`` and :mod:`backtest.engine._generic`.
The return metrics are computed by :mod:`backtest._fused_stats`.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray

from backtest.engine._fused_stats import PATH_START, _close_drawdown, scratch, wealth_step
from backtest.engine._rows import NO_COUNTS, Counts, Path, add_counts, finish_row
from backtest.engine._trades import _trade_step, count_trade
from backtest.strategies._mean_reversion import _step as _mean_reversion_step

#: Position sources of :func:`run_sets`.
TABLE = 0
SMA_CUMSUM = 1
MOMENTUM_CLOSE = 2
MEAN_REVERSION = 3


@numba.njit(cache=True, nogil=True, inline="always")
def _target(
    source: int, tab: NDArray[np.float64], data: NDArray[np.float64],  # the signals
    t: int, j: int,  # the bar and asset
    a: int, b: int, start: int, ls: bool, ea: float, eb: float,  # the set (see run_sets)
    prev: float,  # the position held
) -> float:  # pragma: no cover - compiled  # fmt: skip
    """The target of asset ``j`` at bar ``t`` from the source's signals (see the module)."""
    if t < start:
        return 0.0
    if source == MEAN_REVERSION:  # the strategy's own rule on its z-score row a
        return _mean_reversion_step(prev, tab[a, j, t], ea, eb)
    if source == TABLE:
        x = tab[a, j, t]
        y = tab[b, j, t]
    elif source == SMA_CUMSUM:
        x = (data[j, t + 1] - data[j, t + 1 - a]) / a
        y = (data[j, t + 1] - data[j, t + 1 - b]) / b
    else:
        x = data[j, t - b] / data[j, t - b - a] - 1.0
        y = 0.0
    if x > y:
        return 1.0
    if ls and x < y:
        return -1.0
    return 0.0


@numba.njit(cache=True, nogil=True)
def _sleeve(
    source: int, tab: NDArray[np.float64], data: NDArray[np.float64], r: NDArray[np.float64],
    j: int, w: float,  # the asset and its weight
    a: int, b: int, start: int, ls: bool, ea: float, eb: float, cost: float,  # the set
    buf: NDArray[np.float64], first: bool, last: bool,
) -> tuple[Counts, Path]:  # pragma: no cover - compiled  # fmt: skip
    """Asset ``j``'s weighted returns of one set, written (``first``) or added into ``buf``.

    Its state in scalars, its signals and returns read in order (asset-major inputs).
    Returns the asset's counts (weighted; see :mod:`backtest.engine._rows`), and on the
    ``last`` asset the portfolio's path (computed as its returns are finished; undefined
    otherwise).
    """
    n = buf.shape[0]
    prev = 0.0
    growth = 1.0
    trades, wins, expo, turn = NO_COUNTS
    wealth, ruined, peak, trough, min_ratio = PATH_START
    for t in range(n):
        cur = _target(source, tab, data, t, j, a, b, start, ls, ea, eb, prev)
        rt = r[j, t]
        d = abs(cur - prev)
        # the portfolio starts at 0 and adds its assets in order (``0.0 + x0 + x1 ...``)
        x = (0.0 if first else buf[t]) + w * ((1.0 + prev * rt) * (1.0 - cost * d) - 1.0)
        buf[t] = x
        expo += w * abs(cur)
        turn += w * d
        if cur == prev:  # held (or flat): the trade grows; no trade ends
            if prev != 0.0:
                growth *= 1.0 + prev * rt
        else:  # the one rule of trades (_trade_step), only on a bar that trades
            growth, ended, ended_growth = _trade_step(growth, prev, cur, rt, cost)
            if ended:
                trades, wins = count_trade(ended_growth, trades, wins)
        prev = cur
        if last:  # (the same for every bar: no cost)
            wealth, ruined, peak, trough, min_ratio = wealth_step(
                x, wealth, ruined, peak, trough, min_ratio
            )
    if prev != 0.0:  # the trade still open at the end counts
        trades, wins = count_trade(growth, trades, wins)
    counts = (trades, wins, expo, turn)
    return counts, (wealth, ruined, _close_drawdown(peak, trough, min_ratio))


@numba.njit(cache=True, nogil=True)
def _many_assets(
    source: int, tab: NDArray[np.float64], data: NDArray[np.float64], r: NDArray[np.float64],
    weights: NDArray[np.float64],
    a: int, b: int, start: int, ls: bool, ea: float, eb: float, cost: float,  # the set
    buf: NDArray[np.float64],
) -> tuple[Counts, Path]:  # pragma: no cover - compiled  # fmt: skip
    """One parameter set on every asset (one or many): sleeve after sleeve into ``buf``.

    Asset after asset (each sleeve's state stays in registers and its inputs are read
    in order: 1.8x faster than bar after bar over 20 assets), the same sums as adding
    the weighted sleeves bar by bar; the last sleeve also follows the portfolio's path.
    """
    n_assets = weights.shape[0]
    counts = NO_COUNTS
    path = (1.0, False, 1.0)  # (the last sleeve's)
    for j in range(n_assets):
        part, path = _sleeve(
            source, tab, data, r, j, weights[j], a, b, start, ls, ea, eb, cost, buf, j == 0,
            j == n_assets - 1,
        )  # fmt: skip
        counts = add_counts(counts, part)
    return counts, path


def run_sets(
    lo: int, hi: int,
    source: int, tab: NDArray[np.float64], data: NDArray[np.float64],
    r: NDArray[np.float64], weights: NDArray[np.float64],
    a: NDArray[np.int64], b: NDArray[np.int64], start: NDArray[np.int64],
    long_short: NDArray[np.bool_], th: NDArray[np.float64], cost: float,
    ppy: int, keep_slot: NDArray[np.int64], kept: NDArray[np.float64], out: NDArray[np.float64],
) -> None:  # fmt: skip
    """Every metric of sets ``lo`` to ``hi`` into ``out``, one pass per set over the bars.

    The compiled entry is chosen here, from the source and the whole batch's
    ``long_short`` (so a batch uses one entry): :func:`_table_long`,
    :func:`_table_long_short`, :func:`_table_mixed` (a loop for each side, picked per
    set), :func:`_mean_reversion`, or :func:`_any_source` (the on-the-fly sources, the
    source read at run time). Each has bar loops compiled for its literal source and
    sides, and numba compiles an entry on its first call only: a run compiles the loops
    it uses, not all of them.

    Args:
        lo: First set.
        hi: One past the last set.
        source: :data:`TABLE`, :data:`SMA_CUMSUM`, :data:`MOMENTUM_CLOSE` or
            :data:`MEAN_REVERSION`.
        tab: ``TABLE``: signals ``(n_rows, n_assets, n_bars)`` (NaN while undefined);
            ``MEAN_REVERSION``: z-scores, a row per lookback.
        data: ``SMA_CUMSUM``: cumulative sums of closes after a zero row,
            ``(n_assets, n_bars + 1)``; ``MOMENTUM_CLOSE``: closes ``(n_assets, n_bars)``.
        r: Bar returns ``close[t] / close[t-1] - 1`` (0 on the first bar),
            ``(n_assets, n_bars)``.
        weights: Portfolio weight per asset.
        a: ``TABLE``: row of the left signal; ``MEAN_REVERSION``: the z-score row;
            otherwise SMA ``fast`` / momentum ``lookback``.
        b: ``TABLE``: row of the right signal; otherwise SMA ``slow`` / momentum ``skip``.
        start: Per set, the first bar whose signal is defined (flat before).
        long_short: Per set, whether it goes short when left < right.
        th: Per set, ``MEAN_REVERSION``'s entry and exit z (``(k, 2)``; unused otherwise).
        cost: Cost per unit of traded notional, as a fraction.
        ppy: Bars per year.
        keep_slot: Per set, the row of ``kept`` that receives its returns, or -1.
        kept: ``(n_kept, n_bars)`` portfolio returns of the kept sets (written).
        out: ``(k, N_OUT)``: the metrics in the order of ``metrics.METRIC_NAMES`` (CAGR
            and Calmar still to be finished by :func:`finish_growth`), then wealth and
            ruin (rows ``lo`` to ``hi`` written).
    """
    sets = (tab, data, r, weights, a, b, start, long_short, th, cost, ppy, keep_slot, kept, out)
    if source == TABLE and long_short.all():
        _table_long_short(lo, hi, sets)
    elif source == TABLE and not long_short.any():
        _table_long(lo, hi, sets)
    elif source == TABLE:
        _table_mixed(lo, hi, sets)
    elif source == MEAN_REVERSION:
        _mean_reversion(lo, hi, sets)
    else:
        _any_source(lo, hi, source, sets)


#: :func:`run_sets`' arguments after ``source``, as one tuple: ``tab, data, r, weights, a, b,
#: start, long_short, th, cost, ppy, keep_slot, kept, out``.
Sets = tuple[
    NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64],
    NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_],
    NDArray[np.float64], float, int, NDArray[np.int64], NDArray[np.float64], NDArray[np.float64],
]  # fmt: skip


@numba.njit(cache=True, nogil=True, inline="always")
def _sets(
    lo: int, hi: int, source: int, ls: bool | None, sets: Sets
) -> None:  # pragma: no cover - compiled
    """:func:`run_sets`' loop over sets, inlined into each entry with its literal arguments.

    ``ls``: every set's side (a literal), or ``None``: each set's ``long_short``. numba
    prunes the ``is None`` branches an entry does not take, so ``_many_assets`` is
    compiled for the literal sides the entry uses only.
    """
    tab, data, r, weights, a, b, start, long_short, th, cost, ppy, keep_slot, kept, out = sets
    buf = np.empty(r.shape[1])
    space = scratch()

    def one(i: int, side: bool) -> tuple[Counts, Path]:  # (inlined: a literal side stays one)
        return _many_assets(source, tab, data, r, weights, a[i], b[i], start[i], side,
                            th[i, 0], th[i, 1], cost, buf)  # fmt: skip

    for i in range(lo, hi):
        if ls is not None:
            counts, path = one(i, ls)
        elif long_short[i]:  # each set's side, a literal each: both loops are compiled
            counts, path = one(i, True)
        else:
            counts, path = one(i, False)
        finish_row(buf, path, counts, ppy, space, out[i], kept, keep_slot[i])


@numba.njit(cache=True, nogil=True)
def _table_long(lo: int, hi: int, sets: Sets) -> None:  # pragma: no cover - compiled
    """:func:`run_sets` on a signal table, every set long-only (``sets``: :data:`Sets`)."""
    _sets(lo, hi, TABLE, False, sets)


@numba.njit(cache=True, nogil=True)
def _table_long_short(lo: int, hi: int, sets: Sets) -> None:  # pragma: no cover - compiled
    """:func:`run_sets` on a signal table, every set long-short."""
    _sets(lo, hi, TABLE, True, sets)


@numba.njit(cache=True, nogil=True)
def _table_mixed(lo: int, hi: int, sets: Sets) -> None:  # pragma: no cover - compiled
    """:func:`run_sets` on a signal table, long-only and long-short sets."""
    _sets(lo, hi, TABLE, None, sets)


@numba.njit(cache=True, nogil=True)
def _mean_reversion(lo: int, hi: int, sets: Sets) -> None:  # pragma: no cover - compiled
    """:func:`run_sets` on z-scores, by the mean-reversion rule (its own sides)."""
    _sets(lo, hi, MEAN_REVERSION, False, sets)


@numba.njit(cache=True, nogil=True)
def _any_source(lo: int, hi: int, source: int, sets: Sets) -> None:  # pragma: no cover
    """:func:`run_sets` with the source read at run time (the on-the-fly sources)."""
    _sets(lo, hi, source, None, sets)
