"""The random-entry null is calibrated: with no skill, P(p < 0.05) is about 5%.

Each null case is a fresh geometric Brownian motion (no predictability, so no strategy
has skill); the strategy trades it and ``random_entries`` gives its Sharpe a p-value.
A calibrated null rejects at 5% in about 5% of the cases, for a price-driven long-only
strategy and for a long/short book alike, and still rejects when a real edge exists.

The cases run the simulator's own chunk kernel (:func:`strategy_chunk`, the code every
``random_entries`` path runs) and its own p-value (:func:`rank_and_p_value`), without
the report assembly around them, so 1,000 cases of 100 paths take seconds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.config import EngineConfig, MonteCarloConfig, MonteCarloMethod
from backtest.engine import simulate
from backtest.montecarlo import MonteCarloSimulator
from backtest.montecarlo._chunks import observed_scores
from backtest.montecarlo._entries import displacement_range
from backtest.montecarlo._kernels import METRICS
from backtest.montecarlo._report import rank_and_p_value
from backtest.montecarlo._strategy import (
    StrategyTask,
    portfolio_returns,
    strategy_chunk,
    strategy_positions,
)
from backtest.strategies import Momentum, SmaCross

N_BARS = 500
N_PATHS = 40  # p < 0.05 <=> at most 1 of 40 paths beats the observed: 2/41 = 0.0488
INDEX = pd.bdate_range("2010-01-04", periods=N_BARS, name="date")
ENGINE = EngineConfig(fee_bps=5.0, periods_per_year=252.0)  # tasks built by hand: set, not inferred
SHARPE = METRICS.index("sharpe_ratio")
BLOCK = 5  # conf/montecarlo/random_entries.yaml


def _prices(seed: int, n_assets: int, trend: float = 0.0) -> pd.DataFrame:
    """GBM closes; ``trend`` adds a drift flipping sign every 150-odd bars (a real edge)."""
    rng = np.random.default_rng(seed)
    lr = rng.normal(2e-4, 0.01, (N_BARS - 1, n_assets))
    if trend:
        phase = rng.uniform(0, 6, (1, n_assets))
        regime = np.sign(np.sin(np.arange(N_BARS - 1)[:, None] / 50.0 + phase))
        lr += trend * regime
    close = 100.0 * np.exp(np.vstack([np.zeros(n_assets), np.cumsum(lr, axis=0)]))
    return pd.DataFrame(close, index=INDEX, columns=[f"A{i}" for i in range(n_assets)])


def _p_value(prices: pd.DataFrame, strategy: object, seed: int) -> float:
    pos = strategy_positions(strategy, prices)
    observed = portfolio_returns(prices.to_numpy(), pos, ENGINE, prices.columns)
    task = StrategyTask(
        method=MonteCarloMethod.random_entries,
        prices=prices,
        strategy=strategy,
        engine=ENGINE,
        seed=seed,
        horizon=N_BARS,
        n_fan=0,
        observed_positions=pos,
        displacement=displacement_range(pos, getattr(strategy, "warmup_bars", None)),
        block=BLOCK,
    )
    sims = strategy_chunk(task, 0, N_PATHS).metrics[:, SHARPE]
    obs, _ = observed_scores(observed, float(ENGINE.periods_per_year))
    return rank_and_p_value(sims, float(obs[SHARPE]), "sharpe_ratio")[1]


def test_the_fast_harness_gives_the_simulators_p_value() -> None:
    prices, strategy = _prices(3, 1), SmaCross(5, 20)
    cfg = MonteCarloConfig(
        method="random_entries", n_paths=N_PATHS, seed=77, n_jobs=1, block_size=BLOCK
    )
    rep = MonteCarloSimulator(cfg, progress=False).run(
        simulate(prices, strategy, fee_bps=5.0), prices=prices, strategy=strategy, engine=ENGINE
    )
    assert rep.p_values["sharpe_ratio"] == _p_value(prices, strategy, 77)


CASES = {
    "sma-cross-5-20-long-only": (lambda: SmaCross(5, 20), 1),
    "momentum-long-short-book": (lambda: Momentum(lookback=63, skip=5, long_short=True), 4),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_random_entries_is_calibrated_under_the_null(name: str) -> None:
    make, n_assets = CASES[name]
    n_cases = 1000  # standard error of the rate: 0.7 percentage points
    pvals = np.array(
        [_p_value(_prices(case, n_assets), make(), 10_000 + case) for case in range(n_cases)]
    )
    rate = float(np.mean(pvals < 0.05))
    assert 0.035 <= rate <= 0.065, rate
    assert 0.45 < float(np.mean(pvals)) < 0.55  # uniform p-values have mean 1/2


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_random_entries_has_power_on_a_strong_edge(name: str) -> None:
    make, n_assets = CASES[name]
    pvals = [
        _p_value(_prices(500 + case, n_assets, trend=0.004), make(), case) for case in range(10)
    ]
    assert sum(p < 0.05 for p in pvals) >= 9, pvals
