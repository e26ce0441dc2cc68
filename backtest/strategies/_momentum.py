"""Time-series momentum."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.strategies._base import (
    apply_per_column,
    batch_params,
    check_int,
    listed_batch,
    signed_positions,
)


def _trailing_return(close: NDArray[np.float64], lookback: int, skip: int) -> NDArray[np.float64]:
    """``close[t-skip] / close[t-skip-lookback] - 1``; NaN while history is short."""
    n = close.shape[0]
    out = np.full(n, np.nan)
    start = lookback + skip
    if start < n:
        out[start:] = close[start - skip : n - skip] / close[: n - start] - 1.0
    return out


def _positions(
    signal: NDArray[np.float64], long_short: bool | NDArray[np.bool_]
) -> NDArray[np.float64]:
    """Long on a positive trailing return, short on a negative one when ``long_short``."""
    with np.errstate(invalid="ignore"):
        return signed_positions(signal > 0, signal < 0, long_short)


@dataclass(frozen=True, slots=True)
class Momentum:
    """Time-series momentum: long an asset whose own past return is positive.

    At the close of bar t the signal is the return from ``t-skip-lookback`` to
    ``t-skip`` (``skip`` ignores the most recent bars, which tend to reverse). Long
    when the signal is positive; short when it is negative and ``long_short``;
    otherwise flat. Flat until ``lookback + skip`` bars exist.

    Args:
        lookback: Bars over which the past return is measured (>= 1).
        skip: Most recent bars left out of the measurement (>= 0).
        long_short: Go short on a negative signal.

    Raises:
        ConfigError: ``lookback < 1`` or ``skip < 0``, naming the parameter.
    """

    lookback: int = 126
    skip: int = 0
    long_short: bool = False

    param_names: ClassVar[tuple[str, ...]] = ("lookback", "skip", "long_short")

    def __post_init__(self) -> None:
        object.__setattr__(self, "lookback", check_int("lookback", self.lookback, 1))
        object.__setattr__(self, "skip", check_int("skip", self.skip, 0))

    @property
    def warmup_bars(self) -> int:
        """Bars before the first possible position: the signal reads ``lookback + skip`` back."""
        return self.lookback + self.skip

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        """Target positions: see the class docstring."""
        return apply_per_column(
            prices,
            lambda c: _positions(_trailing_return(c, self.lookback, self.skip), self.long_short),
        )

    @listed_batch
    def batch_positions(
        cls, close: NDArray[np.float64], params: Mapping[str, NDArray]
    ) -> NDArray[np.float64]:
        """Positions for many (lookback, skip) pairs; each distinct pair is computed once."""
        lookback, skip, long_short = batch_params(cls, params, "lookback", "skip", "long_short")
        bad = np.flatnonzero((lookback < 1) | (skip < 0))
        if bad.size:  # the constructor's check names the parameter
            Momentum(int(lookback[bad[0]]), int(skip[bad[0]]))
        pairs, inverse = np.unique(np.column_stack([lookback, skip]), axis=0, return_inverse=True)
        signals = np.column_stack([_trailing_return(close, int(lb), int(sk)) for lb, sk in pairs])
        return _positions(signals[:, inverse.ravel()], long_short)
