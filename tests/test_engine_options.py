"""Engine options: periods_per_year inference, schedules, benchmark metrics, bars, bad input."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from backtest.config import DataConfig
from backtest.data import Bars, load_bars, synthetic_prices
from backtest.engine import infer_periods_per_year, simulate
from backtest.engine._schedule import rebalance_flags
from backtest.errors import ConfigError, DataValidationError
from backtest.metrics import cagr, relative_metrics, sharpe_ratio
from backtest.strategies import BuyAndHold, SmaCross


def _sessions(freq: str, per_day: int, days: int = 30) -> pd.DatetimeIndex:
    start = pd.bdate_range("2024-01-02", periods=days)
    parts = [pd.date_range(d + pd.Timedelta("09:30:00"), periods=per_day, freq=freq) for d in start]
    return pd.DatetimeIndex(np.concatenate(parts))


INDICES = {
    "daily": (pd.bdate_range("2020-01-01", periods=500), 252.0),
    "weekly": (pd.date_range("2020-01-03", periods=200, freq="W-FRI"), 52.0),
    "monthly": (pd.date_range("2010-01-31", periods=120, freq="ME"), 12.0),
    "hourly_session": (_sessions("h", 7), 7 * 252.0),
    "minute_session": (_sessions("min", 390, 10), 390 * 252.0),
    "hourly_24_7": (pd.date_range("2024-01-01", periods=3000, freq="h"), 24 * 365.0),
    "daily_24_7": (pd.date_range("2024-01-01", periods=400, freq="D"), 365.0),
}


@pytest.mark.parametrize("kind", list(INDICES), ids=list(INDICES))
def test_periods_per_year_inferred(kind: str) -> None:
    index, expected = INDICES[kind]
    ppy, irregular = infer_periods_per_year(index)
    assert ppy == expected
    assert not irregular


def test_irregular_spacing_warns(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    stamps = pd.Timestamp("2024-01-02 09:30") + pd.to_timedelta(
        np.cumsum(rng.integers(1, 30, size=300)), unit="min"
    )
    close = pd.DataFrame({"A": np.linspace(1, 2, 300)}, index=pd.DatetimeIndex(stamps))
    with caplog.at_level(logging.WARNING, logger="backtest.engine"):
        result = simulate(close, BuyAndHold())
    assert "irregular" in caplog.text
    assert result.periods_per_year is not None


def test_minute_bars_annualised_from_the_index() -> None:
    """The issue's case: 1-minute bars annualised with 252 understate Sharpe by sqrt(390)."""
    index = _sessions("min", 390, 20)
    rng = np.random.default_rng(1)
    close = pd.DataFrame(
        {"A": 100 * np.exp(np.cumsum(rng.normal(-2e-5, 5e-4, len(index))))}, index=index
    )
    result = simulate(close, BuyAndHold())
    ppy = 390 * 252
    assert result.periods_per_year == ppy
    r = result.returns.to_numpy()
    assert result.metrics["sharpe_ratio"] == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(ppy))
    assert result.metrics["cagr"] == pytest.approx(cagr(r, periods_per_year=ppy))


def test_schedules_mark_the_first_bar_of_each_period() -> None:
    index = pd.bdate_range("2024-01-01", "2024-04-30")
    months = rebalance_flags(index, "M")
    assert list(index[months].month) == [1, 2, 3, 4]
    weeks = rebalance_flags(index, "W")
    assert (index[weeks][1:].day_of_week == 0).all()
    assert rebalance_flags(index, "Q").sum() == 2
    assert rebalance_flags(index, 10).sum() == int(np.ceil(len(index) / 10))


def test_monthly_rebalance_trades_only_on_month_starts() -> None:
    bars = load_bars(DataConfig(n_bars=300, n_assets=3, seed=1))
    result = simulate(bars, BuyAndHold(), rebalance="M", fee_bps=10.0)
    assert result.costs is not None
    traded = result.costs.index[result.costs["fees"] > 0]
    months = bars.index[rebalance_flags(bars.index, "M")]
    assert set(traded) <= set(months)
    assert len(traded) >= 12
    daily = simulate(bars, BuyAndHold(), fee_bps=10.0)
    assert daily.metrics["turnover"] > 0  # sleeves: only the entry
    assert result.metrics["cost_fees"] > daily.metrics["cost_fees"]  # drift is traded back


def test_benchmark_metrics_against_a_plain_computation() -> None:
    bars = load_bars(DataConfig(source="sample"))
    result = simulate(bars, SmaCross(20, 100), benchmark="SP500", fee_bps=2.0)
    r = result.returns.to_numpy()
    b = bars.close["SP500"].pct_change().fillna(0.0).to_numpy()
    beta = np.cov(r, b)[0, 1] / np.var(b, ddof=1)
    assert result.metrics["beta"] == pytest.approx(beta, rel=1e-9)
    assert result.metrics["alpha"] == pytest.approx((r.mean() - beta * b.mean()) * 252, rel=1e-9)
    te = np.std(r - b, ddof=1) * np.sqrt(252)
    assert result.metrics["tracking_error"] == pytest.approx(te, rel=1e-9)
    assert result.metrics["information_ratio"] == pytest.approx((r - b).mean() * 252 / te, rel=1e-9)
    assert result.metrics["excess_return"] == pytest.approx(
        cagr(r, periods_per_year=252) - cagr(b, periods_per_year=252)
    )
    assert result.benchmark_metrics["sharpe_ratio"] == pytest.approx(
        sharpe_ratio(b, periods_per_year=252)
    )
    assert result.benchmark is not None
    assert result.benchmark.iloc[-1] == pytest.approx(
        bars.close["SP500"].iloc[-1] / bars.close["SP500"].iloc[0]
    )


def test_equal_weight_benchmark_is_buy_and_hold_of_the_universe() -> None:
    close = synthetic_prices(100, 3, seed=2)
    result = simulate(close, BuyAndHold(), benchmark="equal_weight")
    assert result.benchmark is not None
    expected = (close / close.iloc[0]).mean(axis=1)
    np.testing.assert_allclose(result.benchmark.to_numpy(), expected.to_numpy(), rtol=1e-12)
    out = relative_metrics(np.array([0.0, 0.02, -0.01]), np.array([0.0, 0.01, -0.005]))
    assert out["beta"] == pytest.approx(2.0)


def test_bars_slicing_and_require() -> None:
    bars = load_bars(DataConfig(n_bars=50, n_assets=2, seed=4))
    head = bars.iloc[:10]
    assert isinstance(head, Bars) and len(head) == 10 and head.open is not None
    # synthetic OHLC is around the same closes as synthetic_prices for the seed
    pd.testing.assert_frame_equal(bars.close, synthetic_prices(50, 2, seed=4))
    assert (bars.high >= np.maximum(bars.open, bars.close)).all().all()
    assert (bars.low <= np.minimum(bars.open, bars.close)).all().all()
    with pytest.raises(DataValidationError, match=r"no 'open' column.*next_open"):
        Bars.from_close(bars.close).require("open", why="engine.execution=next_open")


BAD = [
    ({"rebalance": "fortnightly"}, "engine.rebalance"),
    ({"rebalance": 0}, "engine.rebalance"),
    ({"initial_capital": -1.0}, "engine.initial_capital"),
    ({"borrow_rate": -0.01}, "engine.borrow_rate"),
    ({"financing_rate": float("nan")}, "engine.financing_rate"),
    ({"max_gross_leverage": 0.0}, "engine.max_gross_leverage"),
    ({"max_weight": -0.5}, "engine.max_weight"),
    ({"execution": "vwap"}, "engine.execution"),
    ({"fixed_cost": 1.0}, "engine.fixed_cost"),
    ({"min_commission": 1.0}, "engine.min_commission"),
    ({"target_volatility": 0.0}, "engine.target_volatility"),
    ({"rebalance_thresold": 0.1}, "engine.rebalance_thresold"),
]


@pytest.mark.parametrize(("options", "key"), BAD, ids=[k for _, k in BAD])
def test_bad_options_name_the_key(options: dict, key: str) -> None:
    close = synthetic_prices(30, 2, seed=1)
    with pytest.raises(ConfigError) as info:
        simulate(close, BuyAndHold(), **options)
    assert info.value.key == key
    assert key in str(info.value)


def test_data_errors_name_the_column_or_symbol() -> None:
    close = synthetic_prices(30, 2, seed=1)
    with pytest.raises(DataValidationError, match="'open'") as info:
        simulate(close, BuyAndHold(), execution="next_open")
    assert info.value.column == "open"
    with pytest.raises(DataValidationError, match="'SPY'") as info:
        simulate(close, BuyAndHold(), benchmark="SPY")
    assert info.value.column == "SPY"


class UpDay:
    """Long an asset after a bar that closed above its open (reads bars, not closes)."""

    inputs = "bars"

    def positions(self, bars: Bars) -> pd.DataFrame:
        assert isinstance(bars, Bars) and bars.open is not None
        return (bars.close > bars.open).astype(float)


def test_a_bars_strategy_receives_bars() -> None:
    from backtest.engine import target_weights

    bars = load_bars(DataConfig(n_bars=120, n_assets=3, seed=6))
    expected = (bars.close > bars.open).astype(float) / 3
    pd.testing.assert_frame_equal(target_weights(UpDay(), bars), expected, check_names=False)
    result = simulate(bars, UpDay(), fee_bps=1.0)
    np.testing.assert_array_equal(result.positions.to_numpy(), (bars.close > bars.open).to_numpy())
