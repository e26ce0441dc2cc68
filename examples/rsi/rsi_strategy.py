"""An RSI mean-reversion strategy written as a user would: one module, no package edits.

Rule (per asset, long only): at the close of bar t compute Wilder's RSI over ``period``
closes; go long when it falls below ``lower`` (oversold), exit when it rises above
``upper``, hold in between. Flat until ``period + 1`` closes exist.

It shows the whole contract (README, "Writing a strategy"):

* ``positions(prices)``: wide closes in, a frame of the same shape out, values in
  [-1, 1]; row t uses closes up to t only; the input is never modified;
* parameters from the dataclass fields (checked before a run: an unknown key, a
  missing value or a wrong type is named);
* the fast path ``batch_positions(close, params)``: one asset's closes and arrays of
  ``k`` parameter sets in, ``(n_bars, k)`` positions out. It computes one RSI per
  distinct ``period`` and runs the entry / exit state machine of every set, compiled
  (numba), writing each set's positions in order (a column-major array, which the
  engine reads fastest); ``positions`` calls the same functions, so the two agree
  exactly (every search and walk-forward checks that on a few sets before relying
  on it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd
from numpy.typing import NDArray


@numba.njit(cache=True, nogil=True)
def rsi(close: NDArray[np.float64], period: int) -> NDArray[np.float64]:  # pragma: no cover
    """Wilder's RSI of one asset's closes (NaN for the first ``period`` bars).

    Average gain and loss are exponential averages with weight ``1 / period`` started
    at the first change (pandas' ``ewm(alpha=1/period, adjust=False)``).
    """
    n = close.shape[0]
    out = np.full(n, np.nan)
    alpha = 1.0 / period
    gain = 0.0
    loss = 0.0
    for t in range(1, n):
        change = close[t] - close[t - 1]
        up = change if change > 0.0 else 0.0
        down = -change if change < 0.0 else 0.0
        if t == 1:
            gain, loss = up, down
        else:
            gain = (1.0 - alpha) * gain + alpha * up
            loss = (1.0 - alpha) * loss + alpha * down
        if t >= period:
            out[t] = 100.0 if loss == 0.0 else 100.0 - 100.0 / (1.0 + gain / loss)
    return out


@numba.njit(cache=True, nogil=True)
def hold(
    table: NDArray[np.float64],
    which: NDArray[np.int64],
    lower: NDArray[np.float64],
    upper: NDArray[np.float64],
) -> NDArray[np.float64]:  # pragma: no cover - compiled
    """Long from an RSI below ``lower`` until one above ``upper``: ``(n_bars, k)`` positions.

    ``table`` holds one RSI row per distinct period, ``(n_periods, n_bars)``; set ``i``
    reads row ``which[i]`` with thresholds ``lower[i]`` and ``upper[i]``. A state
    machine over the bars (the part numpy cannot do without several passes), set after
    set, each set's positions written in order: the result is column-major, which the
    engine reads fastest (it takes row-major arrays too).
    """
    n = table.shape[1]
    k = which.shape[0]
    out = np.empty((k, n))  # a row per set ...
    for i in range(k):
        x = table[which[i]]
        lo = lower[i]
        up = upper[i]
        state = 0.0
        for t in range(n):
            if x[t] < lo:
                state = 1.0
            elif x[t] > up:
                state = 0.0
            out[i, t] = state
    return out.T  # ... seen as (n_bars, k)


@dataclass(frozen=True)
class RsiReversion:
    """Buy oversold, sell when recovered.

    Args:
        period: Bars in the RSI (>= 2).
        lower: Enter long when the RSI is below this (0 < lower < upper).
        upper: Exit when the RSI is above this (upper < 100).
    """

    period: int = 14
    lower: float = 30.0
    upper: float = 70.0

    def __post_init__(self) -> None:
        if self.period < 2:
            raise ValueError(f"period must be >= 2, got {self.period}")
        if not 0.0 < self.lower < self.upper < 100.0:
            raise ValueError(f"need 0 < lower < upper < 100, got {self.lower}, {self.upper}")

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        """Target positions (1 long, 0 flat) per bar and asset."""
        close = prices.to_numpy(dtype=np.float64)
        out = np.empty(close.shape)
        one = np.zeros(1, dtype=np.int64)
        lower, upper = np.array([self.lower]), np.array([self.upper])
        for j in range(close.shape[1]):
            values = rsi(np.ascontiguousarray(close[:, j]), self.period)
            out[:, j] = hold(values[None], one, lower, upper)[:, 0]
        return pd.DataFrame(out, index=prices.index, columns=prices.columns)

    @classmethod
    def batch_positions(
        cls, close: NDArray[np.float64], params: Mapping[str, NDArray]
    ) -> NDArray[np.float64]:
        """Positions of one asset for ``k`` parameter sets: shape ``(n_bars, k)``."""
        k = len(next(iter(params.values())))
        period = np.asarray(params.get("period", np.full(k, 14))).astype(np.int64)
        lower = np.asarray(params.get("lower", np.full(k, 30.0)), dtype=np.float64)
        upper = np.asarray(params.get("upper", np.full(k, 70.0)), dtype=np.float64)
        bad = (period < 2) | ~((lower > 0.0) & (lower < upper) & (upper < 100.0))
        if bad.any():  # the constructor's checks, before any work: it names the problem
            i = int(np.argmax(bad))
            cls(int(period[i]), float(lower[i]), float(upper[i]))
        periods, which = np.unique(period, return_inverse=True)
        table = np.stack([rsi(close, int(p)) for p in periods])  # (n_periods, n_bars)
        return hold(table, which.ravel().astype(np.int64), lower, upper)
