"""A user's own strategy: look-ahead check, batch-vs-positions check, fast-path ownership."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from backtest import StrategyContractError, check_strategy
from backtest.engine import simulate, simulate_batch
from backtest.engine._checks import check_batch_positions
from backtest.search import StrategyEvaluator, grid_search
from backtest.strategies import (
    Breakout,
    BuyAndHold,
    MeanReversion,
    Momentum,
    SmaCross,
    has_fast_path,
)
from backtest.strategies._checks import check_lookahead, cut_points
from backtest.walkforward import StrategyReturnsEvaluator, WalkForwardOptimizer
from tests import synthetic


def gbm(n_bars: int = 900, n_assets: int = 2, seed: int = 3) -> pd.DataFrame:
    return synthetic.gbm(n_bars, n_assets, seed, start="2012-01-02")


class Peeking(SmaCross):
    """SmaCross that trades on the next bar's signal: looks one bar ahead."""

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        return super().positions(prices).shift(-1)

    @classmethod
    def batch_positions(cls, close, params):  # type: ignore[no-untyped-def]
        out = SmaCross.batch_positions(close, params)
        return np.vstack([out[1:], np.full((1, out.shape[1]), np.nan)])


class Contrarian(SmaCross):
    """Overrides only positions(): the parent's batch_positions is not its fast path."""

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        return -super().positions(prices)


@dataclass(frozen=True)
class Drifting:
    """A planted fast path that differs from positions() after bar 500."""

    level: float = 0.5

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(self.level, index=prices.index, columns=prices.columns)

    @classmethod
    def batch_positions(cls, close, params):  # type: ignore[no-untyped-def]
        level = np.asarray(params["level"], dtype=float)
        out = np.tile(level, (len(close), 1))
        out[500:] *= 0.5
        return out


def test_has_fast_path_belongs_to_the_positions_class() -> None:
    assert has_fast_path(SmaCross) and has_fast_path(MeanReversion) and has_fast_path(Peeking)
    assert not has_fast_path(Contrarian)
    assert has_fast_path(Drifting)

    class OnlyPositions:
        def positions(self, prices):  # type: ignore[no-untyped-def]
            return prices * 0

    assert not has_fast_path(OnlyPositions)


def test_subclass_overriding_only_positions_is_searched_as_itself() -> None:
    # issue 16 item 10: the trial must equal the subclass's own backtest, not the parent's
    prices = gbm()
    batch = simulate_batch(prices, Contrarian, [{"fast": 5, "slow": 30}], fee_bps=5.0)
    own = simulate(prices, Contrarian(5, 30), fee_bps=5.0)
    parent = simulate(prices, SmaCross(5, 30), fee_bps=5.0)
    row = batch.metrics.iloc[0]
    assert row["sharpe_ratio"] == own.metrics["sharpe_ratio"]
    assert row["n_trades"] == own.metrics["n_trades"]
    assert row["sharpe_ratio"] != parent.metrics["sharpe_ratio"]


@pytest.mark.parametrize(
    "strategy",
    [
        SmaCross(5, 30),
        SmaCross(10, 50, long_short=True),
        Momentum(60, 5),
        MeanReversion(),
        Breakout(20, long_short=True),
        BuyAndHold(),
    ],
    ids=["sma", "sma-ls", "momentum", "mean-reversion", "breakout", "buy-and-hold"],
)
def test_every_builtin_passes_the_checks(strategy) -> None:  # type: ignore[no-untyped-def]
    check_strategy(strategy, gbm())


def test_lookahead_is_caught_and_named() -> None:
    prices = gbm()
    with pytest.raises(StrategyContractError, match="Peeking looks ahead") as info:
        check_strategy(Peeking(5, 30), prices)
    err = info.value
    assert err.strategy == "Peeking" and err.params == {"fast": 5, "slow": 30, "long_short": False}
    assert err.bar in prices.index and err.asset in prices.columns
    # the named bar really changes when the later bars are removed
    t = prices.index.get_loc(err.bar)
    full = Peeking(5, 30).positions(prices).fillna(0.0)
    cut = Peeking(5, 30).positions(prices.iloc[: t + 1]).fillna(0.0)
    assert full.loc[err.bar, err.asset] != cut.loc[err.bar, err.asset]


def test_full_sample_statistics_are_lookahead() -> None:
    class Demeaned:
        def positions(self, prices):  # type: ignore[no-untyped-def]
            return np.sign(prices - prices.mean())  # the mean of all bars, future included

    with pytest.raises(StrategyContractError, match="looks ahead"):
        check_lookahead(Demeaned().positions, gbm(), name="Demeaned")


def test_cut_points_end_after_a_change_to_a_nonzero_position() -> None:
    full = np.zeros((1000, 1))
    full[400:700] = 1.0
    full[820:] = -1.0
    cuts = cut_points(full)
    assert cuts == [401, 821]
    assert cut_points(np.zeros((100, 2))) == [50]


def test_a_checked_backtest_calls_the_strategy_once_on_all_the_bars(
    compose, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """The look-ahead check's output over all the bars is the backtest's: the check
    costs only the cut prefixes, and the result is the unchecked run's."""
    from backtest.results import load_result
    from backtest.tasks import execute_job
    from backtest.tasks._jobs import BacktestJob

    lengths: list[int] = []
    original = SmaCross.positions

    def counting(self, prices):  # type: ignore[no-untyped-def]
        lengths.append(len(prices))
        return original(self, prices)

    monkeypatch.setattr(SmaCross, "positions", counting)
    overrides = ["data.n_bars=800", "tracking=none", "figures=false", "report=false"]
    records = {}
    for check in ("true", "false"):
        lengths.clear()
        cfg = compose(*overrides, f"engine.check_lookahead={check}")
        job = BacktestJob.from_config(cfg, result_path=str(tmp_path / check))
        execute_job(job)
        records[check] = load_result(tmp_path / check).record
        full = [n for n in lengths if n == 800]
        assert len(full) == 1, lengths  # once, whether the check runs or not
        cuts = [n for n in lengths if n < 800]
        assert (len(cuts) == 2) if check == "true" else not cuts, lengths
    assert records["true"]["metrics"] == records["false"]["metrics"]


def test_batch_differing_from_positions_is_named() -> None:
    prices = gbm()
    with pytest.raises(StrategyContractError, match=r"Drifting\.batch_positions disagrees") as info:
        check_batch_positions(Drifting, prices, [{"level": 0.5}])
    assert info.value.bar == prices.index[500]
    assert info.value.params == {"level": 0.5}
    assert "0.25" in str(info.value) and "0.5" in str(info.value)


def test_search_refuses_a_lying_fast_path_instead_of_recording_failed_trials() -> None:
    prices = gbm()
    with pytest.raises(StrategyContractError, match="disagrees"):
        grid_search({"level": [0.2, 0.4, 0.6]}, StrategyEvaluator(prices, Drifting))


def test_search_refuses_a_peeking_strategy() -> None:
    prices = gbm()
    with pytest.raises(StrategyContractError, match="looks ahead"):
        grid_search({"fast": [5, 10], "slow": [30, 50]}, StrategyEvaluator(prices, Peeking))


def test_frictionless_walkforward_without_shared_history_refuses_look_ahead() -> None:
    from backtest.config import SearchConfig, WalkForwardConfig

    prices = gbm(1300, 1)
    ev = StrategyReturnsEvaluator(prices, Peeking, fee_bps=0.0, shared_history=False)
    wf = WalkForwardConfig(train_bars=500, test_bars=200)
    with pytest.raises(StrategyContractError, match="looks ahead"):
        WalkForwardOptimizer(wf, SearchConfig(), pbo_blocks=0).run(
            ev, {"fast": [5, 10], "slow": [30, 50]}
        )


def test_positions_only_strategy_is_accepted_everywhere() -> None:
    from backtest.config import SearchConfig, WalkForwardConfig

    prices = gbm(1300, 2)
    ev = StrategyEvaluator(prices, Contrarian, fee_bps=5.0)
    got = ev({"fast": 5, "slow": 30})
    assert (
        got["sharpe_ratio"]
        == simulate(prices, Contrarian(5, 30), fee_bps=5.0).metrics["sharpe_ratio"]
    )
    result = grid_search({"fast": [5, 10], "slow": [30, 50]}, ev)
    assert result.n_trials == 4 and result.n_failed == 0
    wf = WalkForwardConfig(train_bars=500, test_bars=200)
    out = WalkForwardOptimizer(wf, SearchConfig(), pbo_blocks=0).run(
        StrategyReturnsEvaluator(prices, Contrarian, fee_bps=5.0),
        {"fast": [5, 10], "slow": [30, 50]},
    )
    assert len(out.folds) >= 3
