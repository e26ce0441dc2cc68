"""Per-fold snooping statistics of the walk-forward: opt-in, and equal to the reference.

Every fold's trial returns are rebuilt here with ``simulate`` (one run per parameter
set over the prices up to the train window's end), and its SPA / Reality Check
p-values and effective trial count recomputed with the previous implementation kept in
``tests/test_overfitting_bootstrap.py``, seeded as documented: the search seed and the
fold number.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from backtest.config import SearchConfig, WalkForwardConfig
from backtest.data import synthetic_prices
from backtest.engine import simulate
from backtest.strategies import SmaCross
from backtest.walkforward import StrategyReturnsEvaluator, WalkForwardOptimizer
from tests.test_overfitting_bootstrap import reference_effective_trials, reference_spa

FEE = 10.0
SPACE = {"fast": [5, 10, 20], "slow": [30, 60, 90]}
WF = WalkForwardConfig(train_bars=300, test_bars=100)
SEED = 5
STATS = ["effective_trials", "is_dsr_effective", "spa_pvalue", "reality_check_pvalue"]


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    return synthetic_prices(n_bars=800, n_assets=2, seed=3)


@pytest.fixture(scope="module")
def bench_returns(prices: pd.DataFrame) -> np.ndarray:
    return np.random.default_rng(8).normal(0.0002, 0.006, len(prices))


def _optimizer(**kwargs: object) -> WalkForwardOptimizer:
    search = SearchConfig(seed=SEED, constraint="fast < slow")
    return WalkForwardOptimizer(WF, search, pbo_blocks=0, **kwargs)  # type: ignore[arg-type]


def test_snooping_statistics_are_off_by_default(prices: pd.DataFrame) -> None:
    ev = StrategyReturnsEvaluator(prices, SmaCross, fee_bps=FEE)
    res = _optimizer().run(ev, SPACE)
    assert len(res.folds) == 5
    assert res.folds[STATS].isna().all().all()
    of = res.overfitting
    for name in ("effective_trials", "deflated_sharpe_effective", "spa_pvalue"):
        assert math.isnan(getattr(of, name)), name  # NaN, not a sum of nothing
    assert res.folds["is_dsr"].notna().all()  # the raw-N DSR is still there


def test_opted_in_statistics_equal_the_reference_on_every_fold(
    prices: pd.DataFrame, bench_returns: np.ndarray
) -> None:
    ev = StrategyReturnsEvaluator(prices, SmaCross, fee_bps=FEE)
    res = _optimizer(spa_bootstrap=300, effective_trials=True, benchmark=bench_returns).run(
        ev, SPACE
    )
    grid = [(f, s) for f in SPACE["fast"] for s in SPACE["slow"] if f < s]
    for row in res.folds.itertuples():
        a = prices.index.get_loc(row.train_start)
        b = prices.index.get_loc(row.train_end) + 1
        m = np.column_stack(
            [
                simulate(prices.iloc[:b], SmaCross(f, s), fee_bps=FEE).returns.to_numpy()[a:b]
                for f, s in grid
            ]
        )
        assert row.n_trials == len(grid)
        rng = np.random.default_rng(np.random.SeedSequence(SEED, spawn_key=(row.fold,)))
        ref = reference_spa(m, bench_returns[a:b], 300, rng)
        assert row.spa_pvalue == ref["spa_pvalue"]
        assert row.reality_check_pvalue == ref["reality_check_pvalue"]
        assert row.effective_trials == pytest.approx(reference_effective_trials(m), abs=1e-12)
        assert row.is_dsr_effective >= row.is_dsr  # fewer trials deflate less
    of = res.overfitting
    assert of.effective_trials == pytest.approx(res.folds["effective_trials"].sum())
    assert of.spa_pvalue == pytest.approx(res.folds["spa_pvalue"].mean())
    # the seed scheme: another search seed draws other bootstrap samples
    other = WalkForwardOptimizer(
        WF,
        SearchConfig(seed=SEED + 1, constraint="fast < slow"),
        pbo_blocks=0,
        spa_bootstrap=300,
        benchmark=bench_returns,
    ).run(ev, SPACE)
    assert not np.array_equal(other.folds["spa_pvalue"], res.folds["spa_pvalue"])
