"""The generic sleeve path on a real universe: positions strategies without stops.

On a full panel, legacy (positions) strategies batch on the fused kernels or the generic
path (:mod:`backtest.engine._generic`, engine v1's sleeve formula per asset). Neither
knows a tradable mask or corporate actions, so on a real universe
(:mod:`backtest.engine._universe`) :func:`universe_generic` feeds the generic path what
the per-bar kernel's sleeve accounting would use: positions from the adjusted view,
0 where an asset may not be held (``hold``), and each bar's total return on the raw
prices, ``split x (close + dividend) / close[t-1] - 1`` (the delisting return in the
close of the last listed bar, flat after it). The sleeve formula is the same, so the
numbers are :func:`~backtest.engine.simulate`'s (checked in the tests).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest import metrics as m
from backtest.data._bars import Bars
from backtest.engine._universe import kernel_inputs, strategy_bars


def universe_generic(
    bars: Bars,
    strategy_cls: type,
    frame: pd.DataFrame,
    cost: float,
    weights: NDArray[np.float64],
    periods_per_year: int,
    keep: NDArray[np.bool_] | None,
    chunk_size: int | None,
) -> tuple[pd.DataFrame, NDArray[np.float64] | None]:
    """``(metrics table, kept returns (n_bars, n_kept) or None)`` of every set of ``frame``."""
    from backtest.engine import _generic
    from backtest.engine._memory import reuse_freed_memory
    from backtest.engine._set_positions import block_positions, lanes_for

    ki = kernel_inputs(bars)
    view = strategy_bars(bars)
    close = np.ascontiguousarray(view.close.to_numpy(dtype=np.float64))
    n, a = close.shape
    k = len(frame)
    r = np.zeros((n, a))
    r[1:] = ki.split[1:] * (ki.close[1:] + ki.dividend[1:]) / ki.close[:-1] - 1.0
    r_assets = np.ascontiguousarray(r.T)
    hold = ki.hold
    columns = {c: frame[c].to_numpy() for c in frame.columns}
    blocks = block_positions(view, close, strategy_cls, columns, np.ascontiguousarray(close.T))

    def masked(lo: int, hi: int):  # type: ignore[no-untyped-def]
        per_asset = blocks(lo, hi)

        def asset(j: int) -> NDArray[np.float64]:
            pos = np.asarray(per_asset(j), dtype=np.float64)
            return np.where(hold[:, j, None], pos, 0.0)

        return asset

    with reuse_freed_memory():
        values, returns = _generic.evaluate_blocks(
            masked, a, n, k, r_assets, cost, weights, periods_per_year, keep,
            lanes=lanes_for(strategy_cls, k), block=chunk_size,
        )  # fmt: skip
    if keep is not None and returns is None:
        returns = np.empty((n, 0))
    table = pd.concat([frame, pd.DataFrame(values, columns=list(m.METRIC_NAMES))], axis=1)
    return table, returns
