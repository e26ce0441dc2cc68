"""Inverse-volatility risk parity: a weights strategy with a compiled fast path, as a user would.

Rule (long only, every asset held): at the close of bar t, each asset's volatility is
the sample standard deviation of its last ``lookback`` close-to-close returns (closes
up to t only); its target weight is ``1 / vol``, scaled so the weights sum to 1. The
calmer an asset, the more of the book it gets. Flat until ``lookback + 1`` closes exist.

It shows the contract of a weights strategy (README, "Writing a strategy"):

* ``inputs = "bars"``: ``positions`` and ``batch_weights`` receive the
  :class:`~backtest.data.Bars` (opens, highs, lows, closes, volumes), not just closes;
* ``output = "weights"``: the result is the book's target weights, used as given
  (``engine.weights`` is not applied; ``engine.rebalance`` and the limits are);
* the fast path ``batch_weights(bars, params)``: arrays of ``k`` parameter sets in,
  ``(n_bars, n_assets, k)`` weights out. The weights are computed once per distinct
  ``lookback`` by one compiled loop (numba) and shared by every set with that
  ``lookback``; ``positions`` calls the same function, so the two agree exactly (every
  search checks that on at least 8 sets, and logs the fast path's time per set
  against ``positions``' on its first batch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numba
import numpy as np
import pandas as pd
from numpy.typing import NDArray


@numba.njit(cache=True, nogil=True)
def inverse_volatility(
    close: NDArray[np.float64], lookback: int
) -> NDArray[np.float64]:  # pragma: no cover
    """Target weights ``(n_bars, n_assets)``: ``1 / vol`` of each asset, summing to 1.

    ``vol`` at bar t is the sample standard deviation (``ddof=1``) of the returns of
    bars ``t - lookback + 1 .. t``; rows before ``lookback`` (and rows where an asset's
    volatility is zero) are all 0: flat.
    """
    n, a = close.shape
    out = np.zeros((n, a))
    inv = np.empty(a)
    for t in range(lookback, n):
        total = 0.0
        for j in range(a):
            mean = 0.0
            for i in range(t - lookback + 1, t + 1):
                mean += close[i, j] / close[i - 1, j] - 1.0
            mean /= lookback
            var = 0.0
            for i in range(t - lookback + 1, t + 1):
                d = close[i, j] / close[i - 1, j] - 1.0 - mean
                var += d * d
            vol = np.sqrt(var / (lookback - 1))
            inv[j] = 1.0 / vol if vol > 0.0 else 0.0
            total += inv[j]
        if total > 0.0 and np.all(inv > 0.0):
            for j in range(a):
                out[t, j] = inv[j] / total
    return out


@dataclass(frozen=True)
class InverseVolatility:
    """Inverse-volatility weights over every asset, summing to 1 (see the module docstring).

    Args:
        lookback: Returns in each volatility estimate (>= 2).
    """

    lookback: int = 63

    inputs: ClassVar[str] = "bars"
    output: ClassVar[str] = "weights"

    def __post_init__(self) -> None:
        if int(self.lookback) != self.lookback or self.lookback < 2:
            raise ValueError(f"lookback must be a whole number >= 2, got {self.lookback}")

    def positions(self, bars: Any) -> pd.DataFrame:
        """Target weights at every bar (closes up to t only; the input is not modified)."""
        close = bars.close
        weights = inverse_volatility(close.to_numpy(dtype=np.float64), int(self.lookback))
        return pd.DataFrame(weights, index=close.index, columns=close.columns)

    @classmethod
    def batch_weights(cls, bars: Any, params: Mapping[str, NDArray[Any]]) -> NDArray[np.float64]:
        """Target weights of ``k`` sets, ``(n_bars, n_assets, k)``: once per distinct lookback."""
        lookback = np.asarray(params["lookback"]).astype(np.int64)
        for value in np.unique(lookback):
            cls(int(value))  # the constructor names a bad one
        close = np.ascontiguousarray(bars.close.to_numpy(dtype=np.float64))
        out = np.empty((close.shape[0], close.shape[1], len(lookback)))
        for value in np.unique(lookback):
            out[:, :, lookback == value] = inverse_volatility(close, int(value))[:, :, None]
        return out
