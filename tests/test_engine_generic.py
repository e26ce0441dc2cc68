"""The generic batched path (engine/_generic.py) against single backtests, every shape."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.engine import _fused, simulate, simulate_batch
from backtest.metrics import METRIC_NAMES
from backtest.strategies import MeanReversion
from tests import synthetic


def gbm(n_bars: int, n_assets: int, seed: int = 21) -> pd.DataFrame:
    return synthetic.gbm(n_bars, n_assets, seed, drift=0.0001, vol=0.015, start="2011-01-03")


class Scaled(MeanReversion):
    """Fractional positions with NaN warm-up and sign flips: the general case."""

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        base = super().positions(prices)
        z = (prices - prices.rolling(self.lookback).mean()) / prices.rolling(self.lookback).std()
        return (base * 0.5 - np.tanh(z) * 0.5).clip(-1, 1)

    @classmethod
    def batch_positions(cls, close, params):  # type: ignore[no-untyped-def]
        k = len(params["lookback"])
        frame = pd.DataFrame({"A": close})
        return np.column_stack(
            [
                cls(
                    int(params["lookback"][i]),
                    float(params["entry_z"][i]),
                    float(params["exit_z"][i]),
                )
                .positions(frame)["A"]
                .to_numpy()
                for i in range(k)
            ]
        )


class ScaledColumnMajor(Scaled):
    """The same positions, each set's bars in order (a column-major array)."""

    @classmethod
    def batch_positions(cls, close, params):  # type: ignore[no-untyped-def]
        return np.asfortranarray(super().batch_positions(close, params))


class ScaledStrided(Scaled):
    """The same positions as a strided view (neither row- nor column-major)."""

    @classmethod
    def batch_positions(cls, close, params):  # type: ignore[no-untyped-def]
        pos = super().batch_positions(close, params)
        wide = np.repeat(pos, 2, axis=1)
        return wide[:, ::2]


SETS = pd.DataFrame(
    {
        "lookback": [5, 20, 20, 60, 3000],
        "entry_z": [1.0, 1.5, 2.0, 1.2, 2.0],
        "exit_z": [0.0, 0.5, 0.2, 1.0, 0.5],
    }
)


_same = synthetic.assert_same_metrics


@pytest.mark.parametrize("cls", [Scaled, ScaledColumnMajor, ScaledStrided],
                         ids=["row-major", "column-major", "strided"])  # fmt: skip
@pytest.mark.parametrize("serial", [True, False], ids=["serial", "parallel"])
@pytest.mark.parametrize(
    ("n_assets", "engine", "chunk"),
    [
        (1, {"fee_bps": 10.0}, None),
        (1, {"slippage_bps": 30.0}, 2),
        (3, {"fee_bps": 5.0, "weights": {"S0": 0.6, "S1": 0.3, "S2": 0.1}}, None),
        (4, {"fee_bps": 20.0, "periods_per_year": 52}, 3),
    ],
    ids=["1-asset", "1-asset-chunks", "3-weighted", "4-assets-chunks"],
)
def test_generic_metrics_and_kept_returns_equal_simulate(
    n_assets, engine, chunk, serial, cls, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(_fused, "SERIAL", serial)
    monkeypatch.setattr(_fused, "MIN_PARALLEL_SETS", 1)
    prices = gbm(700, n_assets)
    keep = [True, False, True, False, True]
    batch = simulate_batch(prices, cls, SETS, keep_returns=keep, chunk_size=chunk, **engine)
    assert batch.returns is not None and batch.returns.shape == (700, 3)
    kept = 0
    for i, params in enumerate(SETS.to_dict("records")):
        single = simulate(prices, Scaled(**params), **engine)
        _same(batch.metrics.iloc[i], single.metrics)
        if keep[i]:
            np.testing.assert_array_equal(batch.returns[:, kept], single.returns.to_numpy())
            kept += 1


def test_a_search_on_the_generic_path_equals_simulate_batch() -> None:
    """A search's evaluator calls the generic path directly (no frames per batch):
    the same metrics and kept returns as simulate_batch, bit for bit."""
    from backtest.search import StrategyEvaluator

    prices = gbm(700, 3)
    engine = {"fee_bps": 5.0, "weights": {"S0": 0.6, "S1": 0.3, "S2": 0.1}}
    keep = np.array([True, False, True, False, True])
    evaluator = StrategyEvaluator(prices, Scaled, **engine)
    names, values, kept = evaluator.evaluate_columns(
        {c: SETS[c].to_numpy() for c in SETS.columns}, keep=keep
    )
    assert evaluator._generic_inputs() is not None  # the direct path was taken
    batch = simulate_batch(prices, Scaled, SETS, keep_returns=keep, **engine)
    assert names == list(METRIC_NAMES)
    np.testing.assert_array_equal(values, batch.metrics[list(METRIC_NAMES)].to_numpy())
    np.testing.assert_array_equal(kept, batch.returns)
