"""Seeded random-walk prices, seeded target weights and exact metric comparisons shared by the
engine and search tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from backtest.metrics import METRIC_NAMES

#: Metrics summed in another order by another path: equal to rounding, not to the bit.
ORDER_DEPENDENT = {"exposure", "turnover"}


def gbm(
    n_bars: int,
    n_assets: int,
    seed: int,
    *,
    drift: float = 0.0002,
    vol: float = 0.012,
    start: str = "2015-01-02",
    prefix: str = "S",
) -> pd.DataFrame:
    """Closes of ``n_assets`` geometric random walks from 100 on business days.

    Columns ``{prefix}0, {prefix}1, ...``; log steps ``N(drift, vol)`` from ``seed``.
    """
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(drift, vol, (n_bars, n_assets)), axis=0))
    index = pd.bdate_range(start, periods=n_bars)
    return pd.DataFrame(close, index=index, columns=[f"{prefix}{j}" for j in range(n_assets)])


@dataclass(frozen=True)
class BlockWeights:
    """Seeded target weights, constant over blocks of ``block`` bars (long, short, levered).

    They ignore prices (the same on raw and adjusted prices), ``scale`` bounds each
    weight, and about 30% are flat spells. Each block is drawn from its own generator,
    so a prefix of the bars gets the same weights (the look-ahead check every run
    makes passes).
    """

    seed: int = 0
    block: int = 7
    scale: float = 0.8
    output: ClassVar[str] = "weights"

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        n, a = prices.shape
        draws = np.empty((n // self.block + 1, a))
        for b in range(len(draws)):  # a generator per block: a prefix sees the same blocks
            rng = np.random.default_rng([self.seed, b])
            draws[b] = rng.uniform(-self.scale, self.scale, size=a)
            draws[b, rng.random(a) < 0.3] = 0.0  # flat spells
        values = np.repeat(draws, self.block, axis=0)[:n]
        return pd.DataFrame(values, index=prices.index, columns=prices.columns)


def assert_same_metrics(row: pd.Series, expected: dict[str, float]) -> None:
    """Every metric equal: exactly, or to 1e-12 where summation order may differ."""
    for name in METRIC_NAMES:
        got, want = float(row[name]), expected[name]
        if name in ORDER_DEPENDENT:
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15, err_msg=name)
        elif np.isnan(want):
            assert np.isnan(got), name
        else:
            assert got == want, f"{name}: {got!r} != {want!r}"
