"""Real universes in the engine: listings, delistings, a tradable set, splits and dividends.

Checked against the plain per-bar loop of ``tests/engine_reference.py`` (single and
batched, to 1e-9), with Hypothesis properties: nothing is held where an asset is not
tradable, and a book on unadjusted prices with actions equals the same book on
total-return-adjusted prices (costs off, rebalanced every bar, fills at the close).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backtest.data import Bars
from backtest.data._bars import synthetic_ohlc
from backtest.engine import simulate, simulate_batch
from backtest.engine._universe import kernel_inputs
from backtest.strategies import CrossSectionalMomentum
from tests.book_checks import assert_book_equals_reference
from tests.engine_reference import Options, reference_backtest
from tests.synthetic import BlockWeights


def total_return_prices(raw: np.ndarray, split: np.ndarray, div: np.ndarray) -> np.ndarray:
    """A holder's total-return prices, bar by bar: the raw close times the shares one
    original share became, plus dividends reinvested at the ex-date close."""
    out = raw.copy()
    for j in range(raw.shape[1]):
        shares = 1.0
        for t in range(1, raw.shape[0]):
            shares *= split[t, j]
            shares += shares * div[t, j] / raw[t, j]  # cash per share, reinvested
            out[t, j] = raw[t, j] * shares
    return out


def _frame(bars: Bars, values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(values, index=bars.index, columns=bars.close.columns)


def universe_bars(n: int = 260, *, delist_return: bool = True, actions: bool = True) -> Bars:
    """4 assets: B lists at bar 40, C delists after bar 180 (with a delisting return),
    D leaves the membership on bars 100-129 while priced; splits and dividends on A, B, D."""
    rng = np.random.default_rng(3)
    idx = pd.bdate_range("2015-01-01", periods=n, name="date")
    walk = 100 * np.exp(np.cumsum(rng.normal(2e-4, 0.012, (n, 4)), axis=0))
    base = synthetic_ohlc(pd.DataFrame(walk, idx, list("ABCD")), 0.012, 3)
    close = base.close.to_numpy().copy()
    n, a = close.shape
    nan = np.zeros((n, a), bool)
    nan[:40, 1] = True
    nan[181:, 2] = True
    member = np.ones((n, a), bool)
    member[100:130, 3] = False
    split = np.ones((n, a))
    div = np.zeros((n, a))
    if actions:
        split[70, 0] = 2.0
        split[150, 1] = 0.5  # a reverse split
        split[120, 3] = 3.0  # while out of the membership
        div[90, 0] = 0.8
        div[200, 3] = 1.1
        div[60, 1] = 0.5
        # the raw prices drop on the ex-dates (a split divides the price)
        for t in range(n):
            for j in range(a):
                if split[t, j] != 1.0 or div[t, j] != 0.0:
                    close[t:, j] = close[t:, j] / split[t, j]
                    close[t:, j] -= div[t, j] * close[t:, j] / close[t, j]
    scale = close / base.close.to_numpy()
    fields = {}
    for name in ("open", "high", "low"):
        v = getattr(base, name).to_numpy() * scale
        v[nan] = np.nan
        fields[name] = _frame(base, v)
    close[nan] = np.nan
    dr = np.full((n, a), np.nan)
    if delist_return:
        dr[180, 2] = -0.3
    return Bars(
        close=_frame(base, close), **fields, volume=base.volume,
        tradable=_frame(base, member), split=_frame(base, split), dividend=_frame(base, div),
        delist_return=_frame(base, dr),
    )  # fmt: skip


def _compare(bars: Bars, strategy: BlockWeights, options: dict) -> None:
    result = simulate(bars, strategy, periods_per_year=252, **options)
    ref_opts = Options(**options)
    out = strategy.positions(bars.close)
    target = out.to_numpy()
    ref = reference_backtest(bars, target, target, [1.0] * target.shape[1], ref_opts)
    assert_book_equals_reference(result, ref, bars)


COST_MODELS = {
    "none": {},
    "full": {
        "fee_bps": 5.0, "slippage_bps": 3.0, "initial_capital": 100_000.0, "fixed_cost": 1.0,
        "min_commission": 2.5, "borrow_rate": 0.03, "financing_rate": 0.05, "cash_rate": 0.02,
    },
}  # fmt: skip
GRID = [
    (ex, rb, cm)
    for ex in ("close", "next_open")
    for rb in ("bar", "M", 5)
    for cm in COST_MODELS
    if not (ex == "next_open" and rb == "bar" and cm == "none")
]


@pytest.mark.parametrize(
    ("execution", "rebalance", "costs"), GRID, ids=[f"{e}-{r}-{c}" for e, r, c in GRID]
)
def test_engine_equals_reference_on_a_real_universe(
    execution: str, rebalance: object, costs: str
) -> None:
    bars = universe_bars()
    _compare(bars, BlockWeights(seed=5, scale=0.9),
             {"execution": execution, "rebalance": rebalance, **COST_MODELS[costs]})  # fmt: skip


def test_delisting_closes_at_the_last_price_or_with_the_delisting_return() -> None:
    for dr in (True, False):
        bars = universe_bars(delist_return=dr, actions=False)
        result = simulate(bars, BlockWeights(seed=5, scale=0.9), rebalance="M")
        c = result.trades[result.trades["asset"] == bars.symbols[2]]
        last = c.iloc[-1]
        assert last["exit_reason"] == "delisted"
        assert last["exit_time"] == bars.index[180]
        raw = bars.close.iloc[180, 2]
        assert last["exit_price"] == pytest.approx(raw * (0.7 if dr else 1.0), rel=1e-12)
        assert np.isfinite(result.equity).all()
        assert (result.weights.iloc[181:, 2] == 0).all()
        d = result.trades[result.trades["asset"] == bars.symbols[3]]
        assert (d["exit_reason"] == "untradable").any()


def test_next_open_closes_a_delisting_at_the_last_listed_close() -> None:
    bars = universe_bars(actions=False)
    result = simulate(bars, BlockWeights(seed=5, scale=0.9), execution="next_open", rebalance=5)
    c = result.trades[result.trades["exit_reason"] == "delisted"]
    assert len(c) == 1
    assert c.iloc[0]["exit_time"] == bars.index[180]
    assert c.iloc[0]["exit_price"] == pytest.approx(bars.close.iloc[180, 2] * 0.7, rel=1e-12)


@pytest.mark.parametrize(
    "options",
    [{}, {"rebalance": "M", "initial_capital": 1e5, "fee_bps": 4.0},
     {"execution": "next_open", "rebalance": 5}],
)  # fmt: skip
def test_batched_equals_single_on_a_real_universe(options: dict) -> None:
    bars = universe_bars()
    sets = [
        {"lookback": 20, "top_n": 1, "long_short": False},
        {"lookback": 35, "top_n": 2, "long_short": True},
    ]
    batch = simulate_batch(bars, CrossSectionalMomentum, sets, keep_returns=True,
                           periods_per_year=252, **options)  # fmt: skip
    assert batch.returns is not None
    for i, s in enumerate(sets):
        single = simulate(bars, CrossSectionalMomentum(**s), periods_per_year=252, **options)
        np.testing.assert_allclose(batch.returns[:, i], single.returns, rtol=0, atol=1e-12)
        assert batch.metrics["n_trades"].iloc[i] == len(single.trades)


def test_batched_weights_strategy_equals_reference() -> None:
    bars = universe_bars()
    options = {"rebalance": "M", "fee_bps": 5.0, "initial_capital": 1e5}
    batch = simulate_batch(bars, BlockWeights, [{"seed": 5}, {"seed": 6}], keep_returns=True,
                           periods_per_year=252, **options)  # fmt: skip
    assert batch.returns is not None
    for i, seed in enumerate((5, 6)):
        target = BlockWeights(seed=seed).positions(bars.close).to_numpy()
        ref = reference_backtest(bars, target, target, [1.0] * 4, Options(**options))
        np.testing.assert_allclose(batch.returns[:, i], ref.returns, rtol=0, atol=1e-9)


@st.composite
def panels(draw: st.DrawFn) -> Bars:
    n = draw(st.integers(30, 80))
    a = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 10_000))
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (n, a)), axis=0))
    member = np.ones((n, a), bool)
    for j in range(a):
        first = draw(st.integers(0, n - 2))
        last = draw(st.integers(first, n - 1))
        close[:first, j] = np.nan
        close[last + 1 :, j] = np.nan
        lo = draw(st.integers(0, n - 1))
        member[lo : lo + draw(st.integers(0, 10)), j] = False
    idx = pd.bdate_range("2021-01-01", periods=n)
    frame = lambda v: pd.DataFrame(v, index=idx, columns=[f"S{j}" for j in range(a)])  # noqa: E731
    return Bars(close=frame(close), open=frame(close * 1.001), tradable=frame(member))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bars=panels(),
    execution=st.sampled_from(["close", "next_open"]),
    rebalance=st.sampled_from(["bar", 3, "W"]),
    seed=st.integers(0, 100),
)
def test_nothing_is_held_where_not_tradable(
    bars: Bars, execution: str, rebalance: object, seed: int
) -> None:
    result = simulate(bars, BlockWeights(seed=seed, block=3), execution=execution,
                      rebalance=rebalance, check_lookahead=False)  # fmt: skip
    assert result.weights is not None
    held = result.weights.to_numpy() != 0.0
    tradable = bars.tradable_mask()
    assert not (held & ~tradable).any()
    # held after the close of t means held over bar t + 1: tradable there too
    assert not (held[:-1] & ~tradable[1:]).any()
    assert np.isfinite(result.equity).all()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n_actions=st.integers(1, 8),
    units=st.booleans(),
    data=st.data(),
)
def test_unadjusted_with_actions_equals_total_return_adjusted(
    seed: int, n_actions: int, units: bool, data: st.DataObject
) -> None:
    rng = np.random.default_rng(seed)
    n, a = 60, 3
    idx = pd.bdate_range("2022-01-03", periods=n)
    cols = ["A", "B", "C"]
    raw = 20 * np.exp(np.cumsum(rng.normal(0, 0.02, (n, a)), axis=0))
    split = np.ones((n, a))
    div = np.zeros((n, a))
    for _ in range(n_actions):
        t = data.draw(st.integers(1, n - 1))
        j = data.draw(st.integers(0, a - 1))
        if data.draw(st.booleans()):
            split[t, j] = data.draw(st.sampled_from([2.0, 3.0, 0.5, 1.5, 0.25]))
        else:
            div[t, j] = data.draw(st.floats(0.01, 0.05)) * raw[t - 1, j]
    frame = lambda v: pd.DataFrame(v, index=idx, columns=cols)  # noqa: E731
    unadjusted = Bars(close=frame(raw), split=frame(split), dividend=frame(div))
    adjusted = Bars.from_close(frame(total_return_prices(raw, split, div)))
    options = {"rebalance": 1 if units else "bar", "check_lookahead": False}
    strategy = BlockWeights(seed=seed % 97, block=4)
    one = simulate(unadjusted, strategy, **options)
    two = simulate(adjusted, strategy, **options)
    np.testing.assert_allclose(one.equity.to_numpy(), two.equity.to_numpy(), rtol=0, atol=1e-9)


def test_kernel_inputs_fill_prices_and_mark_leaving_bars() -> None:
    bars = universe_bars()
    ki = kernel_inputs(bars)
    assert np.isfinite(ki.close).all() and np.isfinite(ki.open).all()
    assert ki.close[181:, 2] == pytest.approx(bars.close.iloc[180, 2] * 0.7)
    assert ki.leave[180, 2] != 0 and ki.leave[99, 3] != 0 and ki.leave[129, 3] == 0
    assert not ki.hold[:40, 1].any() and not ki.hold[100:130, 3].any()
    assert not ki.plain and ki.actions


def test_a_delisting_return_off_the_last_bar_is_refused() -> None:
    from backtest.errors import DataValidationError

    bars = universe_bars()
    dr = bars.delist_return.copy()  # type: ignore[union-attr]
    dr.iloc[50, 0] = -0.1
    bad = Bars(close=bars.close, delist_return=dr)
    with pytest.raises(DataValidationError, match="not on its last listed bar"):
        kernel_inputs(bad)


@pytest.mark.parametrize("strategy", ["Momentum", "SmaCross"])
def test_search_and_walk_forward_evaluators_run_the_universe_rules(strategy: str) -> None:
    """The fused kernels, the generic path and walk-forward's sleeve shortcut do not know
    a universe: on such data they hand over to the per-bar kernel (the same numbers as
    simulate)."""
    import backtest.strategies as strategies
    from backtest.search import StrategyEvaluator
    from backtest.walkforward._evaluator import StrategyReturnsEvaluator

    cls = getattr(strategies, strategy)
    params = (
        {"lookback": [10, 30]} if strategy == "Momentum" else {"fast": [5, 10], "slow": [20, 40]}
    )
    bars = universe_bars()
    one = {k: v[0] for k, v in params.items()}
    single = simulate(bars, cls(**one), periods_per_year=252, fee_bps=2.0)
    ev = StrategyEvaluator(bars, cls, fee_bps=2.0, periods_per_year=252)
    _, _values, kept = ev.evaluate_columns(
        {k: np.array(v) for k, v in params.items()}, keep=np.array([True, False])
    )
    assert kept is not None
    np.testing.assert_allclose(kept[:, 0], single.returns, rtol=0, atol=1e-12)
    wf = StrategyReturnsEvaluator(bars, cls, fee_bps=2.0, periods_per_year=252)
    returns, _ = wf.trade(one, len(bars))
    np.testing.assert_allclose(returns, single.returns, rtol=0, atol=1e-12)
    batch = wf.returns(pd.DataFrame(params), len(bars))
    np.testing.assert_allclose(batch[:, 0], single.returns, rtol=0, atol=1e-12)


def test_target_weights_are_zero_where_an_asset_may_not_be_held() -> None:
    from backtest.engine import target_weights

    bars = universe_bars()
    weights = target_weights(BlockWeights(seed=5), bars).to_numpy()
    hold = kernel_inputs(bars).hold
    assert not (weights[~hold] != 0).any()
    assert (weights[hold] != 0).any()
    result = simulate(bars, BlockWeights(seed=5))  # the book trades exactly these
    assert result.weights is not None
    np.testing.assert_allclose(result.weights.to_numpy(), weights, atol=1e-12)


@pytest.mark.parametrize(
    ("strategy", "sets"),
    [
        ("SmaCross", [{"fast": 5, "slow": 20, "long_short": True}, {"fast": 10, "slow": 40}]),
        ("Momentum", [{"lookback": 10}, {"lookback": 30, "long_short": True}]),
    ],
)
def test_positions_strategies_batched_on_a_universe_equal_simulate(
    strategy: str, sets: list
) -> None:
    """The generic sleeve path with the mask and total returns (engine/_universe_batch.py)."""
    import backtest.strategies as strategies

    cls = getattr(strategies, strategy)
    bars = universe_bars()
    frame = pd.DataFrame(sets)
    if "long_short" in frame:
        frame["long_short"] = frame["long_short"].fillna(False).astype(bool)
    batch = simulate_batch(bars, cls, frame, keep_returns=True, fee_bps=7.0, periods_per_year=252)
    assert batch.returns is not None
    for i, row in enumerate(frame.to_dict("records")):
        single = simulate(bars, cls(**row), fee_bps=7.0, periods_per_year=252)
        np.testing.assert_allclose(batch.returns[:, i], single.returns, rtol=0, atol=1e-12)
        for name in ("sharpe_ratio", "total_return", "n_trades", "win_rate", "exposure"):
            assert batch.metrics[name].iloc[i] == pytest.approx(
                single.metrics[name], rel=1e-9, abs=1e-12, nan_ok=True
            ), name
