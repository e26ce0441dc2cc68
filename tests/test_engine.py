"""Engine conventions against a plain per-bar loop, and no look-ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backtest.engine import simulate
from backtest.errors import BacktestError, ConfigError
from backtest.strategies import Breakout, BuyAndHold, MeanReversion, Momentum, SmaCross
from tests import synthetic


def gbm(n: int, n_assets: int = 2, seed: int = 0) -> pd.DataFrame:
    return synthetic.gbm(n, n_assets, seed, start="2015-01-01", prefix="A").rename_axis("date")


def reference_loop(prices: pd.DataFrame, positions: pd.DataFrame, c: float, w: np.ndarray):
    """The issue's conventions written bar by bar, nothing vectorised."""
    close = prices.to_numpy()
    pos = np.nan_to_num(positions.to_numpy())
    n, a = close.shape
    port = [0.0] * n
    for t in range(n):
        total = 0.0
        for j in range(a):
            prev = pos[t - 1, j] if t > 0 else 0.0
            r = close[t, j] / close[t - 1, j] - 1 if t > 0 else 0.0
            ret = (1 + prev * r) * (1 - c * abs(pos[t, j] - prev)) - 1
            total += w[j] * ret
        port[t] = total
    return np.array(port)


class Scripted:
    """A strategy that returns a fixed position frame (for testing the engine alone).

    Row t is the frame's row t on any prefix of the bars, so it passes the look-ahead
    check every run makes.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        return self.frame.reindex(prices.index)


STRATEGIES = [
    SmaCross(5, 20),
    SmaCross(3, 15, long_short=True),
    Momentum(20, 2, long_short=True),
    MeanReversion(15, 1.2, 0.2),
    Breakout(10, long_short=True),
    BuyAndHold(),
]


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: repr(s))
@pytest.mark.parametrize(("fee", "slip"), [(0.0, 0.0), (10.0, 5.0)], ids=["free", "costly"])
def test_returns_equal_per_bar_loop(strategy, fee: float, slip: float) -> None:
    prices = gbm(400, 3)
    res = simulate(prices, strategy, fee_bps=fee, slippage_bps=slip)
    expected = reference_loop(
        prices, strategy.positions(prices), (fee + slip) / 1e4, np.full(3, 1 / 3)
    )
    np.testing.assert_allclose(res.returns.to_numpy(), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.equity.to_numpy(), np.cumprod(1 + expected), rtol=1e-12)
    assert res.returns.index.equals(prices.index)


def test_signal_is_held_over_the_next_bar() -> None:
    prices = pd.DataFrame(
        {"A": [100.0, 110.0, 121.0, 121.0]}, index=pd.bdate_range("2020-01-01", periods=4)
    )
    # long from the close of bar 1: earns bar 2's +10%, not bar 1's
    pos = pd.DataFrame({"A": [0.0, 1.0, 1.0, 0.0]}, index=prices.index)
    res = simulate(prices, Scripted(pos), fee_bps=10.0)
    c = 10 / 1e4
    np.testing.assert_allclose(res.returns.to_numpy(), [0.0, -c, 0.10, -c], atol=1e-15)


def test_costs_are_charged_on_traded_notional() -> None:
    prices = pd.DataFrame({"A": [100.0] * 5}, index=pd.bdate_range("2020-01-01", periods=5))
    pos = pd.DataFrame({"A": [0.0, 1.0, -1.0, -1.0, 0.0]}, index=prices.index)
    res = simulate(prices, Scripted(pos), fee_bps=7.0, slippage_bps=3.0)
    np.testing.assert_allclose(res.returns.to_numpy(), [0, -1e-3, -2e-3, 0, -1e-3], atol=1e-15)


def test_configured_weights_combine_assets() -> None:
    prices = gbm(200, 2)
    strat = Momentum(10)
    res = simulate(prices, strat, weights={"A0": 0.7, "A1": 0.3}, fee_bps=2)
    expected = reference_loop(prices, strat.positions(prices), 2e-4, np.array([0.7, 0.3]))
    np.testing.assert_allclose(res.returns.to_numpy(), expected, atol=1e-12)
    with pytest.raises(ConfigError, match="A1"):
        simulate(prices, strat, weights={"A0": 1.0})
    with pytest.raises(ConfigError, match="ZZZ"):
        simulate(prices, strat, weights={"A0": 0.5, "A1": 0.5, "ZZZ": 0.1})


def test_negative_cost_is_refused_with_the_key() -> None:
    with pytest.raises(ConfigError, match=r"engine\.fee_bps") as err:
        simulate(gbm(50, 1), BuyAndHold(), fee_bps=-1)
    assert err.value.key == "engine.fee_bps"


def test_positions_outside_unit_range_are_refused() -> None:
    prices = gbm(10, 1)
    pos = pd.DataFrame({"A0": [0.0] * 5 + [2.0] * 5}, index=prices.index)
    with pytest.raises(BacktestError, match=r"outside \[-1, 1\].*5 such values"):
        simulate(prices, Scripted(pos))


def test_trades_table_matches_a_hand_computed_trade() -> None:
    idx = pd.bdate_range("2020-01-01", periods=6)
    prices = pd.DataFrame({"A": [100.0, 100.0, 105.0, 110.25, 100.0, 90.0]}, index=idx)
    pos = pd.DataFrame({"A": [0.0, 1.0, 1.0, 0.0, -1.0, -1.0]}, index=idx)
    c = 1e-3
    res = simulate(prices, Scripted(pos), fee_bps=10)
    t = res.trades
    assert list(t["direction"]) == [1, -1]
    assert list(t["entry_time"]) == [idx[1], idx[4]]
    assert list(t["exit_time"]) == [idx[3], idx[5]]
    assert list(t["bars_held"]) == [2, 1]
    assert list(t["is_open"]) == [False, True]
    np.testing.assert_allclose(t["return"].iloc[0], (1 - c) * 1.05 * 1.05 * (1 - c) - 1)
    np.testing.assert_allclose(t["return"].iloc[1], (1 - c) * (1 + 0.1) - 1)
    assert res.metrics["n_trades"] == 2
    assert res.metrics["win_rate"] == 1.0
    # the first trade's return equals compounding the strategy returns over its bars
    np.testing.assert_allclose(np.prod(1 + res.returns.iloc[1:4]) - 1, t["return"].iloc[0])


@settings(max_examples=25, deadline=None)
@given(cut=st.integers(min_value=30, max_value=250), seed=st.integers(0, 2**16))
def test_no_look_ahead(cut: int, seed: int) -> None:
    """Overwriting every bar after t changes nothing up to t."""
    prices = gbm(260, 2, seed=seed)
    garbage = prices.copy()
    rng = np.random.default_rng(seed + 1)
    garbage.iloc[cut + 1 :] = rng.uniform(1, 1000, size=garbage.iloc[cut + 1 :].shape)
    for strat in STRATEGIES:
        a = simulate(prices, strat, fee_bps=5)
        b = simulate(garbage, strat, fee_bps=5)
        pd.testing.assert_series_equal(a.returns.iloc[: cut + 1], b.returns.iloc[: cut + 1])
        pd.testing.assert_frame_equal(a.positions.iloc[: cut + 1], b.positions.iloc[: cut + 1])
        closed_a = a.trades[a.trades["exit_time"] <= prices.index[cut]]
        closed_a = closed_a[~closed_a["is_open"]]
        closed_b = b.trades[b.trades["exit_time"] <= prices.index[cut]]
        closed_b = closed_b[~closed_b["is_open"]]
        pd.testing.assert_frame_equal(
            closed_a.reset_index(drop=True), closed_b.reset_index(drop=True)
        )


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), fee=st.floats(0, 50))
def test_flat_signal_leaves_equity_flat(seed: int, fee: float) -> None:
    prices = gbm(100, 2, seed=seed)
    flat = pd.DataFrame(0.0, index=prices.index, columns=prices.columns)
    res = simulate(prices, Scripted(flat), fee_bps=fee)
    assert (res.equity == 1.0).all()
    assert res.trades.empty
    assert res.metrics["max_drawdown"] == 0.0
