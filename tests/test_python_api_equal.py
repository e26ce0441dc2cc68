"""The Python API is the command line's equal: bars per year, data checks, look-ahead.

``simulate``, ``simulate_batch``, ``StrategyEvaluator``, ``StrategyReturnsEvaluator``,
``WalkForwardOptimizer`` and ``MonteCarloSimulator`` infer ``periods_per_year`` from the
index as the command line does (``engine_options`` of an unset config), refuse bad data
with the command line's named errors (``validate_bars``), and check the strategy for
look-ahead unless told not to.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.config import EngineConfig, MonteCarloConfig, WalkForwardConfig
from backtest.data import Bars
from backtest.data._validate import validate_bars
from backtest.engine import engine_options, simulate, simulate_batch
from backtest.errors import DataValidationError, StrategyContractError
from backtest.montecarlo import MonteCarloSimulator
from backtest.search import StrategyEvaluator
from backtest.strategies import SmaCross
from backtest.walkforward import StrategyReturnsEvaluator, WalkForwardOptimizer


def _closes(index: pd.DatetimeIndex, seed: int = 1, n_assets: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, 0.002, (len(index), n_assets))
    close = 100 * np.exp(np.cumsum(steps, axis=0))
    return pd.DataFrame(close, index=index, columns=[f"A{j}" for j in range(n_assets)])


def _minutes() -> pd.DatetimeIndex:
    days = pd.bdate_range("2024-01-02", periods=5)
    return pd.DatetimeIndex(
        np.concatenate(
            [pd.date_range(d + pd.Timedelta("9h30min"), periods=390, freq="min") for d in days]
        )
    )


INDEXES = {
    "minute": (_minutes(), 98_280),
    "hourly 24/7": (pd.date_range("2024-01-01", periods=24 * 21, freq="h"), 8_760),
    "daily": (pd.bdate_range("2020-01-01", periods=700), 252),
}


@pytest.mark.parametrize("kind", list(INDEXES))
def test_evaluators_and_simulate_give_the_command_lines_sharpe(kind: str) -> None:
    index, expected = INDEXES[kind]
    prices = _closes(index)
    cli_ppy = engine_options(EngineConfig(), index)["periods_per_year"]  # what the CLI runs
    assert cli_ppy == expected
    params = {"fast": 10, "slow": 60}
    single = simulate(prices, SmaCross(**params), fee_bps=2)
    assert single.periods_per_year == expected
    sharpe = single.metrics["sharpe_ratio"]
    assert StrategyEvaluator(prices, SmaCross, fee_bps=2)(params)["sharpe_ratio"] == (
        pytest.approx(sharpe, rel=1e-12)
    )
    batch = simulate_batch(prices, SmaCross, [params], fee_bps=2).metrics
    assert batch.loc[0, "sharpe_ratio"] == pytest.approx(sharpe, rel=1e-12)
    returns_ev = StrategyReturnsEvaluator(prices, SmaCross, fee_bps=2)
    assert returns_ev.periods_per_year == expected
    # the CLI's own figure given explicitly: the same number again
    explicit = simulate(prices, SmaCross(**params), fee_bps=2, periods_per_year=cli_ppy)
    assert explicit.metrics["sharpe_ratio"] == sharpe


def _bad(kind: str) -> Bars:
    index = pd.bdate_range("2021-01-01", periods=300)
    close = _closes(index)
    opens = close.shift(1).fillna(close)
    bars = Bars(close, opens, np.maximum(close, opens) * 1.01, np.minimum(close, opens) * 0.99)
    if kind == "nan close":
        bars.close.iloc[150, 1] = np.nan
    elif kind == "non-positive close":
        bars.close.iloc[40, 0] = -1.0
    elif kind == "nan open":
        assert bars.open is not None
        bars.open.iloc[77, 0] = np.nan
    elif kind == "high below low":
        assert bars.high is not None and bars.low is not None
        bars.high.iloc[90, 1] = bars.low.iloc[90, 1] * 0.9
    elif kind == "unsorted":
        order = np.r_[0:100, 101, 100, 102:300]
        return bars.map(lambda f: f.iloc[order])
    return bars


BAD = ["nan close", "non-positive close", "nan open", "high below low", "unsorted"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_data_gets_the_command_lines_error_from_every_entry_point(kind: str) -> None:
    bars = _bad(kind)
    with pytest.raises(DataValidationError) as cli:
        validate_bars(bars)  # what loading the data does on the command line
    expected = str(cli.value)
    calls = [
        lambda: simulate(bars, SmaCross(5, 20)),
        lambda: simulate(bars, SmaCross(5, 20), execution="next_open", rebalance="M"),
        lambda: simulate_batch(bars, SmaCross, {"fast": [5], "slow": [20]}),
        lambda: StrategyEvaluator(bars, SmaCross),
        lambda: StrategyReturnsEvaluator(bars, SmaCross),
        lambda: MonteCarloSimulator(
            MonteCarloConfig(method="parameter_jitter", n_paths=4, seed=1), progress=False
        ).run(prices=bars, strategy=SmaCross(5, 20)),
    ]
    for call in calls:
        with pytest.raises(DataValidationError) as err:
            call()
        assert str(err.value) == expected


class Peeking(SmaCross):
    """Reads tomorrow's close: positions shifted back one bar."""

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        return super().positions(prices).shift(-1)


def test_a_strategy_that_looks_ahead_is_refused_by_default() -> None:
    prices = _closes(pd.bdate_range("2020-01-01", periods=500), seed=4)
    with pytest.raises(StrategyContractError, match="Peeking looks ahead"):
        simulate(prices, Peeking(5, 20))
    with pytest.raises(StrategyContractError, match="Peeking looks ahead"):
        simulate_batch(prices, Peeking, {"fast": [5, 10], "slow": [20, 30]})
    with pytest.raises(StrategyContractError, match="Peeking looks ahead"):
        MonteCarloSimulator(
            MonteCarloConfig(method="parameter_jitter", n_paths=4, seed=1), progress=False
        ).run(prices=prices, strategy=Peeking(5, 20))
    wf = WalkForwardOptimizer(WalkForwardConfig(train_bars=250, test_bars=125), pbo_blocks=0,
                              spa_bootstrap=0)  # fmt: skip
    with pytest.raises(StrategyContractError, match="Peeking looks ahead"):
        wf.run(StrategyReturnsEvaluator(prices, Peeking), {"fast": [5], "slow": [20]})
    # asked not to check, each runs it (a deliberate oracle, e.g. to calibrate a test)
    assert simulate(prices, Peeking(5, 20), check_lookahead=False).metrics["n_trades"] > 0
    checked_off = simulate_batch(prices, Peeking, {"fast": [5], "slow": [20]},
                                 check_lookahead=False)  # fmt: skip
    assert checked_off.metrics.loc[0, "n_trades"] > 0


def test_walkforward_of_a_search_evaluator_keeps_its_bars_and_options() -> None:
    """A StrategyEvaluator handed to the walk-forward keeps OHLC, options and bars per year."""
    from backtest.walkforward._optimizer import as_returns_evaluator

    index = pd.date_range("2024-01-01", periods=24 * 30, freq="h")
    close = _closes(index)
    opens = close.shift(1).fillna(close)
    bars = Bars(close, opens, np.maximum(close, opens) * 1.001, np.minimum(close, opens) * 0.999)
    ev = StrategyEvaluator(bars, SmaCross, fee_bps=3, execution="next_open", stop_loss=0.01)
    converted = as_returns_evaluator(ev)
    assert converted.periods_per_year == 8_760
    assert converted.engine_options == {"execution": "next_open", "stop_loss": 0.01}
    single = simulate(bars, SmaCross(5, 30), fee_bps=3, execution="next_open", stop_loss=0.01)
    returns = converted.returns(pd.DataFrame({"fast": [5], "slow": [30]}), len(index))[:, 0]
    np.testing.assert_allclose(returns, single.returns.to_numpy(), rtol=0, atol=1e-13)


@pytest.mark.parametrize("kind", list(INDEXES))
def test_the_command_line_prints_the_same_sharpe(kind: str, compose, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The CLI's run of the same data and settings (a wide CSV) scores what simulate does."""
    from omegaconf import OmegaConf

    from backtest.tasks import run_backtest

    index, expected = INDEXES[kind]
    prices = _closes(index)
    prices.index.name = "date"
    prices.to_csv(tmp_path / "px.csv")
    cfg = compose(
        "data.source=csv",
        f"data.path={tmp_path / 'px.csv'}",
        "data.layout=wide",
        "strategy=sma_cross",
        "strategy.fast=10",
        "strategy.slow=60",
        "engine.fee_bps=2",
        "engine.slippage_bps=0",
        "tracking=none",
        "figures=false",
        "report=false",
        f"output_dir={tmp_path / 'run'}",
    )
    cli = run_backtest(OmegaConf.to_container(cfg, resolve=True))
    assert cli.periods_per_year == expected
    single = simulate(prices, SmaCross(10, 60), fee_bps=2).metrics["sharpe_ratio"]
    assert cli.metrics["sharpe_ratio"] == pytest.approx(single, rel=1e-12)
    evaluator = StrategyEvaluator(prices, SmaCross, fee_bps=2)
    assert evaluator({"fast": 10, "slow": 60})["sharpe_ratio"] == pytest.approx(single, rel=1e-12)
