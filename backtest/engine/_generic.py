"""The generic batched path: positions of many parameter sets -> every metric, compiled.

Any strategy with its own ``batch_positions`` (see :mod:`backtest.strategies`) takes
this path in :func:`backtest.engine.simulate_batch`: the strategy gives an ``(n_bars,
k)`` array of positions per asset. :func:`evaluate` takes eight sets at a time: asset
after asset it adds each set's weighted returns to the set's row of a small buffer
that stays in the CPU cache (counting trades and winners, exposure and turnover on the
way), then computes every metric of each row with the fused kernels' streaming
statistics (:mod:`backtest.engine._fused_stats`): bit-identical to
:mod:`backtest.metrics`. Nothing of shape ``(k, n_bars)`` is built besides the
positions. Blocks of sets run in parallel.

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


@numba.njit(cache=True, nogil=True, inline="always")
def _step(
    cur: float, prev: float, rt: float, cost: float, growth: float, trades: float, wins: float
) -> tuple[float, float, float, float]:  # pragma: no cover - compiled
    """One bar of one set: the asset's return, and the trade count / winners / growth."""
    d = abs(cur - prev)
    ret = (1.0 + prev * rt) * (1.0 - cost * d) - 1.0
    if cur != prev or prev != 0.0:
        growth, ended, ended_growth = _trade_step(growth, prev, cur, rt, cost)
        if ended:
            trades += 1.0
            if ended_growth > 1.0:
                wins += 1.0
    return ret, growth, trades, wins


@numba.njit(cache=True, nogil=True, inline="always")
def _copy_line(
    pos: NDArray[np.float64], i: int, hi: int, w: float, tmp: NDArray[np.float64]
) -> None:  # pragma: no cover - compiled
    """Copy up to LINE sets' columns from ``i`` on (each cache line of pos read once).

    A position ``p`` becomes the sleeve's holding ``(p w) / w`` that
    :func:`backtest.engine._sleeves._sleeves` derives from the target weight ``p w``
    (0 for a zero weight), so the returns equal :func:`~backtest.engine.simulate`'s
    bit for bit.
    """
    m = min(LINE, hi - i)
    for t in range(pos.shape[0]):
        for q in range(m):
            v = pos[t, i + q]
            if v != v or w == 0.0:  # NaN while warming up means flat
                tmp[q, t] = 0.0
            else:
                tmp[q, t] = (v * w) / w


@numba.njit(cache=True, nogil=True)
def _sets(
    lo: int,
    hi: int,
    pos: NDArray[np.float64],
    r: NDArray[np.float64],
    cost: float,
    weights: NDArray[np.float64],
    ppy: int,
    out: NDArray[np.float64],
    keep_slot: NDArray[np.int64],
    kept: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled; equal to simulate() in the tests
    """Sets ``lo`` to ``hi``, LINE at a time: every asset, then every metric.

    For a group of LINE sets, asset after asset: copy the group's position columns
    (each cache line of ``pos`` read once), then run each set's bars, adding the
    weighted return to its row of ``acc`` (a group's rows stay in the CPU cache) and
    counting trades, exposure and turnover; on the last asset also the equity and
    drawdown, and the set's return metrics right after its bars.
    """
    n_assets, n, _ = pos.shape
    tmp = np.empty((LINE, n))
    acc = np.empty((LINE, n))
    cnt = np.empty((LINE, 4))
    stack = np.empty((64, 3), np.int64)
    values = np.empty((64, 2))
    for first in range(lo, hi, LINE):
        m = min(LINE, hi - first)
        acc[:] = 0.0
        cnt[:] = 0.0
        for j in range(n_assets):
            w = weights[j]
            _copy_line(pos[j], first, hi, w, tmp)
            rj = r[j]
            last = j == n_assets - 1
            for s in range(m):
                col = tmp[s]
                row = acc[s]
                growth = 1.0
                prev = 0.0
                trades = 0.0
                wins = 0.0
                expo = 0.0
                turn = 0.0
                wealth = 1.0
                ruined = False
                peak = 1.0
                trough = 1.0
                min_ratio = 1.0
                if not last:
                    for t in range(n):
                        cur = col[t]
                        ret, growth, trades, wins = _step(
                            cur, prev, rj[t], cost, growth, trades, wins
                        )
                        row[t] += w * ret
                        expo += abs(cur)
                        turn += abs(cur - prev)
                        prev = cur
                else:  # the last asset: equity and drawdown while the row is in cache
                    for t in range(n):
                        cur = col[t]
                        ret, growth, trades, wins = _step(
                            cur, prev, rj[t], cost, growth, trades, wins
                        )
                        x = row[t] + w * ret
                        row[t] = x
                        expo += abs(cur)
                        turn += abs(cur - prev)
                        prev = cur
                        g = 1.0 + x
                        if g <= 0.0:
                            ruined = True
                        wealth *= g
                        peak, trough, min_ratio = _drawdown_step(wealth, peak, trough, min_ratio)
                if prev != 0.0:
                    trades += 1.0
                    if growth > 1.0:
                        wins += 1.0
                cnt[s, 0] += trades
                cnt[s, 1] += wins
                cnt[s, 2] += w * expo
                cnt[s, 3] += w * turn
                if not last:
                    continue
                min_ratio = _close_drawdown(peak, trough, min_ratio)
                i = first + s
                res = out[i]
                _finish(row, wealth, ruined, min_ratio, ppy, stack, values, res)
                total = cnt[s, 0]
                res[N_TRADES] = total
                res[WIN_RATE] = cnt[s, 1] / total if total > 0 else np.nan
                res[EXPOSURE] = cnt[s, 2] / n
                res[TURNOVER] = cnt[s, 3] / n * ppy
                slot = keep_slot[i]
                if slot >= 0:
                    kept[slot, :] = row


@numba.njit(cache=True, nogil=True, parallel=True)
def _sets_parallel(
    pos: NDArray[np.float64],
    r: NDArray[np.float64],
    cost: float,
    weights: NDArray[np.float64],
    ppy: int,
    out: NDArray[np.float64],
    keep_slot: NDArray[np.int64],
    kept: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    k = pos.shape[2]
    n_blocks = (k + BLOCK - 1) // BLOCK
    for b in numba.prange(n_blocks):
        _sets(b * BLOCK, min(k, (b + 1) * BLOCK), pos, r, cost, weights, ppy, out, keep_slot, kept)


def evaluate(
    pos: NDArray[np.float64],
    r: NDArray[np.float64],
    cost: float,
    weights: NDArray[np.float64],
    ppy: int,
    keep: NDArray[np.bool_] | None,
    *,
    parallel: bool,
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """Every metric of ``k`` parameter sets over all assets.

    Args:
        pos: Positions ``(n_assets, n_bars, k)`` (NaN is flat).
        r: Bar returns ``close[t] / close[t-1] - 1`` (0 first), ``(n_assets, n_bars)``.
        cost: Cost per unit of traded notional, as a fraction.
        weights: Portfolio weight per asset.
        ppy: Bars per year.
        keep: Which sets' portfolio returns to return (``None``: none).
        parallel: Run blocks of sets on all of numba's threads.

    Returns:
        ``(metrics (k, 11) in metrics.METRIC_NAMES order, kept returns (n_bars, n_kept)
        or None)``.
    """
    _, n, k = pos.shape
    out = np.empty((k, N_OUT))
    keep_slot = np.full(k, -1, dtype=np.int64)
    n_keep = 0 if keep is None else int(np.count_nonzero(keep))
    if keep is not None and n_keep:
        keep_slot[np.flatnonzero(keep)] = np.arange(n_keep)
    kept = np.empty((n_keep, n))
    w = np.ascontiguousarray(weights, dtype=np.float64)
    if parallel:
        _sets_parallel(pos, r, cost, w, int(ppy), out, keep_slot, kept)
    else:
        _sets(0, k, pos, r, cost, w, int(ppy), out, keep_slot, kept)
    finish_growth(out, n, int(ppy))
    return out[:, :N_METRICS], (kept.T if n_keep else None)
