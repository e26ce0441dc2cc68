"""The portfolio engine equals the plain per-bar loop of tests/engine_reference.py.

Every combination of execution timing x rebalance schedule x cost model, on synthetic
and on the shipped real sample data, single and multi-asset, long and short, with
leverage; then Hypothesis properties and no look-ahead for the new options.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backtest.config import DataConfig
from backtest.data import Bars, load_bars
from backtest.engine import simulate
from backtest.strategies import SmaCross
from tests.book_checks import assert_book_equals_reference
from tests.engine_reference import Options, reference_backtest
from tests.synthetic import BlockWeights


def _data(kind: str, n_assets: int, n_bars: int = 400) -> Bars:
    if kind == "sample":
        bars = load_bars(DataConfig(source="sample", start="2015-01-01", end="2016-09-30"))
        return bars.map(lambda f: f.iloc[:, :n_assets])
    return load_bars(DataConfig(n_bars=n_bars, n_assets=n_assets, seed=3))


COST_MODELS = {
    "none": {},
    "proportional": {"fee_bps": 5.0, "slippage_bps": 3.0},
    "full": {
        "fee_bps": 5.0,
        "slippage_bps": 3.0,
        "initial_capital": 100_000.0,
        "fixed_cost": 1.0,
        "min_commission": 2.5,
        "borrow_rate": 0.03,
        "financing_rate": 0.05,
        "cash_rate": 0.02,
    },
}
SCHEDULES = ["bar", "W", "M", 5]
EXECUTIONS = ["close", "next_open"]


def _compare(
    bars: Bars, strategy: object, options: dict, *, sleeve: list[float] | None = None
) -> None:
    result = simulate(bars, strategy, periods_per_year=252, **options)
    ref_opts = Options(**{k: v for k, v in options.items() if k != "weights"})
    if ref_opts.initial_capital is None:
        ref_opts.initial_capital = 1.0
    out = strategy.positions(bars.close).fillna(0.0)  # type: ignore[attr-defined]
    if getattr(strategy, "output", "positions") == "weights":
        target, sleeves = out.to_numpy(), [1.0] * out.shape[1]
    else:
        w = sleeve or [1.0 / out.shape[1]] * out.shape[1]
        target, sleeves = out.to_numpy() * np.array(w), w
    ref = reference_backtest(bars, target, out.to_numpy(), sleeves, ref_opts)
    assert_book_equals_reference(result, ref, bars)
    assert result.metrics["exposure"] == pytest.approx(ref.exposure, rel=1e-9, abs=1e-12)
    assert result.metrics["limit_scaled_fraction"] == pytest.approx(np.mean(ref.limited))


GRID = [(ex, rb, cm) for ex in EXECUTIONS for rb in SCHEDULES for cm in COST_MODELS]


@pytest.mark.parametrize(
    ("execution", "rebalance", "costs"), GRID, ids=[f"{e}-{r}-{c}" for e, r, c in GRID]
)
@pytest.mark.parametrize("data", ["synthetic", "sample"])
def test_engine_equals_reference_long_short_levered(
    execution: str, rebalance: object, costs: str, data: str
) -> None:
    bars = _data(data, 2 if data == "sample" else 3)
    strategy = BlockWeights(seed=11, scale=0.9)  # gross up to 2.7: leverage and shorts
    _compare(bars, strategy, {"execution": execution, "rebalance": rebalance, **COST_MODELS[costs]})


@pytest.mark.parametrize(
    ("execution", "rebalance"), [("close", "bar"), ("next_open", "M"), ("close", 5)]
)
@pytest.mark.parametrize("n_assets", [1, 4])
def test_engine_equals_reference_legacy_positions(
    execution: str, rebalance: object, n_assets: int
) -> None:
    bars = _data("synthetic", n_assets)
    _compare(
        bars,
        SmaCross(5, 20, long_short=True),
        {"execution": execution, "rebalance": rebalance, "fee_bps": 4.0, "borrow_rate": 0.02},
    )


@pytest.mark.parametrize(
    "limits",
    [
        {"max_weight": 0.5},
        {"long_only": True},
        {"max_gross_leverage": 1.0},
        {"target_volatility": 0.1, "vol_lookback": 20, "max_gross_leverage": 2.0},
        {"rebalance_threshold": 0.05, "rebalance": "W"},
    ],
    ids=["max_weight", "long_only", "gross", "vol_target", "band"],
)
def test_engine_equals_reference_with_limits_and_band(limits: dict) -> None:
    bars = _data("synthetic", 3)
    _compare(
        bars, BlockWeights(seed=5, scale=0.9), {"fee_bps": 2.0, "execution": "close", **limits}
    )
    _compare(
        bars, BlockWeights(seed=5, scale=0.9), {"fee_bps": 2.0, "execution": "next_open", **limits}
    )


def test_limits_bind_and_are_counted() -> None:
    bars = _data("synthetic", 3)
    result = simulate(bars, BlockWeights(seed=5, scale=0.9), max_weight=0.3, long_only=True)
    w = result.weights
    assert w is not None
    assert (w.to_numpy() >= -1e-12).all()
    assert 0 < result.metrics["limit_scaled_fraction"] <= 1


# ---------------------------------------------------------------- Hypothesis properties

_prices = st.lists(st.floats(-0.05, 0.05), min_size=30, max_size=60)


def _bars_from_returns(rets: list[float], n_assets: int = 2) -> Bars:
    r = np.array(rets)
    close = 100 * np.cumprod(1 + np.column_stack([r, -0.5 * r[::-1]][:n_assets]), axis=0)
    idx = pd.bdate_range("2020-01-01", periods=len(r))
    frame = pd.DataFrame(close, index=idx, columns=[f"A{j}" for j in range(close.shape[1])])
    opens = frame.shift(1).fillna(frame) * 1.001
    return Bars(frame, opens, np.maximum(frame, opens) * 1.01, np.minimum(frame, opens) * 0.99)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rets=_prices, seed=st.integers(0, 1000))
def test_zero_cost_every_bar_equals_v1_formula(rets: list[float], seed: int) -> None:
    bars = _bars_from_returns(rets)
    strategy = BlockWeights(seed=seed, block=3, scale=0.5)
    w = strategy.positions(bars.close).to_numpy()
    r = bars.close.pct_change().fillna(0.0).to_numpy()
    prev = np.vstack([np.zeros((1, w.shape[1])), w[:-1]])
    v1 = ((1 + prev * r) - 1).sum(axis=1)  # v1 with c = 0, sleeve weight 1 per asset
    sleeves = simulate(bars, strategy).returns.to_numpy()
    # rebalance=D on daily bars: every bar, but with cash/units accounting
    units = simulate(bars, strategy, rebalance="D").returns.to_numpy()
    np.testing.assert_allclose(sleeves, v1, atol=1e-12)
    np.testing.assert_allclose(units, v1, atol=1e-12)


class ConstantWeights:
    """The same target weights every bar."""

    output: ClassVar[str] = "weights"

    def __init__(self, weights: list[float]) -> None:
        self.weights = weights

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            [self.weights] * len(prices), index=prices.index, columns=prices.columns
        )


@settings(max_examples=30, deadline=None)
@given(rets=_prices, w0=st.floats(0.0, 1.0))
def test_monthly_constant_weights_differ_from_daily_only_by_drift(
    rets: list[float], w0: float
) -> None:
    """Zero costs: the monthly book's value is the daily-held units' value (drift), exactly."""
    bars = _bars_from_returns(rets)
    weights = [w0, 1 - w0]
    monthly = simulate(bars, ConstantWeights(weights), rebalance="M")
    close = bars.close.to_numpy()
    # plain drift: buy at each month's first close, hold the units until the next
    flags = bars.index.to_period("M")
    value, units, out = 1.0, np.zeros(2), []
    for t in range(len(close)):
        value = units @ close[t] if t else 1.0
        if t == 0 or flags[t] != flags[t - 1]:
            units = np.array(weights) * value / close[t]
        out.append(value)
    equity = np.array(out) / 1.0
    np.testing.assert_allclose(monthly.equity.to_numpy(), equity, rtol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    rets=_prices,
    seed=st.integers(0, 100),
    max_weight=st.floats(0.05, 1.0),
    gross=st.floats(0.1, 3.0),
    execution=st.sampled_from(EXECUTIONS),
)
def test_weights_never_exceed_limits(
    rets: list[float], seed: int, max_weight: float, gross: float, execution: str
) -> None:
    """Target weights within the limits, and held weights at a rebalance fill too (no costs)."""
    from backtest.engine import target_weights

    bars = _bars_from_returns(rets)
    opts = {"max_weight": max_weight, "max_gross_leverage": gross, "long_only": seed % 2 == 0}
    tw = target_weights(BlockWeights(seed=seed, block=2, scale=2.0), bars, opts).to_numpy()
    assert (np.abs(tw) <= max_weight + 1e-12).all()
    assert (np.abs(tw).sum(axis=1) <= gross + 1e-12).all()
    if opts["long_only"]:
        assert (tw >= 0).all()
    held = simulate(
        bars, BlockWeights(seed=seed, block=2, scale=2.0), execution="close", **opts
    ).weights
    assert held is not None
    assert (np.abs(held.to_numpy()) <= max_weight + 1e-9).all()


@settings(max_examples=30, deadline=None)
@given(rets=_prices, seed=st.integers(0, 100), rebalance=st.sampled_from(["bar", "W", 3]))
def test_costs_non_negative_and_zero_without_trading(
    rets: list[float], seed: int, rebalance: object
) -> None:
    bars = _bars_from_returns(rets)
    full = {k: v for k, v in COST_MODELS["full"].items() if k != "cash_rate"}
    result = simulate(bars, BlockWeights(seed=seed, block=4), rebalance=rebalance, **full)
    assert result.costs is not None
    assert (result.costs.to_numpy() >= 0).all()
    flat = simulate(bars, ConstantWeights([0.0, 0.0]), rebalance=rebalance, **full)
    assert flat.costs is not None
    assert (flat.costs.to_numpy() == 0).all()
    assert (flat.returns == 0).all()


# ---------------------------------------------------------------- no look-ahead

LOOKAHEAD_OPTIONS = [
    {"execution": "next_open"},
    {"execution": "next_open", "rebalance": "M", "fee_bps": 3.0},
    {"rebalance": "W", "rebalance_threshold": 0.05},
    {"target_volatility": 0.15, "vol_lookback": 10, "max_gross_leverage": 2.0},
    {"borrow_rate": 0.05, "financing_rate": 0.04, "initial_capital": 1000.0, "min_commission": 1.0},
    {"benchmark": "equal_weight", "long_only": True, "max_weight": 0.4},
]


@pytest.mark.parametrize("options", LOOKAHEAD_OPTIONS, ids=[",".join(o) for o in LOOKAHEAD_OPTIONS])
def test_no_look_ahead(options: dict) -> None:
    """Overwrite every bar after t: returns, costs and held weights up to t are unchanged."""
    bars = _data("synthetic", 3, 300)
    t = 180
    rng = np.random.default_rng(0)
    factor = rng.uniform(0.7, 1.3, bars.close.iloc[t + 1 :].shape)  # one per bar: valid OHLC

    def scramble(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        out.iloc[t + 1 :] = out.iloc[t + 1 :].to_numpy() * factor
        return out

    changed = Bars(
        scramble(bars.close), scramble(bars.open), scramble(bars.high), scramble(bars.low)
    )
    strategy = SmaCross(5, 20, long_short=True)
    a = simulate(bars, strategy, **options)
    b = simulate(changed, strategy, **options)
    np.testing.assert_array_equal(a.returns.to_numpy()[: t + 1], b.returns.to_numpy()[: t + 1])
    assert a.costs is not None and b.costs is not None
    np.testing.assert_array_equal(a.costs.to_numpy()[: t + 1], b.costs.to_numpy()[: t + 1])
    assert a.weights is not None and b.weights is not None
    np.testing.assert_array_equal(a.weights.to_numpy()[: t + 1], b.weights.to_numpy()[: t + 1])
