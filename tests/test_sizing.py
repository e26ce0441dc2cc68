"""Fills that respect volume: the participation cap and zipline's volume-share impact.

The engine against the plain loop of ``tests/reference_orders.py`` to 1e-9 (single and
batched, both executions, market and stop entries, long and short), and the cap itself:
no opening or adding trade ever exceeds ``max_participation x volume``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.data import Bars
from backtest.engine import simulate, simulate_batch
from backtest.errors import ConfigError, DataValidationError
from backtest.strategies import SmaCross
from tests.engine_reference import schedule
from tests.reference_exits import Rules
from tests.reference_orders import Orders, units_with_orders
from tests.test_engine_stops import ohlc
from tests.test_orders import _compare


def _bars(seed: int = 6, n: int = 300, assets: int = 2) -> Bars:
    data = ohlc(n, assets, seed=seed, gap=0.01)
    rng = np.random.default_rng(seed)
    volume = pd.DataFrame(
        rng.lognormal(np.log(2.0), 0.6, (n, assets)),
        index=data["close"].index,
        columns=data["close"].columns,
    )  # fmt: skip  (units of the asset: a capital of 1 buys ~0.005 units at 100)
    volume.iloc[::37] = 0.0  # bars without volume
    return Bars(close=data["close"], open=data["open"], high=data["high"], low=data["low"],
                volume=volume * 0.002)  # fmt: skip


CASES = {
    "market-close": ("market", "close", 0.5, 0.1),
    "market-next_open": ("market", "next_open", 0.2, 0.3),
    "stop-next_open": ("stop", "next_open", 0.3, 0.1),
    "limit-close": ("limit", "close", 1.0, 0.05),
}


@pytest.mark.parametrize("case", list(CASES))
def test_participation_and_impact_equal_reference_loop(case: str) -> None:
    kind, execution, part, impact = CASES[case]
    bars = _bars()
    strategy = SmaCross(4, 15, long_short=True)
    extra = {} if kind == "market" else {"entry_offset": 0.005, "entry_valid_bars": 4}
    res = simulate(
        bars, strategy, fee_bps=5.0, execution=execution, entry_order=kind,
        max_participation=part, impact=impact, stop_loss=0.04, **extra,
    )  # fmt: skip
    signal = strategy.positions(bars.close).to_numpy()
    arrays = [getattr(bars, k).to_numpy() for k in ("open", "high", "low", "close")]
    returns, trades = units_with_orders(
        *arrays, signal / 2, signal, schedule(bars.index, "bar"), 0.0005, Rules(stop_loss=0.04),
        Orders(kind, extra.get("entry_offset", 0.0), extra.get("entry_valid_bars"),
               max_participation=part, impact=impact),
        execution == "next_open", volume=bars.volume.to_numpy(),
    )  # fmt: skip
    _compare(res, returns, trades, bars.index)
    assert res.metrics["cost_slippage"] > 0  # the impact was charged


def test_no_opening_trade_exceeds_the_cap() -> None:
    bars = _bars(seed=3)
    res = simulate(bars, SmaCross(4, 15, long_short=True), max_participation=0.25,
                   execution="close", initial_capital=1.0)  # fmt: skip
    assert res.weights is not None
    units = res.weights.to_numpy() * (1.0 + res.returns).cumprod().to_numpy()[:, None]
    units = units / bars.close.to_numpy()
    prev = np.vstack([np.zeros((1, units.shape[1])), units[:-1]])
    adding = np.where(np.sign(units) != np.sign(prev), np.abs(units), np.abs(units) - np.abs(prev))
    cap = 0.25 * bars.volume.to_numpy()
    assert (adding <= cap + 1e-12).all()
    assert (adding > cap - 1e-9).any()  # it binds


def test_batched_equals_single_with_volume_columns() -> None:
    bars = _bars(seed=8)
    sets = pd.DataFrame(
        {"fast": [4, 5, 4], "slow": [15, 20, 15], "long_short": [True, True, False],
         "engine.max_participation": [0.2, 0.5, 1.0], "engine.impact": [0.1, 0.0, 0.3]}
    )  # fmt: skip
    batch = simulate_batch(bars, SmaCross, sets, fee_bps=2.0, execution="next_open",
                           keep_returns=True)  # fmt: skip
    assert batch.returns is not None
    for i, row in sets.iterrows():
        one = simulate(
            bars, SmaCross(int(row["fast"]), int(row["slow"]), long_short=bool(row["long_short"])),
            fee_bps=2.0, execution="next_open",
            max_participation=float(row["engine.max_participation"]),
            impact=float(row["engine.impact"]),
        )  # fmt: skip
        np.testing.assert_allclose(batch.returns[:, i], one.returns.to_numpy(), atol=1e-9, rtol=0)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"max_participation": 0.0}, "engine.max_participation"),
        ({"max_participation": 1.5}, "engine.max_participation"),
        ({"impact": -0.1}, "engine.impact"),
    ],
)
def test_bad_volume_options_name_the_key(options: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        simulate(_bars(), SmaCross(3, 10), check_lookahead=False, **options)
    assert info.value.key == key


def test_volume_options_need_volume() -> None:
    data = ohlc(60, 1)
    bars = Bars(close=data["close"], open=data["open"], high=data["high"], low=data["low"])
    with pytest.raises(DataValidationError, match="max_participation"):
        simulate(bars, SmaCross(3, 10), max_participation=0.1, check_lookahead=False)


# ------------------------------------------------------------------ sizing = volatility


def _vol_scaled(close: np.ndarray, target: np.ndarray, tv: float, lookback: int, ppy: float):  # type: ignore[no-untyped-def]
    """Targets x tv / sigma per asset: a plain loop (statistics.stdev of the last returns)."""
    import math
    import statistics

    n, a = close.shape
    out = np.zeros((n, a))
    for t in range(n):
        for j in range(a):
            if t < lookback:  # returns exist from bar 1: the first full window ends at bar lookback
                continue
            rets = [close[s, j] / close[s - 1, j] - 1 for s in range(t - lookback + 1, t + 1)]
            sigma = statistics.stdev(rets) * math.sqrt(ppy)
            out[t, j] = target[t, j] * tv / sigma if sigma > 0 else 0.0
    return out


@pytest.mark.parametrize("execution", ["close", "next_open"])
def test_volatility_sizing_equals_reference_loop(execution: str) -> None:
    from tests.engine_reference import Options, limits

    data = ohlc(260, 3, seed=12)
    bars = Bars(close=data["close"], open=data["open"], high=data["high"], low=data["low"])
    strategy = SmaCross(4, 15, long_short=True)
    res = simulate(
        bars, strategy, fee_bps=5.0, execution=execution, sizing="volatility",
        target_volatility=0.15, vol_lookback=20, max_weight=0.5, max_gross_leverage=1.2,
        stop_loss=0.05,
    )  # fmt: skip
    close = bars.close.to_numpy()
    signal = strategy.positions(bars.close).to_numpy()
    scaled = _vol_scaled(close, signal / 3, 0.15, 20, 252.0)
    weights, _ = limits(scaled, close.tolist(), Options(max_weight=0.5, max_gross_leverage=1.2))
    arrays = [getattr(bars, k).to_numpy() for k in ("open", "high", "low", "close")]
    returns, trades = units_with_orders(
        *arrays, np.array(weights), signal, schedule(bars.index, "bar"), 0.0005,
        Rules(stop_loss=0.05), Orders(), execution == "next_open",
    )  # fmt: skip
    _compare(res, returns, trades, bars.index)
    assert res.weights is not None
    if execution == "close":  # (next_open fills drift until the close)
        assert np.abs(res.weights.to_numpy()).max() <= 0.5 * (1 + 1e-3)  # (sized before costs)


def test_volatility_sizing_batched_equals_single() -> None:
    data = ohlc(260, 2, seed=14)
    bars = Bars(close=data["close"], open=data["open"], high=data["high"], low=data["low"])
    sets = pd.DataFrame(
        {"fast": [4, 5, 4], "slow": [15, 20, 15],
         "engine.sizing": ["volatility", "weight", "volatility"],
         "engine.target_volatility": [0.1, 0.2, 0.3]}
    )  # fmt: skip
    batch = simulate_batch(bars, SmaCross, sets, fee_bps=2.0, vol_lookback=30,
                           keep_returns=True)  # fmt: skip
    assert batch.returns is not None
    for i, row in sets.iterrows():
        one = simulate(
            bars, SmaCross(int(row["fast"]), int(row["slow"])), fee_bps=2.0, vol_lookback=30,
            sizing=row["engine.sizing"], target_volatility=float(row["engine.target_volatility"]),
        )  # fmt: skip
        np.testing.assert_allclose(batch.returns[:, i], one.returns.to_numpy(), atol=1e-9, rtol=0)


def test_volatility_sizing_needs_a_target() -> None:
    with pytest.raises(ConfigError) as info:
        simulate(_bars(), SmaCross(3, 10), sizing="volatility", check_lookahead=False)
    assert info.value.key == "engine.target_volatility"
