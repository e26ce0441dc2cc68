"""Donchian channel breakout."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numba
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.strategies._base import (
    apply_per_column,
    batch_params,
    check_int,
    listed_batch,
)


@numba.njit(cache=True, nogil=True)
def _channel(
    close: NDArray[np.float64], lookback: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:  # pragma: no cover - compiled
    """Highest and lowest close of the ``lookback`` bars before t (NaN before ``lookback``)."""
    n = close.shape[0]
    upper = np.full(n, np.nan)
    lower = np.full(n, np.nan)
    # Monotone queues of bar numbers: O(n) whatever the lookback (max and min are exact,
    # so any order of comparisons gives the same channel).
    qmax = np.empty(n, np.int64)
    qmin = np.empty(n, np.int64)
    h0 = h1 = 0  # qmax[h0:h1]
    l0 = l1 = 0
    for t in range(n):
        if t >= lookback:
            while qmax[h0] < t - lookback:
                h0 += 1
            while qmin[l0] < t - lookback:
                l0 += 1
            upper[t] = close[qmax[h0]]
            lower[t] = close[qmin[l0]]
        c = close[t]
        while h1 > h0 and close[qmax[h1 - 1]] <= c:
            h1 -= 1
        qmax[h1] = t
        h1 += 1
        while l1 > l0 and close[qmin[l1 - 1]] >= c:
            l1 -= 1
        qmin[l1] = t
        l1 += 1
    return upper, lower


@numba.njit(cache=True, nogil=True)
def _breakout_kernel(
    close: NDArray[np.float64], lookback: int, long_short: bool
) -> NDArray[np.float64]:  # pragma: no cover - compiled; checked against a loop in the tests
    upper, lower = _channel(close, lookback)
    n = close.shape[0]
    out = np.zeros(n)
    pos = 0.0
    for t in range(lookback, n):
        if close[t] > upper[t]:
            pos = 1.0
        elif close[t] < lower[t]:
            pos = -1.0 if long_short else 0.0
        out[t] = pos
    return out


@numba.njit(cache=True, nogil=True)
def _last_at_least(
    close: NDArray[np.float64], sign: float
) -> NDArray[np.int64]:  # pragma: no cover - compiled
    """For each bar t, the last bar s < t with ``sign * close[s] >= sign * close[t]`` (-1: none).

    ``sign = 1``: the last close at least as high; ``-1``: at least as low. One pass with
    a stack of bars whose closes fall (rise) strictly: O(n).
    """
    n = close.shape[0]
    out = np.empty(n, np.int64)
    stack = np.empty(n, np.int64)
    top = 0
    for t in range(n):
        c = sign * close[t]
        while top > 0 and sign * close[stack[top - 1]] < c:
            top -= 1
        out[t] = stack[top - 1] if top > 0 else -1
        stack[top] = t
        top += 1
    return out


@numba.njit(cache=True, nogil=True)
def _breakout_batch(
    close: NDArray[np.float64],
    lookback: NDArray[np.int64],
    long_short: NDArray[np.bool_],
) -> NDArray[np.float64]:  # pragma: no cover - compiled; equal to the kernel in the tests
    """Positions ``(n_bars, k)`` of ``k`` sets, every breakout from two numbers per bar.

    A close breaks out above the channel of ``lookback`` bars (``close[t] > max(close[t -
    lookback : t])``) exactly when the last close at least as high is more than
    ``lookback`` bars back, and below it when the last close at least as low is. Those
    two bar numbers are found once per bar for every lookback (:func:`_last_at_least`),
    so each set and bar costs two integer comparisons: exact, as :func:`_channel`'s
    max and min.
    """
    n = close.shape[0]
    k = lookback.shape[0]
    high = _last_at_least(close, 1.0)
    low = _last_at_least(close, -1.0)
    down = np.where(long_short, -1.0, 0.0)  # a set's position after a downside breakout
    out = np.empty((n, k))
    pos = np.zeros(k)
    for t in range(n):
        h = high[t]
        lw = low[t]
        for i in range(k):
            w = lookback[i]
            if t >= w:  # the channel exists from bar lookback on
                if h < t - w:
                    pos[i] = 1.0
                elif lw < t - w:
                    pos[i] = down[i]
            out[t, i] = pos[i]
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

    @listed_batch
    def batch_positions(
        cls, close: NDArray[np.float64], params: Mapping[str, NDArray]
    ) -> NDArray[np.float64]:
        """Positions for many parameter sets in one compiled pass (see ``_breakout_batch``)."""
        lookback, long_short = batch_params(cls, params, "lookback", "long_short")
        bad = np.flatnonzero(lookback < 1)
        if len(bad):
            check_int("lookback", int(lookback[bad[0]]), 1)  # raises, naming the parameter
        close = np.ascontiguousarray(close, dtype=np.float64)
        return _breakout_batch(close, lookback, long_short)
