"""Z-score mean reversion."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numba
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.errors import ConfigError
from backtest.strategies._base import (
    apply_per_column,
    batch_params,
    check_float,
    check_int,
    check_smaller,
    listed_batch,
)


@numba.njit(cache=True, nogil=True, inline="always")
def _zscore(x: float, mean: float, var: float, lookback: int) -> float:  # pragma: no cover
    std = np.sqrt(var / (lookback - 1))
    return (x - mean) / std if std > 0.0 else np.nan


@numba.njit(cache=True, nogil=True)
def _zscores(
    close: NDArray[np.float64], lookback: int
) -> NDArray[np.float64]:  # pragma: no cover - compiled; checked against a loop in the tests
    """The z-score (close - mean) / std over the last ``lookback`` closes; NaN where undefined.

    Each bar's mean and variance are sums over its own window, added in order (no
    running sums, whose rounding would drift). Four bars are summed side by side, each
    in its own accumulator, so the additions overlap: the same sums, four times faster.
    """
    n = close.shape[0]
    out = np.full(n, np.nan)
    t = lookback - 1
    while t + 3 < n:  # bars t .. t + 3
        lo = t - lookback + 1
        m0 = m1 = m2 = m3 = 0.0
        for s in range(lo, t + 1):
            m0 += close[s]
            m1 += close[s + 1]
            m2 += close[s + 2]
            m3 += close[s + 3]
        m0 /= lookback
        m1 /= lookback
        m2 /= lookback
        m3 /= lookback
        v0 = v1 = v2 = v3 = 0.0
        for s in range(lo, t + 1):
            v0 += (close[s] - m0) ** 2
            v1 += (close[s + 1] - m1) ** 2
            v2 += (close[s + 2] - m2) ** 2
            v3 += (close[s + 3] - m3) ** 2
        out[t] = _zscore(close[t], m0, v0, lookback)
        out[t + 1] = _zscore(close[t + 1], m1, v1, lookback)
        out[t + 2] = _zscore(close[t + 2], m2, v2, lookback)
        out[t + 3] = _zscore(close[t + 3], m3, v3, lookback)
        t += 4
    for u in range(t, n):  # the last bars, one at a time
        mean = 0.0
        for s in range(u - lookback + 1, u + 1):
            mean += close[s]
        mean /= lookback
        var = 0.0
        for s in range(u - lookback + 1, u + 1):
            var += (close[s] - mean) ** 2
        out[u] = _zscore(close[u], mean, var, lookback)
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _step(pos: float, z: float, entry_z: float, exit_z: float) -> float:  # pragma: no cover
    """One bar of the entry / exit rule (a NaN z holds the position)."""
    if z == z:
        if (pos > 0.0 and z >= -exit_z) or (pos < 0.0 and z <= exit_z):
            pos = 0.0
        if pos == 0.0:
            if z < -entry_z:
                pos = 1.0
            elif z > entry_z:
                pos = -1.0
    return pos


@numba.njit(cache=True, nogil=True)
def _mean_reversion_kernel(
    close: NDArray[np.float64], lookback: int, entry_z: float, exit_z: float
) -> NDArray[np.float64]:  # pragma: no cover - compiled; checked against a loop in the tests
    z = _zscores(close, lookback)
    n = close.shape[0]
    out = np.zeros(n)
    pos = 0.0
    for t in range(n):
        pos = _step(pos, z[t], entry_z, exit_z)
        out[t] = pos
    return out


@numba.njit(cache=True, nogil=True)
def _mean_reversion_batch(
    ztab: NDArray[np.float64],
    rows: NDArray[np.int64],
    entry_z: NDArray[np.float64],
    exit_z: NDArray[np.float64],
) -> NDArray[np.float64]:  # pragma: no cover - compiled; equal to the kernel in the tests
    """Positions ``(n_bars, k)`` of ``k`` sets from z-score columns (one per lookback).

    ``ztab`` is ``(n_bars, n_lookbacks)``: a bar's z-scores share cache lines.
    """
    n = ztab.shape[0]
    k = rows.shape[0]
    out = np.empty((n, k))
    pos = np.zeros(k)
    for t in range(n):
        for i in range(k):
            pos[i] = _step(pos[i], ztab[t, rows[i]], entry_z[i], exit_z[i])
            out[t, i] = pos[i]
    return out


@dataclass(frozen=True, slots=True)
class MeanReversion:
    """Fade large deviations from the moving average, measured in standard deviations.

    At the close of bar t, z = (close - mean) / std over the last ``lookback`` closes
    (sample std). Flat: go long when z < -entry_z, short when z > entry_z. Long: exit
    once z >= -exit_z. Short: exit once z <= exit_z. An exit and an opposite entry may
    happen on the same bar. Flat until ``lookback`` bars exist.

    Args:
        lookback: Bars in the mean and standard deviation (>= 2).
        entry_z: Deviation, in standard deviations, that opens a position (> 0).
        exit_z: Deviation at which the position is closed (0 <= exit_z < entry_z).

    Raises:
        ConfigError: a parameter out of range, naming it.
    """

    lookback: int = 20
    entry_z: float = 2.0
    exit_z: float = 0.5

    param_names: ClassVar[tuple[str, ...]] = ("lookback", "entry_z", "exit_z")

    def __post_init__(self) -> None:
        object.__setattr__(self, "lookback", check_int("lookback", self.lookback, 2))
        entry = check_float("entry_z", self.entry_z, minimum=0.0)
        exit_ = check_float("exit_z", self.exit_z, minimum=0.0)
        if entry <= 0:
            raise ConfigError("strategy parameter 'entry_z' must be > 0", key="entry_z")
        check_smaller("exit_z", exit_, "entry_z", entry)
        object.__setattr__(self, "entry_z", entry)
        object.__setattr__(self, "exit_z", exit_)

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        """Target positions: see the class docstring."""
        return apply_per_column(
            prices,
            lambda c: _mean_reversion_kernel(c, self.lookback, self.entry_z, self.exit_z),
        )

    @classmethod
    def param_arrays(
        cls, params: Mapping[str, NDArray]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
        """``lookback, entry_z, exit_z`` of ``k`` sets, checked (the first bad one named)."""
        lookback, entry, exit_ = batch_params(cls, params, "lookback", "entry_z", "exit_z")
        bad = np.flatnonzero(
            (lookback < 2)
            | ~np.isfinite(entry)
            | ~np.isfinite(exit_)
            | (entry <= 0)
            | (exit_ < 0)
            | (exit_ >= entry)
        )
        if len(bad):  # the constructor names the parameter
            i = int(bad[0])
            MeanReversion(int(lookback[i]), float(entry[i]), float(exit_[i]))
        return lookback, entry, exit_

    @listed_batch
    def batch_positions(
        cls, close: NDArray[np.float64], params: Mapping[str, NDArray]
    ) -> NDArray[np.float64]:
        """Positions for many parameter sets: one z-score row per distinct lookback."""
        lookback, entry, exit_ = cls.param_arrays(params)
        windows, rows = np.unique(lookback, return_inverse=True)
        close = np.ascontiguousarray(close, dtype=np.float64)
        ztab = np.stack([_zscores(close, int(w)) for w in windows], axis=1)
        return _mean_reversion_batch(ztab, rows.astype(np.int64).ravel(), entry, exit_)
