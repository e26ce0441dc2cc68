"""Exits (stop-loss, take-profit, trailing stop, time stop) against the plain reference loop."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backtest import metrics
from backtest.data import Bars
from backtest.engine import _exits, _fused, simulate, simulate_batch
from backtest.engine._exits import StopRules, stop_rules, validate_stop_rules
from backtest.errors import ConfigError, DataValidationError
from backtest.metrics import METRIC_NAMES
from backtest.strategies import MeanReversion, Momentum, SmaCross
from tests.book_checks import assert_trades_equal_reference
from tests.reference_exits import Rules, atr_reference, exit_in_bar, sleeve_with_stops


def ohlc(n_bars: int, n_assets: int, seed: int = 3, gap: float = 0.01) -> dict[str, pd.DataFrame]:
    """Random-walk closes with opens that gap (``gap`` = std of the overnight move)."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0.0002, 0.015, (n_bars, n_assets)), axis=0))
    prev = np.vstack([close[:1], close[:-1]])
    open_ = prev * np.exp(rng.normal(0.0, gap, close.shape))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.008, close.shape)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.008, close.shape)))
    index = pd.bdate_range("2016-01-04", periods=n_bars)
    cols = [f"S{j}" for j in range(n_assets)]
    return {
        k: pd.DataFrame(v, index=index, columns=cols)
        for k, v in (("open", open_), ("high", high), ("low", low), ("close", close))
    }


def _opt(x: float) -> float | None:
    return None if math.isnan(x) else x


def _ref_rules(sl: float, tp: float, tsl: float, max_bars: int, lock: bool, atr: bool) -> Rules:
    return Rules(_opt(sl), _opt(tp), _opt(tsl), atr, max_bars, lock)


def _stop_keys(sl: float, tp: float, tsl: float, max_bars: int, lock: bool) -> dict[str, Any]:
    """A ``STOP_CASES`` row as the engine's keys (NaN: unset; ``max_bars`` 0: no time stop)."""
    return {
        "stop_loss": _opt(sl),
        "take_profit": _opt(tp),
        "trailing_stop": _opt(tsl),
        "max_bars": max_bars or None,
        "stop_reentry": "signal_change" if lock else "next_bar",
    }


def reference_portfolio(
    data: dict[str, pd.DataFrame],
    targets: pd.DataFrame,
    cost: float,
    rules: Rules,
    atr_lookback: int = 14,
) -> tuple[np.ndarray, float, float, float, float]:
    """Portfolio returns, n_trades, win_rate, exposure, turnover of the reference loop."""
    n, n_assets = data["close"].shape
    w = 1.0 / n_assets
    port = np.zeros(n)
    trades = wins = expo = turn = 0.0
    for j in range(n_assets):
        o, h, lo, c = (data[k].iloc[:, j].to_numpy() for k in ("open", "high", "low", "close"))
        atr = atr_reference(h, lo, c, atr_lookback) if rules.use_atr else None
        res = sleeve_with_stops(targets.iloc[:, j].to_numpy(), o, h, lo, c, cost, rules, atr)
        port += w * np.array(res.returns)
        trades += len(res.trades)
        wins += sum(tr.growth > 1.0 for tr in res.trades)
        expo += w * np.abs(res.positions).sum()
        turn += w * res.turnover
    return port, trades, (wins / trades if trades else math.nan), expo / n, turn / n * 252


def fused_metrics(
    data: dict[str, pd.DataFrame], cls: type, sets: list[dict], cost: float, rules: StopRules
) -> pd.DataFrame:
    frame = pd.DataFrame(sets)
    arrays = tuple(data[k].to_numpy() for k in ("open", "high", "low"))
    out = _fused.fused_batch(
        data["close"].to_numpy(),
        cls,
        frame,
        cost=cost,
        weights=np.full(data["close"].shape[1], 1.0 / data["close"].shape[1]),
        periods_per_year=252,
        ohlc=arrays,
        rules=rules,
    )
    assert out is not None
    return pd.DataFrame(out[0], columns=list(METRIC_NAMES))


STOP_CASES = [
    pytest.param(0.03, math.nan, math.nan, 0, id="sl"),
    pytest.param(math.nan, 0.04, math.nan, 0, id="tp"),
    pytest.param(math.nan, math.nan, 0.05, 0, id="tsl"),
    pytest.param(0.05, 0.08, 0.03, 0, id="sl-tp-tsl"),
    pytest.param(math.nan, math.nan, math.nan, 7, id="max_bars"),
    pytest.param(0.02, 0.1, 0.06, 15, id="all"),
]


@pytest.mark.parametrize(("sl", "tp", "tsl", "max_bars"), STOP_CASES)
@pytest.mark.parametrize("lock", [True, False], ids=["signal_change", "next_bar"])
@pytest.mark.parametrize("n_assets", [1, 3], ids=["1-asset", "3-assets"])
def test_fused_sma_with_stops_equals_reference_loop(
    sl: float, tp: float, tsl: float, max_bars: int, lock: bool, n_assets: int
) -> None:
    data = ohlc(600, n_assets)
    cost = 0.0012
    sets = [
        {"fast": 5, "slow": 20, "long_short": True},
        {"fast": 10, "slow": 40, "long_short": False},
    ]
    rules = validate_stop_rules(**_stop_keys(sl, tp, tsl, max_bars, lock))
    got = fused_metrics(data, SmaCross, sets, cost, rules)
    for i, params in enumerate(sets):
        targets = SmaCross(**params).positions(data["close"])
        port, n_trades, win_rate, expo, turn = reference_portfolio(
            data, targets, cost, _ref_rules(sl, tp, tsl, max_bars, lock, False)
        )
        want = metrics.return_metrics(port, periods_per_year=252)
        row = got.iloc[i]
        for name, value in want.items():
            np.testing.assert_allclose(row[name], value, rtol=1e-9, atol=1e-12, err_msg=name)
        assert row["n_trades"] == n_trades
        np.testing.assert_allclose(row["win_rate"], win_rate, rtol=1e-12)
        np.testing.assert_allclose(row["exposure"], expo, rtol=1e-12)
        np.testing.assert_allclose(row["turnover"], turn, rtol=1e-12)


def test_stops_change_results_and_count_exits() -> None:
    """The cases above exercise stops: the reference records every exit reason."""
    data = ohlc(600, 1)
    c = data["close"].iloc[:, 0].to_numpy()
    o, h, lo = (data[k].iloc[:, 0].to_numpy() for k in ("open", "high", "low"))
    targets = SmaCross(5, 20, True).positions(data["close"]).iloc[:, 0].to_numpy()
    res = sleeve_with_stops(targets, o, h, lo, c, 0.0, Rules(0.02, 0.1, 0.06, max_bars=15))
    reasons = {t.reason for t in res.trades}
    assert {"stop_loss", "take_profit", "trailing_stop", "max_bars", "signal"} <= reasons
    gapped = [t for t in res.trades if t.reason != "signal" and t.exit_price == o[t.exit_bar]]
    assert gapped, "no gap fill exercised"


@pytest.mark.parametrize("lock", [True, False], ids=["signal_change", "next_bar"])
def test_fused_momentum_atr_stops_equal_reference_loop(lock: bool) -> None:
    data = ohlc(500, 2, seed=11)
    sets = [
        {"lookback": 20, "skip": 0, "long_short": True},
        {"lookback": 5, "skip": 1, "long_short": False},
    ]
    rules = validate_stop_rules(
        stop_loss=2.0,
        take_profit=3.0,
        trailing_stop=1.5,
        stop_unit="atr",
        atr_lookback=10,
        stop_reentry="signal_change" if lock else "next_bar",
    )
    got = fused_metrics(data, Momentum, sets, 0.001, rules)
    for i, params in enumerate(sets):
        targets = Momentum(**params).positions(data["close"])
        port, n_trades, *_ = reference_portfolio(
            data, targets, 0.001, Rules(2.0, 3.0, 1.5, True, 0, lock), atr_lookback=10
        )
        want = metrics.return_metrics(port, periods_per_year=252)
        np.testing.assert_allclose(got.iloc[i]["sharpe_ratio"], want["sharpe_ratio"], rtol=1e-9)
        np.testing.assert_allclose(got.iloc[i]["total_return"], want["total_return"], rtol=1e-9)
        assert got.iloc[i]["n_trades"] == n_trades


def test_per_set_stop_columns_equal_one_call_per_level() -> None:
    """Stop levels as columns of the frame (a search) = one call per level."""
    data = ohlc(400, 1)
    grid = [
        {"fast": 5, "slow": 30, "engine.stop_loss": sl, "engine.trailing_stop": tsl}
        for sl in (0.02, math.nan)
        for tsl in (0.03, 0.08)
    ]
    together = fused_metrics(data, SmaCross, grid, 0.001, StopRules())
    for i, row in enumerate(grid):
        rules = validate_stop_rules(
            stop_loss=row["engine.stop_loss"], trailing_stop=row["engine.trailing_stop"]
        )
        alone = fused_metrics(data, SmaCross, [{"fast": 5, "slow": 30}], 0.001, rules)
        pd.testing.assert_series_equal(together.iloc[i], alone.iloc[0], check_names=False)


def test_atr_equals_plain_loop_and_uses_past_bars_only() -> None:
    data = ohlc(100, 1)
    h, lo, c = (data[k].iloc[:, 0].to_numpy() for k in ("high", "low", "close"))
    got = _exits.average_true_range(h, lo, c, 7)
    np.testing.assert_allclose(got, atr_reference(h, lo, c, 7), rtol=1e-12, equal_nan=True)
    h2 = h.copy()
    h2[50:] *= 3.0
    assert np.array_equal(_exits.average_true_range(h2, lo, c, 7)[:50], got[:50], equal_nan=True)


# ------------------------------------------------------------------ single-bar rules


@pytest.mark.parametrize(
    ("side", "bar", "want"),
    [
        pytest.param(1, (99.0, 99.5, 94.0), ("stop_loss", 95.0), id="long-sl"),
        pytest.param(1, (93.0, 99.0, 92.0), ("stop_loss", 93.0), id="long-sl-gap"),
        pytest.param(1, (101.0, 111.0, 100.0), ("take_profit", 110.0), id="long-tp"),
        pytest.param(1, (112.0, 113.0, 111.0), ("take_profit", 112.0), id="long-tp-gap"),
        pytest.param(1, (100.0, 111.0, 94.0), ("stop_loss", 95.0), id="long-both-stop-first"),
        pytest.param(1, (100.0, 101.0, 96.0), None, id="long-none"),
        pytest.param(-1, (101.0, 105.5, 100.0), ("stop_loss", 105.0), id="short-sl"),
        pytest.param(-1, (107.0, 108.0, 100.0), ("stop_loss", 107.0), id="short-sl-gap"),
        pytest.param(-1, (99.0, 99.5, 89.0), ("take_profit", 90.0), id="short-tp"),
        pytest.param(-1, (88.0, 89.0, 87.0), ("take_profit", 88.0), id="short-tp-gap"),
    ],
)
def test_intrabar_exit_levels_and_gaps(side: int, bar: tuple, want: tuple | None) -> None:
    o, h, lo = bar
    code, fill = _exits.intrabar_exit(
        float(side), 100.0, 100.0, math.nan, False, 0.05, 0.10, math.nan, o, h, lo
    )
    assert exit_in_bar(side, 100.0, 100.0, math.nan, Rules(0.05, 0.10), o, h, lo) == want
    if want is None:
        assert code == _exits.NO_EXIT
    else:
        assert (_exits.EXIT_REASONS[code], fill) == want


def test_trailing_stop_binding_level_and_tie() -> None:
    # long, entry 100, peak 110: SL 95, TSL 110 * 0.95 = 104.5 (nearer) -> trailing_stop at 104.5
    code, fill = _exits.intrabar_exit(1.0, 100.0, 110.0, math.nan, False, 0.05, math.nan, 0.05,
                                      106.0, 107.0, 104.0)  # fmt: skip
    assert (_exits.EXIT_REASONS[code], fill) == ("trailing_stop", 104.5)
    # peak = entry: SL and TSL at the same level -> stop_loss
    code, _ = _exits.intrabar_exit(1.0, 100.0, 100.0, math.nan, False, 0.05, math.nan, 0.05,
                                   99.0, 99.0, 90.0)  # fmt: skip
    assert _exits.EXIT_REASONS[code] == "stop_loss"


# ------------------------------------------------------------------ Hypothesis properties


@dataclasses.dataclass(frozen=True, eq=False)
class Fixed:
    """A strategy whose target for the single asset is given (bar t's on any prefix)."""

    target: np.ndarray

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"A": self.target[: len(prices)]}, index=prices.index)


bars_st = st.lists(
    st.tuples(
        st.floats(-0.06, 0.06), st.floats(-0.05, 0.05), st.floats(0, 0.04), st.floats(0, 0.04)
    ),
    min_size=5,
    max_size=60,
)


def _bars(steps: list[tuple[float, float, float, float]]) -> tuple[np.ndarray, ...]:
    c, o, h, lo = [], [], [], []
    last = 100.0
    for gap, move, up, down in steps:
        op = last * (1 + gap)
        cl = op * (1 + move)
        o.append(op)
        c.append(cl)
        h.append(max(op, cl) * (1 + up))
        lo.append(min(op, cl) * (1 - down))
        last = cl
    return tuple(np.array(x) for x in (o, h, lo, c))


@settings(max_examples=60, deadline=None)
@given(
    steps=bars_st,
    signal=st.lists(st.sampled_from([-1.0, 0.0, 1.0]), min_size=60, max_size=60),
    sl=st.floats(0.005, 0.2),
    tsl=st.one_of(st.none(), st.floats(0.005, 0.2)),
    tp=st.one_of(st.none(), st.floats(0.005, 0.3)),
)
def test_property_fills_within_bar_unless_gapped_and_never_before_entry(
    steps: list, signal: list[float], sl: float, tsl: float | None, tp: float | None
) -> None:
    """On the engine's own trades table (and the reference loop's)."""
    o, h, lo, c = _bars(steps)
    target = np.array(signal[: len(c)])
    index = pd.bdate_range("2020-01-01", periods=len(c))
    frames = {
        k: pd.DataFrame({"A": v}, index=index) for k, v in zip("ohlc", (o, h, lo, c), strict=True)
    }
    bars = Bars(close=frames["c"], open=frames["o"], high=frames["h"], low=frames["l"])
    res = simulate(bars, Fixed(target), stop_loss=sl, trailing_stop=tsl, take_profit=tp)
    ref = sleeve_with_stops(target, o, h, lo, c, 0.0, Rules(sl, tp, tsl))
    engine = res.trades
    assert len(engine) == len(ref.trades)
    for tr, (_, row) in zip(ref.trades, engine.iterrows(), strict=True):
        assert index[tr.exit_bar] == row["exit_time"] and tr.reason == row["exit_reason"]
        assert tr.exit_price == pytest.approx(row["exit_price"], rel=1e-12)
        assert tr.exit_bar >= tr.entry_bar
        if tr.reason in ("stop_loss", "take_profit", "trailing_stop"):
            t = tr.exit_bar
            assert tr.exit_bar > tr.entry_bar  # a close fill is protected from the next bar
            assert lo[t] - 1e-9 <= tr.exit_price <= h[t] + 1e-9
            stop_side = (tr.reason != "take_profit") == (tr.direction > 0)
            # a fill away from the level happens only at the open (a gap), on the worse side
            if not math.isclose(tr.exit_price, o[t]):
                assert (tr.exit_price < o[t]) == stop_side
    # next_open: entries fill at the open and are protected from that bar's low/high on
    nxt = simulate(
        bars, Fixed(target), execution="next_open", stop_loss=sl, trailing_stop=tsl, take_profit=tp
    ).trades
    for _, row in nxt.iterrows():
        t0, t = index.get_loc(row["entry_time"]), index.get_loc(row["exit_time"])
        assert t >= t0 and row["entry_price"] == o[t0]
        if row["exit_reason"] in ("stop_loss", "take_profit", "trailing_stop"):
            assert lo[t] - 1e-9 <= row["exit_price"] <= h[t] + 1e-9


@settings(max_examples=80, deadline=None)
@given(
    steps=bars_st,
    side=st.sampled_from([-1.0, 1.0]),
    loose=st.floats(0.02, 0.3),
    tighten=st.floats(0.1, 0.9),
    trailing=st.booleans(),
)
def test_property_tighter_stop_never_worsens_the_loss(
    steps: list, side: float, loose: float, tighten: float, trailing: bool
) -> None:
    """One trade (entered at the first close, held while the target stays): with a tighter
    stop, the trade never ends worse than the looser stop's trade ended or stood at its
    worst intrabar price, i.e. the worst single-trade loss can only shrink."""
    o, h, lo, c = _bars(steps)
    target = np.full(len(c), side)

    def one(level: float) -> tuple[float, float]:
        rules = Rules(trailing_stop=level) if trailing else Rules(stop_loss=level)
        (trade,) = sleeve_with_stops(target, o, h, lo, c, 0.0, rules).trades
        # the trade's growth marked at each held bar's adverse extreme (the sleeve compounds
        # bar by bar: growth before the bar x (1 + side * (extreme / previous close - 1)))
        worst_seen, growth = trade.growth, 1.0
        for t in range(trade.entry_bar + 1, trade.exit_bar + 1):
            extreme = lo[t] if side > 0 else h[t]
            worst_seen = min(worst_seen, growth * (1.0 + side * (extreme / c[t - 1] - 1.0)))
            growth *= 1.0 + side * (c[t] / c[t - 1] - 1.0)
        return trade.growth, worst_seen

    tight_growth, _ = one(loose * tighten)
    _, loose_worst = one(loose)
    assert tight_growth >= loose_worst - 1e-12


def test_no_look_ahead_with_stops() -> None:
    """Overwrite every bar after t: every set's returns up to t unchanged."""
    data = ohlc(300, 2, seed=5)
    t = 180
    changed = {k: v.copy() for k, v in data.items()}
    rng = np.random.default_rng(0)
    for k in changed:
        changed[k].iloc[t + 1 :] *= rng.uniform(0.5, 1.5, changed[k].iloc[t + 1 :].shape)
    changed["high"] = np.maximum(changed["high"], np.maximum(changed["open"], changed["close"]))
    changed["low"] = np.minimum(changed["low"], np.minimum(changed["open"], changed["close"]))
    rules = validate_stop_rules(stop_loss=0.03, take_profit=0.05, trailing_stop=0.04, max_bars=9)
    sets = pd.DataFrame([{"fast": 3, "slow": 12, "long_short": True}])

    def returns(d: dict[str, pd.DataFrame]) -> np.ndarray:
        out = _fused.fused_batch(
            d["close"].to_numpy(),
            SmaCross,
            sets,
            cost=0.001,
            weights=np.array([0.5, 0.5]),
            periods_per_year=252,
            keep=np.array([True]),
            ohlc=tuple(d[k].to_numpy() for k in ("open", "high", "low")),
            rules=rules,
        )
        assert out is not None and out[1] is not None
        return out[1][0]

    a, b = returns(data), returns(changed)
    np.testing.assert_array_equal(a[: t + 1], b[: t + 1])
    assert not np.array_equal(a, b)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"stop_loss": 0.0}, "engine.stop_loss"),
        ({"stop_loss": -0.1}, "engine.stop_loss"),
        ({"take_profit": 1.0}, "engine.take_profit"),
        ({"trailing_stop": 1.5}, "engine.trailing_stop"),
        ({"trailing_stop": -2.0, "stop_unit": "atr"}, "engine.trailing_stop"),
        ({"stop_loss": 2.0, "stop_unit": "atr", "atr_lookback": 0}, "engine.atr_lookback"),
        ({"max_bars": -1}, "engine.max_bars"),
        ({"stop_unit": "pct"}, "engine.stop_unit"),
        ({"stop_reentry": "never"}, "engine.stop_reentry"),
    ],
    ids=lambda x: str(x),
)
def test_bad_stop_values_name_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_stop_rules(**kwargs)
    assert info.value.key == key
    assert key.split(".")[1] in str(info.value)


def test_atr_multiples_above_one_are_fine() -> None:
    assert validate_stop_rules(stop_loss=2.5, stop_unit="atr").stop_loss == 2.5


def test_strategy_attribute_overrides_engine() -> None:
    class Engine:
        stop_loss = 0.05
        trailing_stop = 0.1

    class Strat:
        stop_loss = 0.02
        take_profit = None

    rules = stop_rules(Engine(), Strat())
    assert (rules.stop_loss, rules.trailing_stop) == (0.02, 0.1)
    assert math.isnan(rules.take_profit)
    # keywords stand for engine options: the strategy still wins
    assert stop_rules(None, Strat(), stop_loss=0.3).stop_loss == 0.02


def test_search_column_level_out_of_range_is_named() -> None:
    data = ohlc(100, 1)
    with pytest.raises(ConfigError, match="trailing_stop") as info:
        fused_metrics(
            data, SmaCross, [{"fast": 2, "slow": 5, "trailing_stop": 1.2}], 0.0, StopRules()
        )
    assert info.value.key == "engine.trailing_stop"


def test_stops_without_high_low_name_the_column() -> None:
    close = ohlc(100, 1)["close"].to_numpy()
    with pytest.raises(DataValidationError, match="'high'") as info:
        _fused.fused_batch(
            close,
            SmaCross,
            pd.DataFrame([{"fast": 2, "slow": 5}]),
            cost=0.0,
            weights=np.ones(1),
            periods_per_year=252,
            rules=validate_stop_rules(stop_loss=0.05),
        )
    assert info.value.column == "high"


# ------------------------------------------------------------------ the single backtest


def _as_bars(data: dict[str, pd.DataFrame]) -> Bars:
    return Bars(close=data["close"], open=data["open"], high=data["high"], low=data["low"])


def _reference_trades(
    data: dict[str, pd.DataFrame], targets: pd.DataFrame, cost: float, rules: Rules
) -> tuple[np.ndarray, pd.DataFrame]:
    n, n_assets = data["close"].shape
    port = np.zeros(n)
    rows = []
    index = data["close"].index
    for j, asset in enumerate(data["close"].columns):
        o, h, lo, c = (data[k].iloc[:, j].to_numpy() for k in ("open", "high", "low", "close"))
        res = sleeve_with_stops(targets.iloc[:, j].to_numpy(), o, h, lo, c, cost, rules)
        port += np.array(res.returns) / n_assets
        rows += [
            {
                "asset": asset,
                "direction": tr.direction,
                "entry_time": index[tr.entry_bar],
                "exit_time": index[tr.exit_bar],
                "entry_price": tr.entry_price,
                "exit_price": tr.exit_price,
                "return": tr.growth - 1.0,
                "exit_reason": tr.reason,
            }
            for tr in res.trades
        ]
    trades = pd.DataFrame(rows).sort_values(["entry_time", "asset"], kind="stable")
    return port, trades.reset_index(drop=True)


@pytest.mark.parametrize(("sl", "tp", "tsl", "max_bars"), STOP_CASES)
@pytest.mark.parametrize("lock", [True, False], ids=["signal_change", "next_bar"])
def test_simulate_with_stops_equals_reference_loop(
    sl: float, tp: float, tsl: float, max_bars: int, lock: bool
) -> None:
    """The engine's per-bar kernel (execution=close, rebalance=bar): returns and trades."""
    data = ohlc(500, 2, seed=21)
    strategy = SmaCross(5, 20, long_short=True)
    res = simulate(
        _as_bars(data),
        strategy,
        fee_bps=8.0,
        slippage_bps=2.0,
        **_stop_keys(sl, tp, tsl, max_bars, lock),
    )
    want, trades = _reference_trades(
        data,
        strategy.positions(data["close"]),
        0.001,
        _ref_rules(sl, tp, tsl, max_bars, lock, False),
    )
    np.testing.assert_allclose(res.returns.to_numpy(), want, rtol=0, atol=1e-9)
    got = res.trades.sort_values(["entry_time", "asset"], kind="stable").reset_index(drop=True)
    got = got.assign(exit_reason=got["exit_reason"].replace({"end": "end"}))
    pd.testing.assert_frame_equal(
        got[list(trades.columns)], trades, check_dtype=False, rtol=1e-9, atol=1e-9
    )
    # and the fused kernel of a search says the same
    fused = fused_metrics(
        data,
        SmaCross,
        [{"fast": 5, "slow": 20, "long_short": True}],
        0.001,
        validate_stop_rules(**_stop_keys(sl, tp, tsl, max_bars, lock)),
    ).iloc[0]
    for name in ("total_return", "sharpe_ratio", "max_drawdown", "n_trades", "win_rate"):
        np.testing.assert_allclose(fused[name], res.metrics[name], rtol=1e-9, err_msg=name)


def test_summary_counts_exit_reasons() -> None:
    data = ohlc(400, 2, seed=4)
    res = simulate(
        _as_bars(data), SmaCross(5, 20, True), stop_loss=0.02, take_profit=0.1, trailing_stop=0.06
    )
    counts = _exits.exit_reason_counts(res.trades)
    assert sum(counts.values()) == len(res.trades)
    for reason in ("stop_loss", "take_profit", "trailing_stop"):
        assert counts.get(reason, 0) > 0, reason
        assert counts[reason] == int((res.trades["exit_reason"] == reason).sum())


def test_strategy_stop_attribute_wins_over_engine() -> None:
    @dataclasses.dataclass(frozen=True)
    class Stopped(SmaCross):
        stop_loss: float | None = 0.01

    data = ohlc(300, 1, seed=2)
    tight = simulate(_as_bars(data), Stopped(5, 20), stop_loss=0.2)
    loose = simulate(_as_bars(data), SmaCross(5, 20), stop_loss=0.2)
    plain = simulate(_as_bars(data), SmaCross(5, 20), stop_loss=0.01)
    assert not tight.returns.equals(loose.returns)
    np.testing.assert_array_equal(tight.returns.to_numpy(), plain.returns.to_numpy())


def test_simulate_stops_on_closes_only_is_refused() -> None:
    with pytest.raises(DataValidationError) as info:
        simulate(ohlc(100, 1)["close"], SmaCross(5, 20), trailing_stop=0.05)
    assert info.value.column in ("high", "low", "open")


# ------------------------------------------------------------------ search, walk-forward, app


def test_search_over_stop_levels_scores_real_backtests(compose, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """engine.stop_loss in search.space: trials come from the fused stop kernel, and the
    best trial's score equals the full single backtest of its parameters (with its stops)."""
    from omegaconf import open_dict

    from backtest.app import run
    from backtest.results import load_result

    cfg = compose(
        "+experiment=sma_stops_wf",
        f"output_dir={tmp_path}",
        "tracking.enabled=false",
    )
    with open_dict(cfg):
        cfg.data.n_bars = 800
        cfg.walkforward = None  # the search alone
        cfg.montecarlo = None
    run(cfg)
    record = load_result(tmp_path).record
    trials = pd.read_parquet(tmp_path / "trials.parquet")
    assert {"engine.stop_loss", "engine.trailing_stop"} <= set(trials.columns)
    assert trials["engine.stop_loss"].nunique() == 5
    assert record["metrics"]["sharpe_ratio"] == pytest.approx(record["objective"], rel=1e-9)
    assert sum(record["exit_reasons"].values()) == record["metrics"]["n_trades"]
    assert "exits" in capsys.readouterr().out


def test_parameter_jitter_draws_stop_levels_and_runs_them() -> None:
    """Monte Carlo parameter_jitter of engine.stop_loss: each path is a real backtest with
    its drawn stop level (equal to simulate() with that level)."""
    from backtest.config import EngineConfig, MonteCarloConfig, MonteCarloMethod
    from backtest.montecarlo import MonteCarloSimulator

    data = ohlc(400, 2, seed=8)
    bars = _as_bars(data)
    engine = EngineConfig(fee_bps=5.0, stop_loss=0.04, trailing_stop=0.08)
    strategy = SmaCross(5, 30)
    cfg = MonteCarloConfig(
        method=MonteCarloMethod.parameter_jitter,
        n_paths=12,
        seed=3,
        jitter={"engine.stop_loss": 0.5, "fast": [5, 10]},
    )
    report = MonteCarloSimulator(cfg, progress=False).run(
        None, prices=bars, strategy=strategy, engine=engine
    )
    paths = report.paths
    levels = paths["engine.stop_loss"].to_numpy()
    assert ((levels > 0.02 - 1e-12) & (levels < 0.06 + 1e-12)).all() and len(set(levels)) > 5
    for i in (0, 5):
        res = simulate(
            bars,
            SmaCross(int(paths["fast"].iloc[i]), 30),
            fee_bps=5.0,
            stop_loss=float(levels[i]),
            trailing_stop=0.08,
        )
        np.testing.assert_allclose(
            paths["sharpe_ratio"].iloc[i], res.metrics["sharpe_ratio"], rtol=1e-9
        )


def test_parameter_jitter_of_a_stop_level_needs_it_set() -> None:
    from backtest.config import EngineConfig, MonteCarloConfig, MonteCarloMethod
    from backtest.montecarlo import MonteCarloSimulator

    cfg = MonteCarloConfig(
        method=MonteCarloMethod.parameter_jitter, n_paths=4, jitter={"engine.take_profit": 0.2}
    )
    with pytest.raises(ConfigError) as info:
        MonteCarloSimulator(cfg, progress=False).run(
            None, prices=_as_bars(ohlc(200, 1)), strategy=SmaCross(5, 30), engine=EngineConfig()
        )
    assert info.value.key == "montecarlo.jitter.engine.take_profit"


def test_search_then_parameter_jitter_of_its_best_stop(compose, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Monte Carlo attached to a search jitters the BEST trial's stop level."""
    from omegaconf import open_dict

    from backtest.app import run
    from backtest.results import load_result

    cfg = compose(
        "+experiment=sma_stops_wf",
        "montecarlo=parameter_jitter",
        f"output_dir={tmp_path}",
        "tracking.enabled=false",
        "figures=false",
    )
    with open_dict(cfg):
        cfg.data.n_bars = 800
        cfg.walkforward = None
        cfg.montecarlo.n_paths = 40
        cfg.montecarlo.jitter = {"engine.stop_loss": 0.25}
    run(cfg)
    record = load_result(tmp_path).record
    best = record["search"]["best_params"]["engine.stop_loss"]
    mc = record["montecarlo"]
    assert mc["details"]["base_params"]["engine.stop_loss"] == pytest.approx(best)
    paths = pd.read_parquet(tmp_path / "montecarlo_paths.parquet")
    drawn = paths["engine.stop_loss"]
    assert drawn.min() >= best * 0.75 - 1e-12 and drawn.max() <= best * 1.25 + 1e-12


# ------------------------------------------------------------------ cash/units with exits

UNITS_CASES = [
    pytest.param("next_open", "bar", id="next_open"),
    pytest.param("next_open", "W", id="next_open-weekly"),
    pytest.param("close", "W", id="close-weekly"),
]


@pytest.mark.parametrize(("sl", "tp", "tsl", "max_bars"), STOP_CASES)
@pytest.mark.parametrize(("execution", "rebalance"), UNITS_CASES)
@pytest.mark.parametrize("lock", [True, False], ids=["signal_change", "next_bar"])
def test_units_book_with_stops_equals_reference_loop(
    sl: float, tp: float, tsl: float, max_bars: int, execution: str, rebalance: str, lock: bool
) -> None:
    """Both execution timings in cash/units accounting: returns and trades to 1e-9."""
    from tests.engine_reference import schedule
    from tests.reference_exits import units_with_stops

    data = ohlc(400, 2, seed=31)
    strategy = SmaCross(5, 20, long_short=True)
    res = simulate(
        _as_bars(data),
        strategy,
        fee_bps=6.0,
        slippage_bps=4.0,
        execution=execution,
        rebalance=rebalance,
        **_stop_keys(sl, tp, tsl, max_bars, lock),
    )
    signal = strategy.positions(data["close"]).to_numpy()
    arrays = [data[k].to_numpy() for k in ("open", "high", "low", "close")]
    returns, trades = units_with_stops(
        *arrays,
        signal * 0.5,
        signal,
        schedule(data["close"].index, rebalance),
        0.001,
        _ref_rules(sl, tp, tsl, max_bars, lock, False),
        execution == "next_open",
    )
    np.testing.assert_allclose(res.returns.to_numpy(), returns, rtol=0, atol=1e-9)
    assert_trades_equal_reference(res, trades, data["close"].index)


@pytest.mark.parametrize("lock", [True, False], ids=["signal_change", "next_bar"])
def test_simulate_atr_stops_equal_reference_loop(lock: bool) -> None:
    data = ohlc(400, 2, seed=17)
    strategy = SmaCross(5, 20, long_short=True)
    res = simulate(
        _as_bars(data),
        strategy,
        fee_bps=10.0,
        stop_unit="atr",
        atr_lookback=10,
        stop_loss=2.0,
        take_profit=3.0,
        trailing_stop=1.5,
        stop_reentry="signal_change" if lock else "next_bar",
    )
    want, n_trades, *_ = reference_portfolio(
        data, strategy.positions(data["close"]), 0.001, Rules(2.0, 3.0, 1.5, True, 0, lock), 10
    )
    np.testing.assert_allclose(res.returns.to_numpy(), want, rtol=0, atol=1e-9)
    assert len(res.trades) == n_trades


@pytest.mark.parametrize("execution", ["close", "next_open"])
def test_simulate_no_look_ahead_with_stops(execution: str) -> None:
    """Overwrite every bar after t: the engine's returns up to t unchanged."""
    data = ohlc(300, 2, seed=6)
    t = 150
    changed = {k: v.copy() for k, v in data.items()}
    rng = np.random.default_rng(1)
    for k in changed:
        changed[k].iloc[t + 1 :] *= rng.uniform(0.6, 1.4, changed[k].iloc[t + 1 :].shape)
    changed["high"] = np.maximum(changed["high"], np.maximum(changed["open"], changed["close"]))
    changed["low"] = np.minimum(changed["low"], np.minimum(changed["open"], changed["close"]))
    kw = {"stop_loss": 0.03, "take_profit": 0.06, "trailing_stop": 0.04, "max_bars": 8}

    def run(d: dict[str, pd.DataFrame]) -> np.ndarray:
        res = simulate(_as_bars(d), SmaCross(3, 12, True), execution=execution, **kw)
        return res.returns.to_numpy()

    a, b = run(data), run(changed)
    np.testing.assert_array_equal(a[: t + 1], b[: t + 1])
    assert not np.array_equal(a, b)


# ------------------------------------------------------------------ batched paths, bad config


@pytest.mark.parametrize(
    ("cls", "params"),
    [
        pytest.param(SmaCross, {"fast": 5, "slow": 20, "long_short": True}, id="fused"),
        pytest.param(MeanReversion, {"lookback": 10, "entry_z": 1.0}, id="generic"),
    ],
)
def test_simulate_batch_stop_columns_equal_simulate(cls: type, params: dict) -> None:
    """engine.* stop columns per set: the batched path (fused or the engine's kernel loop)
    equals one simulate() per set."""
    data = ohlc(300, 2, seed=12)
    bars = _as_bars(data)
    frame = pd.DataFrame(
        [
            {**params, "engine.stop_loss": sl, "engine.trailing_stop": tsl}
            for sl in (0.02, 0.05)
            for tsl in (0.03, None)
        ]
    )
    batch = simulate_batch(bars, cls, frame, fee_bps=5.0, take_profit=0.08).metrics
    for i, row in frame.iterrows():
        tsl = row["engine.trailing_stop"]
        res = simulate(
            bars,
            cls(**params),
            fee_bps=5.0,
            take_profit=0.08,
            stop_loss=row["engine.stop_loss"],
            trailing_stop=None if pd.isna(tsl) else tsl,
        )
        for name in ("total_return", "sharpe_ratio", "max_drawdown", "n_trades"):
            np.testing.assert_allclose(batch.loc[i, name], res.metrics[name], rtol=1e-9)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["engine.stop_loss=1.5"], "engine.stop_loss"),
        (["engine.trailing_stop=0"], "engine.trailing_stop"),
        (
            ["engine.stop_unit=atr", "engine.stop_loss=2", "engine.atr_lookback=0"],
            "engine.atr_lookback",
        ),
    ],
    ids=["stop_loss", "trailing_stop", "atr_lookback"],
)
def test_bad_stop_config_fails_before_anything_runs(compose, tmp_path, overrides, key) -> None:  # type: ignore[no-untyped-def]
    from backtest.app import run

    cfg = compose(
        "+experiment=sma_cross",
        *overrides,
        f"output_dir={tmp_path / 'run'}",
        "tracking.enabled=false",
    )
    with pytest.raises(ConfigError) as info:
        run(cfg)
    assert info.value.key == key
    assert not (tmp_path / "run" / "result.json").exists()


def test_strategy_class_stop_attribute_applies_in_the_batched_path() -> None:
    class TightSma(SmaCross):
        stop_loss: ClassVar[float] = 0.01

    data = ohlc(300, 1, seed=2)
    bars = _as_bars(data)
    frame = pd.DataFrame([{"fast": 5, "slow": 20}])
    got = simulate_batch(bars, TightSma, frame, stop_loss=0.2).metrics.iloc[0]
    want = simulate(bars, SmaCross(5, 20), stop_loss=0.01).metrics
    np.testing.assert_allclose(got["sharpe_ratio"], want["sharpe_ratio"], rtol=1e-9)
    assert got["n_trades"] == want["n_trades"]


def test_stops_on_a_closes_only_file_name_the_column(compose, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A wide CSV has closes only: a stop level is refused before the run, naming 'high'."""
    from backtest.app import run

    path = tmp_path / "wide.csv"
    ohlc(300, 2)["close"].rename_axis("date").to_csv(path)
    cfg = compose(
        "+experiment=sma_cross",
        "data=csv",
        f"data.path={path}",
        "engine.trailing_stop=0.05",
        f"output_dir={tmp_path / 'run'}",
        "tracking.enabled=false",
    )
    with pytest.raises(DataValidationError, match="high and low") as info:
        run(cfg)
    assert info.value.column in ("high", "low", "open")
    assert not (tmp_path / "run" / "result.json").exists()


def test_a_time_stop_of_zero_bars_is_refused_naming_the_key() -> None:
    """``max_bars=0`` used to be accepted and mean "no time stop": a setting ignored."""
    from backtest.data import synthetic_prices
    from backtest.engine import simulate
    from backtest.errors import ConfigError
    from backtest.strategies import SmaCross

    prices = synthetic_prices(n_bars=200, n_assets=1, seed=3)
    with pytest.raises(ConfigError, match=r"engine.max_bars=0 .*engine.max_bars=null") as info:
        simulate(prices, SmaCross(fast=5, slow=20), max_bars=0)
    assert info.value.key == "engine.max_bars"
    assert simulate(prices, SmaCross(fast=5, slow=20), max_bars=5).metrics  # 5 bars: fine
