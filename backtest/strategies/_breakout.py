"""Donchian channel breakout."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numba
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.strategies._base import apply_per_column, as_param_array, check_int, n_sets


@numba.njit(cache=True, nogil=True)
def _breakout_kernel(
    close: NDArray[np.float64], lookback: int, long_short: bool
) -> NDArray[np.float64]:  # pragma: no cover - compiled; checked against a loop in the tests
    n = close.shape[0]
    out = np.zeros(n)
    pos = 0.0
    for t in range(lookback, n):
        upper = close[t - lookback]
        lower = close[t - lookback]
        for s in range(t - lookback + 1, t):
            upper = max(upper, close[s])
            lower = min(lower, close[s])
        if close[t] > upper:
            pos = 1.0
        elif close[t] < lower:
            pos = -1.0 if long_short else 0.0
        out[t] = pos
    return out


@dataclass(frozen=True, slots=True)
class Breakout:
    """Donchian breakout: follow a close that leaves the range of the previous bars.

    At the close of bar t the channel is the highest and lowest close of the
    ``lookback`` bars before t. A close above the channel goes long; a close below it
    goes flat (short when ``long_short``); inside the channel the position is held.
    Flat until ``lookback + 1`` bars exist.

    Args:
        lookback: Bars in the channel (>= 1).
        long_short: Go short on a downside breakout instead of flat.

    Raises:
        ConfigError: ``lookback < 1``, naming the parameter.
    """

    lookback: int = 55
    long_short: bool = False

    param_names: ClassVar[tuple[str, ...]] = ("lookback", "long_short")

    def __post_init__(self) -> None:
        object.__setattr__(self, "lookback", check_int("lookback", self.lookback, 1))

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        """Target positions: see the class docstring."""
        return apply_per_column(
            prices, lambda c: _breakout_kernel(c, self.lookback, bool(self.long_short))
        )

    @classmethod
    def batch_positions(
        cls, close: NDArray[np.float64], params: Mapping[str, NDArray]
    ) -> NDArray[np.float64]:
        """Positions for many parameter sets (one compiled pass each)."""
        k = n_sets(params)
        lookback = as_param_array(params, "lookback", k, 55).astype(np.int64)
        long_short = as_param_array(params, "long_short", k, False).astype(bool)
        out = np.empty((close.shape[0], k))
        for i in range(k):
            lb = check_int("lookback", int(lookback[i]), 1)
            out[:, i] = _breakout_kernel(close, lb, bool(long_short[i]))
        return out
