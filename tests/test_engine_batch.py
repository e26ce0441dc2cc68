"""The batched engine (fused kernels and the generic path) against single backtests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest import metrics
from backtest.engine import _fused, simulate, simulate_batch
from backtest.engine._fused_stats import finish_growth, pairwise_sums, return_metrics
from backtest.errors import ConfigError
from backtest.metrics import METRIC_NAMES
from backtest.strategies import Breakout, BuyAndHold, MeanReversion, Momentum, SmaCross
from tests import synthetic

# Summed in another order than simulate(): equal up to rounding, not bit for bit.


def gbm(n_bars: int, n_assets: int, seed: int = 7) -> pd.DataFrame:
    return synthetic.gbm(n_bars, n_assets, seed)


assert_same_metrics = synthetic.assert_same_metrics


SMA_SETS = [
    {"fast": 5, "slow": 50, "long_short": False},
    {"fast": 10, "slow": 100, "long_short": True},
    {"fast": 1, "slow": 2, "long_short": True},
    {"fast": 20, "slow": 5000, "long_short": False},  # never warm: flat
]
MOMENTUM_SETS = [
    {"lookback": 20, "skip": 0, "long_short": False},
    {"lookback": 126, "skip": 5, "long_short": True},
    {"lookback": 1, "skip": 0, "long_short": True},
    {"lookback": 600, "skip": 21, "long_short": False},
]
CASES = [
    pytest.param(SmaCross, SMA_SETS, 1, {}, id="sma-1-asset"),
    pytest.param(SmaCross, SMA_SETS, 3, {"fee_bps": 7.0, "slippage_bps": 3.0}, id="sma-3-assets"),
    pytest.param(
        SmaCross,
        SMA_SETS,
        3,
        {"fee_bps": 10.0, "weights": {"S0": 0.5, "S1": 0.3, "S2": 0.2}},
        id="sma-weighted",
    ),
    pytest.param(Momentum, MOMENTUM_SETS, 1, {"fee_bps": 10.0}, id="momentum-1-asset"),
    # one side for every set: the table kernels' long-short and long-only loops (mixed
    # sides read each set's at run time)
    pytest.param(
        SmaCross,
        [{**s, "long_short": True} for s in SMA_SETS],
        2,
        {"fee_bps": 10.0},
        id="sma-all-long-short",
    ),
    pytest.param(
        Momentum,
        [{**s, "long_short": False} for s in MOMENTUM_SETS],
        2,
        {"fee_bps": 10.0},
        id="momentum-all-long-only",
    ),
    pytest.param(
        Momentum,
        MOMENTUM_SETS,
        4,
        {"slippage_bps": 25.0, "periods_per_year": 52},
        id="momentum-4-assets",
    ),
]


@pytest.mark.parametrize(("cls", "sets", "n_assets", "engine"), CASES)
@pytest.mark.parametrize("table", [True, False], ids=["signal-table", "on-the-fly"])
def test_fused_metrics_and_returns_equal_simulate(cls, sets, n_assets, engine, table, monkeypatch):
    if not table:
        monkeypatch.setattr(_fused, "TABLE_BUDGET_BYTES", 0)
    prices = gbm(700, n_assets)
    batch = simulate_batch(prices, cls, sets, keep_returns=True, **engine)
    assert list(batch.metrics.columns) == [*sets[0], *METRIC_NAMES]
    assert batch.returns is not None and batch.returns.shape == (len(prices), len(sets))
    for i, params in enumerate(sets):
        single = simulate(prices, cls(**params), **engine)
        assert_same_metrics(batch.metrics.iloc[i], single.metrics)
        np.testing.assert_array_equal(batch.returns[:, i], single.returns.to_numpy())


def plain_sma_backtest(close: np.ndarray, fast: int, slow: int, cost: float) -> np.ndarray:
    """A per-bar loop written from the engine's documented conventions."""
    rets, prev = [0.0], 0.0
    for t in range(len(close)):
        pos = 0.0
        window = close[max(t - slow + 1, 0) : t + 1]
        if t >= slow - 1 and window[-fast:].mean() > window.mean():
            pos = 1.0
        r = close[t] / close[t - 1] - 1.0 if t else 0.0
        ret = (1 + prev * r) * (1 - cost * abs(pos - prev)) - 1
        if t:
            rets.append(ret)
        else:
            rets[0] = ret
        prev = pos
    return np.array(rets)


def test_fused_sma_matches_a_plain_loop():
    prices = gbm(400, 1, seed=3)
    batch = simulate_batch(
        prices, SmaCross, [{"fast": 3, "slow": 30}], fee_bps=10.0, keep_returns=True
    )
    expected = plain_sma_backtest(prices["S0"].to_numpy(), 3, 30, 0.001)
    np.testing.assert_allclose(batch.returns[:, 0], expected, rtol=0, atol=1e-13)
    row = batch.metrics.iloc[0]
    np.testing.assert_allclose(row["sharpe_ratio"], metrics.sharpe_ratio(expected), rtol=1e-9)
    np.testing.assert_allclose(row["max_drawdown"], metrics.max_drawdown(expected), rtol=1e-9)


@pytest.mark.parametrize(
    ("cls", "sets"),
    [
        (
            MeanReversion,
            [
                {"lookback": 20, "entry_z": 1.5, "exit_z": 0.2},
                {"lookback": 5, "entry_z": 1.0, "exit_z": 0.0},
            ],
        ),
        (Breakout, [{"lookback": 20, "long_short": True}, {"lookback": 55}]),
        (BuyAndHold, [{}]),
    ],
    ids=["mean-reversion", "breakout", "buy-and-hold"],
)
def test_batched_builtins_equal_simulate(cls, sets):
    prices = gbm(500, 2, seed=11)
    batch = simulate_batch(
        prices,
        cls,
        pd.DataFrame(sets).fillna({"long_short": False}) if sets != [{}] else [{}],
        fee_bps=5.0,
        keep_returns=[True] * len(sets),
    )
    for i, params in enumerate(sets):
        single = simulate(prices, cls(**params), fee_bps=5.0)
        assert_same_metrics(batch.metrics.iloc[i], single.metrics)
        np.testing.assert_array_equal(batch.returns[:, i], single.returns.to_numpy())


def test_subclass_takes_the_generic_path():
    class Contrarian(SmaCross):
        def positions(self, prices):
            return -super().positions(prices)

        @classmethod
        def batch_positions(cls, close, params):
            return -SmaCross.batch_positions(close, params)

    prices = gbm(300, 1)
    batch = simulate_batch(prices, Contrarian, [{"fast": 5, "slow": 20}])
    single = simulate(prices, Contrarian(5, 20))
    assert_same_metrics(batch.metrics.iloc[0], single.metrics)


def test_keep_returns_mask_keeps_only_those_columns():
    prices = gbm(300, 2)
    sets = SMA_SETS[:3]
    batch = simulate_batch(prices, SmaCross, sets, keep_returns=[False, True, True])
    assert batch.returns.shape == (300, 2)
    np.testing.assert_array_equal(
        batch.returns[:, 0], simulate(prices, SmaCross(**sets[1])).returns.to_numpy()
    )
    with pytest.raises(ConfigError, match="keep_returns"):
        simulate_batch(prices, SmaCross, sets, keep_returns=[True])


def test_invalid_set_is_named():
    prices = gbm(100, 1)
    with pytest.raises(ConfigError, match="'fast' \\(30\\)") as info:
        simulate_batch(prices, SmaCross, [{"fast": 5, "slow": 10}, {"fast": 30, "slow": 20}])
    assert info.value.key == "fast"
    with pytest.raises(ConfigError, match="lookback"):
        simulate_batch(prices, Momentum, [{"lookback": 0}])


@pytest.mark.parametrize("n", [0, 1, 7, 8, 127, 128, 129, 1000, 2520, 25_200])
def test_pairwise_sums_are_numpys(n):
    rng = np.random.default_rng(n)
    a = rng.normal(1e-4, 1e-2, n)
    stack, values = np.empty((64, 3), np.int64), np.empty((64, 2))
    total, down = pairwise_sums(a, 0, 0.0, stack, values)
    assert total == np.sum(a)
    assert down == np.sum(np.minimum(a, 0.0) ** 2)
    assert pairwise_sums(a, 2, 0.37, stack, values)[0] == np.sum((a - 0.37) ** 2)


def test_return_metrics_kernel_equals_metrics_module():
    rng = np.random.default_rng(5)
    rows = [
        rng.normal(3e-4, 1e-2, 1000),
        np.zeros(1000),  # flat: Sharpe and Sortino NaN, no drawdown
        np.full(1000, 0.001),  # constant: Sharpe NaN
        np.r_[0.1, -1.2, 0.3, rng.normal(0, 0.01, 997)],  # ruin: CAGR -1, drawdown capped at 1
        np.r_[rng.normal(0, 0.01, 999), -0.5],  # drawdown open at the end
    ]
    returns = np.vstack(rows)
    got = finish_growth(return_metrics(returns, 252, 4), 1000, 252)[:, :7]
    names = METRIC_NAMES[:7]
    for i, r in enumerate(rows):
        want = [
            metrics.total_return(r),
            metrics.cagr(r),
            metrics.annual_volatility(r),
            metrics.sharpe_ratio(r),
            metrics.sortino_ratio(r),
            metrics.max_drawdown(r),
            metrics.calmar_ratio(r),
        ]
        np.testing.assert_array_equal(got[i], np.array(want), err_msg=f"row {i} {names}")


@pytest.mark.parametrize("n_assets", [1, 3])
@pytest.mark.parametrize("budget", ["fused", "over-budget"])
def test_fused_mean_reversion_and_breakout_equal_simulate(n_assets, budget, monkeypatch):
    """MeanReversion's fused kernel (its rule run inside the metrics pass; the generic
    path when its z-score table is over budget) and Breakout's generic path: every set
    equals its backtest."""
    if budget == "over-budget":
        monkeypatch.setattr(_fused, "TABLE_BUDGET_BYTES", 0)
    prices = gbm(600, n_assets, seed=5)
    prices.iloc[200:260] = prices.iloc[199].to_numpy()  # flat closes: a NaN z-score holds
    weights = {c: w for c, w in zip(prices.columns, [0.5, 0.3, 0.2], strict=False)}
    cases = {
        MeanReversion: pd.DataFrame(
            {
                "lookback": [2, 5, 20, 20, 60, 900],
                "entry_z": [1.0, 1.0, 1.5, 2.0, 1.2, 2.0],
                "exit_z": [0.0, 0.5, 0.2, 1.9, 1.0, 0.5],
            }
        ),
        Breakout: pd.DataFrame(
            {
                "lookback": [1, 2, 3, 7, 8, 55, 255, 900],
                "long_short": [True, False, True, False, True, True, False, True],
            }
        ),
    }
    for cls, sets in cases.items():
        batch = simulate_batch(prices, cls, sets, fee_bps=7.0, weights=weights, keep_returns=True)
        if budget == "fused" and cls is MeanReversion:
            assert _fused.fused_batch(
                prices.to_numpy(), cls, sets, cost=0.0007,
                weights=np.ones(n_assets), periods_per_year=252,
            ) is not None  # fmt: skip
        for i, params in enumerate(sets.to_dict("records")):
            single = simulate(prices, cls(**params), fee_bps=7.0, weights=weights)
            assert_same_metrics(batch.metrics.iloc[i], single.metrics)
            np.testing.assert_array_equal(batch.returns[:, i], single.returns.to_numpy())
