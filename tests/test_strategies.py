"""Strategies against plain pandas / loop references, validation and the allow-list."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from backtest.errors import ConfigError
from backtest.strategies import Breakout, BuyAndHold, MeanReversion, Momentum, SmaCross
from backtest.strategies._loader import build_strategy, check_target


@pytest.fixture
def prices() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    idx = pd.bdate_range("2018-01-01", periods=500, name="date")
    data = 50 * np.exp(np.cumsum(rng.normal(0, 0.015, size=(500, 2)), axis=0))
    return pd.DataFrame(data, index=idx, columns=["X", "Y"])


def test_sma_cross_matches_pandas_rolling(prices: pd.DataFrame) -> None:
    fast = prices.rolling(10).mean()
    slow = prices.rolling(40).mean()
    expected = (fast > slow).astype(float) - ((fast < slow) & slow.notna()).astype(float)
    got = SmaCross(10, 40, long_short=True).positions(prices)
    # exact ties cannot happen with continuous prices; compare signs away from 1e-9 margins
    margin = ((fast - slow).abs() > 1e-9).to_numpy()
    np.testing.assert_array_equal(got.to_numpy()[margin], expected.to_numpy()[margin])
    assert margin.sum() > 0.9 * margin.size
    assert (got.iloc[:39] == 0).all().all()


def test_momentum_matches_shifted_pct_change(prices: pd.DataFrame) -> None:
    signal = prices.shift(5) / prices.shift(65) - 1
    expected = np.sign(signal).fillna(0.0)
    got = Momentum(60, 5, long_short=True).positions(prices)
    pd.testing.assert_frame_equal(got, expected, check_names=False)
    long_only = Momentum(60, 5).positions(prices)
    pd.testing.assert_frame_equal(long_only, expected.clip(lower=0), check_names=False)


def _mean_reversion_loop(close: np.ndarray, lookback: int, entry: float, exit_: float):
    s = pd.Series(close)
    z = (s - s.rolling(lookback).mean()) / s.rolling(lookback).std()
    pos, out = 0.0, []
    for value in z:
        if not np.isnan(value):
            if (pos > 0 and value >= -exit_) or (pos < 0 and value <= exit_):
                pos = 0.0
            if pos == 0:
                pos = 1.0 if value < -entry else (-1.0 if value > entry else 0.0)
        out.append(pos)
    return np.array(out)


def test_mean_reversion_matches_loop(prices: pd.DataFrame) -> None:
    got = MeanReversion(20, 1.5, 0.3).positions(prices)
    for col in prices:
        np.testing.assert_array_equal(
            got[col].to_numpy(), _mean_reversion_loop(prices[col].to_numpy(), 20, 1.5, 0.3)
        )
    assert set(np.unique(got.to_numpy())) <= {-1.0, 0.0, 1.0}


def test_breakout_matches_loop(prices: pd.DataFrame) -> None:
    got = Breakout(30, long_short=True).positions(prices)
    upper = prices.shift(1).rolling(30).max()
    lower = prices.shift(1).rolling(30).min()
    for col in prices:
        pos, out = 0.0, []
        for t in range(len(prices)):
            if t >= 30:
                if prices[col].iloc[t] > upper[col].iloc[t]:
                    pos = 1.0
                elif prices[col].iloc[t] < lower[col].iloc[t]:
                    pos = -1.0
            out.append(pos)
        np.testing.assert_array_equal(got[col].to_numpy(), out)


def test_breakout_batch_equals_a_loop_for_every_lookback_with_ties() -> None:
    """The batch finds breakouts from the last close at least as high / low: every
    lookback (1 to past the data), long-only and long-short, on closes with repeats
    (a close equal to the channel's edge is no breakout), against a plain loop."""
    rng = np.random.default_rng(11)
    close = np.round(50 + np.cumsum(rng.normal(0, 1.0, 300)), 0)  # many ties
    close[100:130] = close[100]  # a flat stretch
    lookbacks = np.array([1, 2, 3, 5, 12, 29, 64, 200, 299, 300, 350] * 2)
    long_short = np.repeat([False, True], 11)
    batch = Breakout.batch_positions(close, {"lookback": lookbacks, "long_short": long_short})
    for i, (w, ls) in enumerate(zip(lookbacks, long_short, strict=True)):
        pos, want = 0.0, []
        for t in range(len(close)):
            if t >= w:
                window = close[t - w : t]
                if close[t] > window.max():
                    pos = 1.0
                elif close[t] < window.min():
                    pos = -1.0 if ls else 0.0
            want.append(pos)
        np.testing.assert_array_equal(batch[:, i], want, err_msg=f"lookback {w}, ls {ls}")


@pytest.mark.parametrize(
    ("cls", "params"),
    [
        (SmaCross, {"fast": 5, "slow": 30}),
        (SmaCross, {"fast": 5, "slow": 30, "long_short": True}),
        (Momentum, {"lookback": 20, "skip": 3, "long_short": True}),
        (MeanReversion, {"lookback": 15, "entry_z": 1.0, "exit_z": 0.0}),
        (Breakout, {"lookback": 12}),
    ],
    ids=["sma", "sma-ls", "mom", "mr", "brk"],
)
def test_batch_positions_equal_single(prices: pd.DataFrame, cls, params) -> None:  # type: ignore[no-untyped-def]
    close = prices["X"].to_numpy()
    batch = cls.batch_positions(close, {k: np.array([v, v]) for k, v in params.items()})
    single = cls(**params).positions(prices)["X"].to_numpy()
    np.testing.assert_array_equal(batch[:, 0], single)
    np.testing.assert_array_equal(batch[:, 1], single)


@pytest.mark.parametrize("cls", [SmaCross, Momentum, MeanReversion, Breakout])
def test_batch_defaults_are_the_class_defaults_and_whole_numbers_are_required(
    prices: pd.DataFrame, cls
) -> None:  # type: ignore[no-untyped-def]
    """A set without a parameter takes the dataclass default; 1.5 bars is refused, not cut."""
    close = prices["X"].to_numpy()
    np.testing.assert_array_equal(
        cls.batch_positions(close, {})[:, 0], cls().positions(prices)["X"].to_numpy()
    )
    name = "fast" if cls is SmaCross else "lookback"
    with pytest.raises(ConfigError, match=f"'{name}' must be an integer, got 20.5") as info:
        cls.batch_positions(close, {name: np.array([20.5])})
    assert info.value.key == name


def test_buy_and_hold_is_always_long(prices: pd.DataFrame) -> None:
    assert (BuyAndHold().positions(prices) == 1.0).all().all()


@pytest.mark.parametrize(
    ("factory", "key"),
    [
        (lambda: SmaCross(50, 20), "fast"),
        (lambda: SmaCross(0, 20), "fast"),
        (lambda: Momentum(0), "lookback"),
        (lambda: Momentum(10, -1), "skip"),
        (lambda: MeanReversion(1), "lookback"),
        (lambda: MeanReversion(20, 1.0, 1.5), "exit_z"),
        (lambda: Breakout(0), "lookback"),
        (lambda: SmaCross("ten", 20), "fast"),
    ],
    ids=[
        "fast>=slow",
        "fast<1",
        "lookback<1",
        "skip<0",
        "mr-lookback",
        "exit>=entry",
        "breakout",
        "not-int",
    ],
)
def test_invalid_parameters_name_the_parameter(factory, key: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=key) as err:
        factory()
    assert err.value.key == key


def test_strategies_do_not_mutate_input(prices: pd.DataFrame) -> None:
    before = prices.copy()
    for s in (SmaCross(), Momentum(20), MeanReversion(), Breakout(20), BuyAndHold()):
        s.positions(prices)
    pd.testing.assert_frame_equal(prices, before)


@pytest.mark.parametrize(
    "target",
    ["subprocess.run", "os.system", "builtins.eval", "backtestevil.X", "backtest"],
    ids=["subprocess", "os", "eval", "prefix-trick", "no-attr"],
)
def test_disallowed_targets_are_refused_before_import(target: str) -> None:
    sys.modules.pop("backtestevil", None)
    with pytest.raises(ConfigError, match="_target_") as err:
        build_strategy({"_target_": target})
    assert err.value.key == "strategy._target_"
    assert "backtestevil" not in sys.modules


def test_allowed_modules_admit_user_strategies(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "mystrats.py").write_text(
        "import pandas as pd\n"
        "class Half:\n"
        "    def __init__(self, level=0.5):\n"
        "        self.level = level\n"
        "    def positions(self, prices):\n"
        "        return pd.DataFrame(self.level, index=prices.index, columns=prices.columns)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="allowed_modules"):
        check_target("mystrats.Half")
    cls, params, inst = build_strategy({"_target_": "mystrats.Half", "level": 0.25}, ["mystrats"])
    assert cls.__name__ == "Half" and params == {"level": 0.25} and inst.level == 0.25
    with pytest.raises(ConfigError, match=r"strategy\.nope is not a parameter of Half"):
        build_strategy({"_target_": "mystrats.Half", "nope": 1}, ["mystrats"])


def test_every_built_in_schema_row_matches_its_strategy_signature() -> None:
    """The one table of strategy schemas (config layer) says what the classes say."""
    import dataclasses
    import inspect

    import backtest.strategies as strategies
    from backtest.config import _STRATEGY_SCHEMAS, _STRATEGY_TABLE

    assert set(_STRATEGY_TABLE) == set(_STRATEGY_SCHEMAS)
    for option, (name, params) in _STRATEGY_TABLE.items():
        cls = getattr(strategies, name)
        signature = {
            p.name: p.default
            for p in inspect.signature(cls).parameters.values()
            if p.default is not inspect.Parameter.empty
        }
        assert {k: d for k, (_, d) in params.items()} == signature, option
        schema = _STRATEGY_SCHEMAS[option]
        fields = {f.name: f.default for f in dataclasses.fields(schema)}
        assert fields.pop("_target_") == f"backtest.strategies.{name}"
        assert fields == signature, option
