"""Strategy-supplied entry levels (``entry_price(bars)``) for limit and stop entries.

The engine equals the plain loop of ``tests/reference_orders.py`` given the strategy's
levels (long and short, both executions, expiry, stops, NaN = no order), single and
batched (with and without ``batch_entry_price``); later bars never change earlier fills;
a peeking ``entry_price`` and options under which the levels do nothing are refused.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from backtest.data import Bars
from backtest.engine import simulate, simulate_batch
from backtest.errors import BacktestError, ConfigError, StrategyContractError
from tests.engine_reference import schedule
from tests.reference_exits import Rules
from tests.reference_orders import Orders, units_with_orders
from tests.test_engine_stops import ohlc


class Channel:
    """Long above its n-bar mean, short below; entries at the n-bar channel's edge.

    ``stop`` entries buy a break of the highest high of the last ``n`` bars (short: the
    lowest low); ``limit`` entries buy a pullback to the mean (short: a rally to it). No
    order every ``skip``-th bar (NaN), to exercise "no order".
    """

    inputs: ClassVar[str] = "bars"

    def __init__(self, n: int = 10, kind: str = "stop", skip: int = 7) -> None:
        self.n, self.kind, self.skip = n, kind, skip

    def positions(self, bars: Bars) -> pd.DataFrame:
        close = bars.close
        return np.sign(close - close.rolling(self.n).mean()).fillna(0.0)

    def entry_price(self, bars: Bars) -> pd.DataFrame:
        side = self.positions(bars)
        top = bars.high.rolling(self.n).max()
        bottom = bars.low.rolling(self.n).min()
        mean = bars.close.rolling(self.n).mean()
        up, down = (top, bottom) if self.kind == "stop" else (mean, mean)
        level = up.where(side > 0, down.where(side < 0))
        level.iloc[:: self.skip] = np.nan
        return level


class BatchedChannel(Channel):
    """:class:`Channel` with the batched form: levels of k sets in one call."""

    @classmethod
    def batch_entry_price(cls, bars: Bars, params: dict[str, np.ndarray]) -> np.ndarray:
        k = len(params["n"])
        out = np.empty((*bars.close.shape, k))
        for i in range(k):
            kind = params["kind"][i] if "kind" in params else "stop"
            out[:, :, i] = cls(int(params["n"][i]), str(kind)).entry_price(bars).to_numpy()
        return out


def _bars(data: dict[str, pd.DataFrame]) -> Bars:
    return Bars(close=data["close"], open=data["open"], high=data["high"], low=data["low"])


def _reference(bars: Bars, strategy: Channel, *, execution: str, valid: int | None, sl: float):
    signal = strategy.positions(bars).to_numpy()
    levels = strategy.entry_price(bars).to_numpy()
    arrays = [getattr(bars, k).to_numpy() for k in ("open", "high", "low", "close")]
    return units_with_orders(
        *arrays, signal / signal.shape[1], signal, schedule(bars.index, "bar"), 0.0008,
        Rules(stop_loss=sl), Orders(strategy.kind, 0.0, valid), execution == "next_open",
        levels=levels,
    )  # fmt: skip


CASES = [
    ("stop", "close", 3),
    ("stop", "next_open", None),
    ("limit", "close", None),
    ("limit", "next_open", 2),
]


@pytest.mark.parametrize(("kind", "execution", "valid"), CASES, ids=[str(c) for c in CASES])
def test_strategy_levels_equal_reference_loop(kind: str, execution: str, valid: int | None) -> None:
    bars = _bars(ohlc(400, 2, seed=17, gap=0.012))
    strategy = Channel(10, kind)
    res = simulate(
        bars, strategy, fee_bps=5.0, slippage_bps=3.0, execution=execution, entry_order=kind,
        entry_valid_bars=valid, stop_loss=0.05,
    )  # fmt: skip
    returns, trades = _reference(bars, strategy, execution=execution, valid=valid, sl=0.05)
    np.testing.assert_allclose(res.returns.to_numpy(), returns, rtol=0, atol=1e-9)
    got = res.trades.sort_values(["entry_time", "asset"], kind="stable").reset_index(drop=True)
    want = sorted(trades, key=lambda d: (d["entry_bar"], d["asset"]))
    assert len(got) == len(want) > 10
    idx = bars.index
    assert list(got["entry_time"]) == [idx[tr["entry_bar"]] for tr in want]
    assert list(got["decision_time"]) == [idx[tr["decision_bar"]] for tr in want]
    np.testing.assert_allclose(got["entry_price"], [tr["entry_price"] for tr in want], rtol=1e-12)
    np.testing.assert_allclose(got["return"], [tr["return"] for tr in want], rtol=1e-9, atol=1e-12)
    assert set(got["direction"]) == {-1, 1}
    # every order-entered trade filled at its decision bar's level or at a better/worse open
    levels = strategy.entry_price(bars)
    for _, tr in got[got["order_type"] == kind].iterrows():
        level = levels.loc[tr["decision_time"], tr["asset"]]
        opened = bars.open.loc[tr["entry_time"], tr["asset"]]
        assert tr["entry_price"] in (pytest.approx(level), pytest.approx(opened))
    # NaN levels placed nothing: no trade was decided at a skipped bar
    skipped = set(idx[:: strategy.skip])
    assert not skipped & set(got.loc[got["order_type"] == kind, "decision_time"])


@pytest.mark.parametrize("cls", [Channel, BatchedChannel], ids=["per-set", "batch_entry_price"])
def test_batched_levels_equal_single_per_set(cls: type) -> None:
    bars = _bars(ohlc(300, 2, seed=5, gap=0.01))
    sets = pd.DataFrame(
        {
            "n": [8, 12, 8, 15],
            "kind": ["stop", "stop", "limit", "limit"],
            "engine.entry_order": ["stop", "stop", "limit", "limit"],
            "engine.entry_valid_bars": [3, np.nan, 2, 4],
        }
    )
    batch = simulate_batch(
        bars, cls, sets, fee_bps=4.0, execution="next_open", stop_loss=0.04, keep_returns=True
    )
    assert batch.returns is not None
    for i, row in sets.iterrows():
        days = row["engine.entry_valid_bars"]
        valid = None if np.isnan(days) else int(days)
        one = simulate(
            bars, cls(int(row["n"]), row["kind"]), fee_bps=4.0, execution="next_open",
            stop_loss=0.04, entry_order=row["kind"], entry_valid_bars=valid,
        )  # fmt: skip
        np.testing.assert_allclose(batch.returns[:, i], one.returns.to_numpy(), atol=1e-9, rtol=0)
        assert batch.metrics.loc[i, "n_trades"] == one.metrics["n_trades"] > 0


@pytest.mark.parametrize("execution", ["close", "next_open"])
def test_later_bars_never_change_earlier_fills(execution: str) -> None:
    """Perturb every bar from t0 on: returns before t0 and trades entered before it are the same."""
    data = ohlc(300, 2, seed=29, gap=0.012)
    bars = _bars(data)
    t0 = 180
    rng = np.random.default_rng(1)
    shock = np.ones((300, 2))
    shock[t0:] = np.exp(np.cumsum(rng.normal(0, 0.03, (300 - t0, 2)), axis=0))
    other = Bars(**{k: v * shock for k, v in data.items()})
    options = {"entry_order": "stop", "execution": execution, "stop_loss": 0.05}
    a = simulate(bars, Channel(10, "stop"), **options)  # type: ignore[arg-type]
    b = simulate(other, Channel(10, "stop"), **options)  # type: ignore[arg-type]
    np.testing.assert_array_equal(a.returns.to_numpy()[:t0], b.returns.to_numpy()[:t0])
    cut = bars.index[t0]
    early_a = a.trades[a.trades["entry_time"] < cut].reset_index(drop=True)
    early_b = b.trades[b.trades["entry_time"] < cut].reset_index(drop=True)
    assert len(early_a) > 5
    cols = ["asset", "direction", "entry_time", "decision_time", "entry_price", "order_type"]
    pd.testing.assert_frame_equal(early_a[cols], early_b[cols])
    assert not a.returns.equals(b.returns)  # the perturbation did change the later bars


class Peeking(Channel):
    """Levels from tomorrow's high: look-ahead."""

    def entry_price(self, bars: Bars) -> pd.DataFrame:
        return bars.high.shift(-1).rolling(self.n).max()


def test_a_peeking_entry_price_is_refused() -> None:
    bars = _bars(ohlc(300, 2, seed=5))
    with pytest.raises(StrategyContractError, match=r"Peeking.entry_price looks ahead"):
        simulate(bars, Peeking(10), entry_order="stop")
    sets = pd.DataFrame({"n": [10, 12]})
    with pytest.raises(StrategyContractError, match=r"Peeking.entry_price looks ahead"):
        simulate_batch(bars, Peeking, sets, entry_order="stop")


class Bad(Channel):
    value: ClassVar[Any] = -1.0

    def entry_price(self, bars: Bars) -> pd.DataFrame:
        out = super().entry_price(bars)
        out.iloc[50, 1] = self.value
        return out


@pytest.mark.parametrize(
    ("strategy", "options", "error", "message"),
    [
        (Channel(), {}, ConfigError, r"Channel.entry_price .* market entries ignore"),
        (Channel(), {"entry_order": "stop", "entry_offset": 0.01}, ConfigError,
         r"engine.entry_offset has no effect: Channel.entry_price sets"),
        (Bad(), {"entry_order": "limit"}, BacktestError,
         r"Bad.entry_price gives the level -1.0 for 'S1' at 2016-03-14"),
    ],
    ids=["market", "offset", "negative-level"],
)  # fmt: skip
def test_levels_without_effect_or_bad_are_refused(
    strategy: Channel, options: dict, error: type, message: str
) -> None:
    bars = _bars(ohlc(200, 2, seed=5))
    with pytest.raises(error, match=message):
        simulate(bars, strategy, check_lookahead=False, **options)
    if error is ConfigError:
        with pytest.raises(error, match=message):
            simulate_batch(bars, type(strategy), {"n": [10]}, check_lookahead=False, **options)
