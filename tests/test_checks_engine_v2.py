"""The strategy checks (issue 12) on engine v2's contract: Bars, weights, batch_weights, stops.

Look-ahead is checked on :func:`backtest.engine.target_weights` of the data cut with
``.iloc[:t]``, so strategies that declare ``inputs = "bars"`` / ``output = "weights"``
are covered; fast-path ownership covers ``batch_weights``; strategies without a fast
path and strategies with stops never take the generic (v1 sleeve) batched path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from backtest import StrategyContractError, check_strategy
from backtest.config import DataConfig
from backtest.data import Bars, load_bars
from backtest.engine import simulate, simulate_batch
from backtest.engine._checks import check_batch_positions
from backtest.search import StrategyEvaluator
from backtest.strategies import CrossSectionalMomentum, SmaCross, has_fast_path
from backtest.strategies._checks import fast_method


@pytest.fixture(scope="module")
def bars() -> Bars:
    return load_bars(DataConfig(n_bars=400, n_assets=3, seed=11))


@dataclass(frozen=True)
class RangeWeights:
    """A bars/weights strategy: weight 0.3 on assets whose last bar closed in its upper half."""

    inputs: ClassVar[str] = "bars"
    output: ClassVar[str] = "weights"
    peek: bool = False

    def positions(self, bars: Bars) -> pd.DataFrame:
        assert isinstance(bars, Bars)
        high, low = bars.high, bars.low
        if self.peek:  # the next bar's range: looks ahead
            high, low = high.shift(-1), low.shift(-1)
        upper = bars.close > (high + low) / 2.0
        return upper.astype(np.float64) * 0.3


class Reversed(CrossSectionalMomentum):
    """Overrides only positions(): the parent's batch_weights is not its fast path."""

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        out = super().positions(prices)
        return out.iloc[:, ::-1].set_axis(out.columns, axis=1)


class Lying(CrossSectionalMomentum):
    """A batch_weights of its own that differs from positions()."""

    @classmethod
    def batch_weights(cls, data, params):  # type: ignore[no-untyped-def]
        out = np.asarray(CrossSectionalMomentum.batch_weights(data, params)).copy()
        out[300:] = 0.0
        return out


@dataclass(frozen=True)
class Trend:
    """Positions only (no fast path): long above the ``window``-bar mean."""

    window: int = 20

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        return (prices > prices.rolling(self.window).mean()).astype(np.float64)


class StoppedSma(SmaCross):
    """A fast path of its own plus a class-level stop: must not take the generic path."""

    stop_loss = 0.02

    @classmethod
    def batch_positions(cls, close, params):  # type: ignore[no-untyped-def]
        return SmaCross.batch_positions(close, params)


def test_bars_weights_strategy_is_checked_on_target_weights(bars: Bars) -> None:
    check_strategy(RangeWeights(), bars)  # honest: passes
    with pytest.raises(StrategyContractError, match="strategy RangeWeights looks ahead"):
        check_strategy(RangeWeights(peek=True), bars)


def test_check_strategy_takes_engine_options(bars: Bars) -> None:
    # a vol target scales with past returns only: still no look-ahead
    check_strategy(SmaCross(5, 20), bars, engine={"target_volatility": 0.1, "vol_lookback": 20})
    check_strategy(SmaCross(5, 20), bars.close)


def test_fast_path_ownership_covers_batch_weights(bars: Bars) -> None:
    assert fast_method(CrossSectionalMomentum) == "batch_weights"
    assert fast_method(SmaCross) == "batch_positions"
    assert not has_fast_path(Reversed) and fast_method(Trend) is None
    params = {"lookback": 20, "skip": 2, "top_n": 1}
    batch = simulate_batch(bars, Reversed, [params], fee_bps=5.0)
    single = simulate(bars, Reversed(**params), fee_bps=5.0)
    assert batch.metrics["total_return"].iloc[0] == pytest.approx(
        single.metrics["total_return"], rel=1e-12, abs=1e-15
    )
    parent = simulate(bars, CrossSectionalMomentum(**params), fee_bps=5.0)
    assert parent.metrics["total_return"] != pytest.approx(single.metrics["total_return"])


def test_lying_batch_weights_is_refused(bars: Bars) -> None:
    params = {"lookback": 20, "skip": 2, "top_n": 1, "long_short": False}
    check_batch_positions(CrossSectionalMomentum, bars, [params])  # honest
    with pytest.raises(StrategyContractError, match=r"Lying\.batch_weights disagrees"):
        check_batch_positions(Lying, bars, [params])
    ev = StrategyEvaluator(bars, Lying, fixed_params={"skip": 2, "top_n": 1})
    with pytest.raises(StrategyContractError, match="Lying"):
        ev.evaluate_batch(pd.DataFrame({"lookback": [10, 20, 40]}))


@pytest.mark.parametrize(
    "options",
    [{"rebalance": "W"}, {"max_weight": 0.2}, {"stop_loss": 0.03}],
    ids=["schedule", "limit", "stop"],
)
def test_positions_only_strategy_batched_with_engine_v2_options(bars: Bars, options) -> None:  # type: ignore[no-untyped-def]
    sets = [{"window": 10}, {"window": 30}]
    batch = simulate_batch(bars, Trend, sets, fee_bps=3.0, keep_returns=True, **options)
    assert batch.returns is not None
    for i, params in enumerate(sets):
        single = simulate(bars, Trend(**params), fee_bps=3.0, **options)
        np.testing.assert_allclose(batch.returns[:, i], single.returns.to_numpy(), atol=1e-12)


def test_class_stop_never_takes_the_generic_path(bars: Bars) -> None:
    sets = [{"fast": 5, "slow": 20}, {"fast": 10, "slow": 40}]
    batch = simulate_batch(bars, StoppedSma, sets, fee_bps=2.0, keep_returns=True)
    assert batch.returns is not None
    for i, params in enumerate(sets):
        single = simulate(bars, StoppedSma(**params), fee_bps=2.0)
        assert (single.trades["exit_reason"] == "stop_loss").any()
        np.testing.assert_allclose(batch.returns[:, i], single.returns.to_numpy(), atol=1e-12)
