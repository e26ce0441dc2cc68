"""Splits and cash dividends on unadjusted prices, one rule at a time (engine/_universe.py).

Small panels whose numbers are worked out by hand: a split scales units (not equity), a
dividend pays ``units x dividend`` to a long and charges a short on the ex-date, a stop
does not fire on a split's price drop, trade returns are split-adjusted price returns,
and the sleeve accounting (default options) equals the units accounting rebalanced
every bar when costs are off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from backtest.data import Bars
from backtest.engine import simulate

IDX = pd.bdate_range("2024-01-01", periods=12, name="date")


@dataclass(frozen=True)
class Hold:
    """A constant weight in every asset (ignores prices)."""

    weight: float = 1.0
    start: int = 0  # flat before this bar
    output: ClassVar[str] = "weights"

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame(self.weight, index=prices.index, columns=prices.columns)
        out.iloc[: self.start] = 0.0
        return out


def one_asset(
    close: list[float], split: dict[int, float] | None = None, div: dict[int, float] | None = None
) -> Bars:
    frame = lambda v: pd.DataFrame({"A": v}, index=IDX[: len(close)])  # noqa: E731
    s = np.ones(len(close))
    d = np.zeros(len(close))
    for t, k in (split or {}).items():
        s[t] = k
    for t, x in (div or {}).items():
        d[t] = x
    c = np.array(close, dtype=float)
    return Bars(close=frame(c), open=frame(c), high=frame(c * 1.001), low=frame(c * 0.999),
                split=frame(s), dividend=frame(d))  # fmt: skip


OPTS = {"rebalance": "M", "initial_capital": 10_000.0, "check_lookahead": False}


def test_a_split_scales_units_not_equity() -> None:
    close = [100.0] * 5 + [50.0] * 5  # 2-for-1 on bar 5
    result = simulate(one_asset(close, split={5: 2.0}), Hold(), **OPTS)
    np.testing.assert_allclose(result.equity.to_numpy(), 1.0, atol=1e-12)
    assert result.weights is not None
    assert result.weights["A"].to_numpy() == pytest.approx(1.0)


@pytest.mark.parametrize("weight", [1.0, -1.0])
def test_a_dividend_pays_longs_and_charges_shorts(weight: float) -> None:
    close = [100.0] * 10  # the price does not drop: the dividend is the whole move
    result = simulate(one_asset(close, div={4: 2.0}), Hold(weight), **OPTS)
    eq = result.equity.to_numpy()
    np.testing.assert_allclose(eq[:4], 1.0, atol=1e-12)
    np.testing.assert_allclose(eq[4:], 1.0 + weight * 0.02, atol=1e-12)


def test_a_dividend_with_its_price_drop_leaves_equity_unchanged() -> None:
    close = [100.0] * 4 + [98.0] * 6  # ex-date bar 4: the price drops by the dividend
    for weight in (1.0, -1.0):
        result = simulate(one_asset(close, div={4: 2.0}), Hold(weight), **OPTS)
        np.testing.assert_allclose(result.equity.to_numpy(), 1.0, atol=1e-12)


def test_a_split_does_not_fire_a_stop_and_trade_returns_are_split_adjusted() -> None:
    close = [100.0, 101.0, 102.0, 103.0, 104.0, 35.0, 36.0, 37.0, 38.0, 39.0]  # 3-for-1 on 5
    bars = one_asset(close, split={5: 3.0})
    result = simulate(bars, Hold(), stop_loss=0.1, trailing_stop=0.1, **OPTS)
    trades = result.trades
    assert len(trades) == 1
    row = trades.iloc[0]
    assert row["exit_reason"] == "end"
    assert row["entry_price"] == pytest.approx(100.0 / 3.0)  # in the new shares' terms
    assert row["return"] == pytest.approx(39.0 * 3.0 / 100.0 - 1.0)


def test_sleeves_equal_units_rebalanced_every_bar_with_actions() -> None:
    rng = np.random.default_rng(4)
    close = list(100 * np.exp(np.cumsum(rng.normal(0, 0.02, 12))))
    bars = one_asset(close, split={3: 2.0, 9: 0.5}, div={6: 1.5})
    sleeves = simulate(bars, Hold(0.7), check_lookahead=False)
    units = simulate(bars, Hold(0.7), rebalance=1, check_lookahead=False)
    np.testing.assert_allclose(sleeves.equity, units.equity, rtol=0, atol=1e-12)


def test_next_open_fills_after_the_split_in_the_new_shares() -> None:
    close = [100.0] * 5 + [50.0] * 5
    bars = one_asset(close, split={5: 2.0})
    result = simulate(bars, Hold(), execution="next_open", **OPTS)
    np.testing.assert_allclose(result.equity.to_numpy(), 1.0, atol=1e-12)


@pytest.mark.parametrize("unit", ["fraction", "atr"])
def test_stops_across_a_split_equal_the_stops_on_adjusted_prices(unit: str) -> None:
    """ATR stops use the adjusted view's ATR (a split is no true range) in raw terms."""
    rng = np.random.default_rng(11)
    n = 80
    idx = pd.bdate_range("2024-01-01", periods=n, name="date")
    adj = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    factor = np.where(np.arange(n) >= 40, 2.0, 1.0)  # 2-for-1 on bar 40
    wick = np.exp(np.abs(rng.normal(0, 0.01, (2, n))))
    frame = lambda v: pd.DataFrame({"A": v}, index=idx)  # noqa: E731

    def bars(f: np.ndarray, split: bool) -> Bars:
        extra = {"split": frame(np.where(np.arange(n) == 40, 2.0, 1.0))} if split else {}
        c = adj / f
        return Bars(close=frame(c), open=frame(np.r_[c[0], c[:-1]]), high=frame(c * wick[0]),
                    low=frame(c / wick[1]), **extra)  # fmt: skip

    stops = {"stop_loss": 0.03, "trailing_stop": 0.04} if unit == "fraction" else {
        "stop_loss": 1.5, "trailing_stop": 2.0, "stop_unit": "atr", "atr_lookback": 5}  # fmt: skip
    opts = {**OPTS, "rebalance": 1, "stop_reentry": "next_bar"}  # re-entry after a stop
    raw = simulate(bars(factor, True), Hold(start=8), **stops, **opts)
    ref = simulate(bars(np.ones(n), False), Hold(start=8), **stops, **opts)
    assert len(raw.trades) == len(ref.trades) > 1
    assert list(raw.trades["exit_time"]) == list(ref.trades["exit_time"])
    assert list(raw.trades["exit_reason"]) == list(ref.trades["exit_reason"])
    np.testing.assert_allclose(raw.equity.to_numpy(), ref.equity.to_numpy(), rtol=1e-9)
