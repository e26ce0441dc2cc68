"""Inverse-volatility risk parity: a weights strategy with a compiled fast path, as a user would.

Rule (long only, every asset held): at the close of bar t, each asset's volatility is
the sample standard deviation of its last ``lookback`` close-to-close returns (closes
up to t only); its target weight is ``vol ** -power``, scaled so the weights sum to 1.
``power = 1`` is inverse-volatility risk parity, ``2`` inverse variance, ``0`` equal
weights. The calmer an asset, the more of the book it gets. Flat until ``lookback + 1``
closes exist.

It shows the contract of a weights strategy (README, "Writing a strategy"):

* ``inputs = "bars"``: ``positions`` and ``batch_weights`` receive the
  :class:`~backtest.data.Bars` (opens, highs, lows, closes, volumes), not just closes;
* ``output = "weights"``: the result is the book's target weights, used as given
  (``engine.weights`` is not applied; ``engine.rebalance`` and the limits are);
* the fast path ``batch_weights(bars, params)``: arrays of ``k`` parameter sets in,
  ``(n_bars, n_assets, k)`` weights out. What sets share is computed once: the
  volatilities once per distinct ``lookback`` (compiled loops over the bars), then each
  set's weights from them (compiled too), so a grid over ``power`` costs little more
  than one over ``lookback`` alone. ``positions`` calls the same two functions, so the
  two agree exactly (every search checks that on at least 8 sets, and logs the fast
  path's time per set against the time without it on its first batch).
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
def rolling_volatility(
    close: NDArray[np.float64], lookback: int
) -> NDArray[np.float64]:  # pragma: no cover
    """Each asset's sample standard deviation (``ddof=1``) of its last ``lookback`` returns.

    Row t uses the returns of bars ``t - lookback + 1 .. t`` (closes up to t); rows before
    ``lookback`` are NaN. Two passes over each window (its mean, then the squared
    deviations): exact to rounding even for short windows of nearly equal returns, where
    running sums of returns and squares lose digits. It costs ``lookback`` steps per bar,
    which is why the fast path computes it once per distinct ``lookback``.
    """
    n, a = close.shape
    r = np.full((n, a), np.nan)
    for t in range(1, n):
        for j in range(a):
            r[t, j] = close[t, j] / close[t - 1, j] - 1.0
    out = np.full((n, a), np.nan)
    for t in range(lookback, n):
        for j in range(a):
            mean = 0.0
            for i in range(t - lookback + 1, t + 1):
                mean += r[i, j]
            mean /= lookback
            ss = 0.0
            for i in range(t - lookback + 1, t + 1):
                ss += (r[i, j] - mean) ** 2
            out[t, j] = np.sqrt(ss / (lookback - 1))
    return out


@numba.njit(cache=True, nogil=True)
def weights_from_volatility(
    vol: NDArray[np.float64], power: float
) -> NDArray[np.float64]:  # pragma: no cover
    """``vol ** -power`` per row, scaled to sum to 1; a row with a NaN or zero vol is flat."""
    n, a = vol.shape
    out = np.zeros((n, a))
    for t in range(n):
        total = 0.0
        usable = True
        for j in range(a):
            v = vol[t, j]
            if not v > 0.0:  # NaN (warming up) or zero
                usable = False
                break
            total += v**-power
        if usable and total > 0.0:
            for j in range(a):
                out[t, j] = vol[t, j] ** -power / total
    return out


@dataclass(frozen=True)
class InverseVolatility:
    """Weights ``vol ** -power`` over every asset, summing to 1 (see the module docstring).

    Args:
        lookback: Returns in each volatility estimate (>= 2).
        power: How strongly calm assets are favoured (1: inverse volatility, 0: equal).
    """

    lookback: int = 63
    power: float = 1.0

    inputs: ClassVar[str] = "bars"
    output: ClassVar[str] = "weights"

    def __post_init__(self) -> None:
        if int(self.lookback) != self.lookback or self.lookback < 2:
            raise ValueError(f"lookback must be a whole number >= 2, got {self.lookback}")
        if not 0.0 <= self.power <= 4.0:
            raise ValueError(f"power must be between 0 and 4, got {self.power}")

    def positions(self, bars: Any) -> pd.DataFrame:
        """Target weights at every bar (closes up to t only; the input is not modified)."""
        close = bars.close
        vol = rolling_volatility(close.to_numpy(dtype=np.float64), int(self.lookback))
        weights = weights_from_volatility(vol, float(self.power))
        return pd.DataFrame(weights, index=close.index, columns=close.columns)

    @classmethod
    def batch_weights(cls, bars: Any, params: Mapping[str, NDArray[Any]]) -> NDArray[np.float64]:
        """Target weights of ``k`` sets, ``(n_bars, n_assets, k)``: the vols once per lookback."""
        lookback = np.asarray(params["lookback"]).astype(np.int64)
        k = len(lookback)
        power = np.asarray(params["power"], dtype=np.float64) if "power" in params else np.ones(k)
        for lb, pw in set(zip(lookback.tolist(), power.tolist(), strict=True)):
            cls(int(lb), float(pw))  # the constructor names a bad set
        close = np.ascontiguousarray(bars.close.to_numpy(dtype=np.float64))
        out = np.empty((close.shape[0], close.shape[1], k))
        for lb in np.unique(lookback):
            vol = rolling_volatility(close, int(lb))  # shared by every set with this lookback
            for i in np.flatnonzero(lookback == lb):
                out[:, :, i] = weights_from_volatility(vol, float(power[i]))
        return out
