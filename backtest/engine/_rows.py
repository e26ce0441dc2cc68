"""One parameter set's row of the batched kernels' output: its counts, scratch and finish.

Every batched kernel (:mod:`backtest.engine._fused_kernels`, :mod:`backtest.engine._fused_stops`,
:mod:`backtest.engine._generic`) follows each set's sleeves bar by bar, keeping its trade
counts in a :data:`NO_COUNTS` tuple (:func:`add_counts` sums the sleeves) and its
portfolio's path in :func:`~backtest.engine._fused_stats.wealth_step`'s state, then hands
both to :func:`finish_row`: the one place a set's metrics are written. Tuples keep the
state in registers; the helpers are inlined into each kernel.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray

from backtest.engine._fused_stats import (
    EXPOSURE,
    N_TRADES,
    TURNOVER,
    WIN_RATE,
    finish_returns,
)

#: A set's counts before its first bar: trades, winning trades, exposure (the sum of
#: ``|weight|`` per bar) and turnover (the sum of ``|change of weight|`` per bar).
NO_COUNTS = (0.0, 0.0, 0.0, 0.0)
Counts = tuple[float, float, float, float]
#: A portfolio's path: final wealth, whether some ``1 + r <= 0``, lowest equity / peak.
Path = tuple[float, bool, float]
#: :func:`~backtest.engine._fused_stats.scratch`: ``(stack, values)``.
Scratch = tuple[NDArray[np.int64], NDArray[np.float64]]


@numba.njit(cache=True, nogil=True, inline="always")
def add_counts(total: Counts, part: Counts) -> Counts:  # pragma: no cover - compiled
    """A sleeve's counts added to the set's, column by column."""
    return (total[0] + part[0], total[1] + part[1], total[2] + part[2], total[3] + part[3])


def kept_rows(
    keep: NDArray[np.bool_] | None, k: int, n_bars: int
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """``(keep_slot, kept)`` for :func:`finish_row`: each set's row of ``kept`` (-1: none).

    ``keep`` marks the sets whose returns are kept (``None``: none); ``kept`` is
    ``(n_kept, n_bars)``, the kept sets in order.
    """
    keep_slot = np.full(k, -1, dtype=np.int64)
    n_keep = 0 if keep is None else int(np.count_nonzero(keep))
    if n_keep:
        keep_slot[np.flatnonzero(keep)] = np.arange(n_keep)
    return keep_slot, np.empty((n_keep, n_bars))


@numba.njit(cache=True, nogil=True, inline="always")
def finish_row(
    buf: NDArray[np.float64], path: Path, counts: Counts, ppy: int, space: Scratch,
    row: NDArray[np.float64], kept: NDArray[np.float64], slot: int,
) -> None:  # pragma: no cover - compiled  # fmt: skip
    """Every metric of one set into ``row``, and its returns ``buf`` into ``kept[slot]``.

    The return metrics of :func:`~backtest.engine._fused_stats.finish_returns` from the
    returns and their ``path``, then the trade count, win rate, exposure and turnover
    from the summed ``counts``; ``slot < 0`` keeps nothing.
    """
    n = buf.shape[0]
    trades, wins, expo, turn = counts
    finish_returns(buf, path, ppy, space, row)
    row[N_TRADES] = trades
    row[WIN_RATE] = wins / trades if trades > 0 else np.nan
    row[EXPOSURE] = expo / n
    row[TURNOVER] = turn / n * ppy
    if slot >= 0:  # element by element: a slice assignment compiles numba's shape-error text
        for t in range(n):
            kept[slot, t] = buf[t]
