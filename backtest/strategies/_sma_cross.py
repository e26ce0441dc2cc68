"""Moving-average crossover."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.errors import ConfigError
from backtest.strategies._base import (
    apply_per_column,
    batch_params,
    check_int,
    check_smaller,
    listed_batch,
    signed_positions,
)


def rolling_mean(close: NDArray[np.float64], window: int) -> NDArray[np.float64]:
    """Simple moving average of the last ``window`` closes; NaN for the first ``window-1`` bars.

    Computed from a cumulative sum, so the single and batched paths agree bit for bit.
    """
    n = close.shape[0]
    out = np.full(n, np.nan)
    if window > n:
        return out
    csum = np.concatenate(([0.0], np.cumsum(close)))
    out[window - 1 :] = (csum[window:] - csum[:-window]) / window
    return out


def _positions(
    fast_ma: NDArray[np.float64],
    slow_ma: NDArray[np.float64],
    long_short: bool | NDArray[np.bool_],
) -> NDArray[np.float64]:
    """Long while the fast average is above the slow one, short below it when ``long_short``."""
    with np.errstate(invalid="ignore"):
        return signed_positions(fast_ma > slow_ma, fast_ma < slow_ma, long_short)


@dataclass(frozen=True, slots=True)
class SmaCross:
    """Long while the fast simple moving average is above the slow one.

    At the close of bar t the strategy compares the ``fast``-bar and ``slow``-bar
    averages of closes up to t: long (1) when fast > slow, otherwise flat (0), or
    short (-1) when ``long_short`` and fast < slow. Flat until ``slow`` bars exist.

    Args:
        fast: Bars in the fast average (>= 1).
        slow: Bars in the slow average (> fast).
        long_short: Go short when the fast average is below the slow one.

    Raises:
        ConfigError: ``fast < 1`` or ``fast >= slow``; the message names the parameter.
    """

    fast: int = 10
    slow: int = 50
    long_short: bool = False

    param_names: ClassVar[tuple[str, ...]] = ("fast", "slow", "long_short")

    def __post_init__(self) -> None:
        fast = check_int("fast", self.fast, 1)
        slow = check_int("slow", self.slow, 2)
        check_smaller("fast", fast, "slow", slow)
        object.__setattr__(self, "fast", fast)
        object.__setattr__(self, "slow", slow)

    @property
    def warmup_bars(self) -> int:
        """Bars before the first possible position: the slow average needs ``slow`` closes."""
        return self.slow - 1

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        """Target positions: see the class docstring."""

        def one(close: NDArray[np.float64]) -> NDArray[np.float64]:
            return _positions(
                rolling_mean(close, self.fast), rolling_mean(close, self.slow), self.long_short
            )

        return apply_per_column(prices, one)

    @listed_batch
    def batch_positions(
        cls, close: NDArray[np.float64], params: Mapping[str, NDArray]
    ) -> NDArray[np.float64]:
        """Positions for many (fast, slow) pairs; each distinct window is averaged once."""
        fast, slow, long_short = batch_params(cls, params, "fast", "slow", "long_short")
        if np.any(fast < 1) or np.any(fast >= slow):
            bad = int(np.flatnonzero((fast < 1) | (fast >= slow))[0])
            raise ConfigError(
                f"strategy parameter 'fast' ({fast[bad]}) must be >= 1 and smaller than "
                f"'slow' ({slow[bad]})",
                key="fast",
            )
        windows = np.union1d(fast, slow)
        means = np.column_stack([rolling_mean(close, int(w)) for w in windows])
        fast_ma = means[:, np.searchsorted(windows, fast)]
        slow_ma = means[:, np.searchsorted(windows, slow)]
        return _positions(fast_ma, slow_ma, long_short)
