"""The generic sleeve path on a real universe: positions strategies without stops.

On a full panel, legacy (positions) strategies batch on the fused kernels or the generic
path (:mod:`backtest.engine._generic`, engine v1's sleeve formula per asset). Neither
knows a tradable mask or corporate actions, so on a real universe
(:mod:`backtest.engine._universe`) :func:`universe_inputs` feeds the generic path what
the per-bar kernel's sleeve accounting would use: positions from the adjusted view,
0 where an asset may not be held (``hold``), and each bar's total return on the raw
prices, ``split x (close + dividend) / close[t-1] - 1`` (the delisting return in the
close of the last listed bar, flat after it). The sleeve formula is the same, so the
numbers are :func:`~backtest.engine.simulate`'s (checked in the tests).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from backtest.data._bars import Bars
from backtest.engine._universe import kernel_inputs, strategy_bars


def universe_inputs(
    bars: Bars,
) -> tuple[Bars, NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """``(view, close, r_assets, hold)`` for :func:`~backtest.engine._batch.generic_values`.

    The adjusted view the strategy reads and its closes ``(n_bars, n_assets)``, each
    asset's total returns ``(n_assets, n_bars)`` and the ``hold`` mask.
    """
    ki = kernel_inputs(bars)
    view = strategy_bars(bars)
    close = np.ascontiguousarray(view.close.to_numpy(dtype=np.float64))
    r = np.zeros(close.shape)
    r[1:] = ki.split[1:] * (ki.close[1:] + ki.dividend[1:]) / ki.close[:-1] - 1.0
    return view, close, np.ascontiguousarray(r.T), ki.hold
