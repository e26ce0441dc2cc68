"""Purged CPCV for indicators: no train score may depend on a bar of its test groups.

The test perturbs the closes of a fold's test groups and re-scores: with the strategy's
warm-up embargoed after each test group every train return, hence every train score,
is unchanged to the last bit; with returns purged only (the former behaviour) the moving
averages of the train bars just after a test group read its closes, and scores move.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.config import SearchConfig, SearchMethod, Splitter, WalkForwardConfig
from backtest.data import synthetic_prices
from backtest.strategies import Momentum, SmaCross
from backtest.walkforward import StrategyReturnsEvaluator, WalkForwardOptimizer, cpcv_splits
from backtest.walkforward._warmup import declared_warmup, measured_warmup, strategy_warmup

GRID = pd.DataFrame({"fast": [5, 10, 10, 20], "slow": [20, 40, 60, 60]})


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    return synthetic_prices(n_bars=1200, n_assets=2, seed=8)


def _perturbed(prices: pd.DataFrame, bars: np.ndarray, seed: int) -> pd.DataFrame:
    out = prices.copy()
    rng = np.random.default_rng(seed)
    out.iloc[bars] *= rng.uniform(0.7, 1.3, (len(bars), prices.shape[1]))
    return out


def test_declared_and_measured_warm_up(prices: pd.DataFrame) -> None:
    ev = StrategyReturnsEvaluator(prices, SmaCross, fee_bps=5.0)
    assert declared_warmup(ev, GRID) == 59  # slow 60 needs 60 closes: first position at bar 59
    assert strategy_warmup(ev, GRID) == 59
    # measured: the first non-zero return of any set comes no earlier than its warm-up
    assert measured_warmup(ev, GRID) >= 59
    mom = StrategyReturnsEvaluator(prices, Momentum, fixed_params={"long_short": True})
    grid = pd.DataFrame({"lookback": [21, 63], "skip": [0, 5]})
    assert declared_warmup(mom, grid) == 68
    # no costs: the first return is earned the bar after the first position (one more
    # than the warm-up, which only embargoes one more bar)
    assert measured_warmup(mom, grid) == 69


@pytest.mark.parametrize("warmup", [None, "declared"], ids=["returns-only", "indicators"])
def test_perturbing_test_groups_leaves_train_returns_unchanged(
    prices: pd.DataFrame, warmup: str | None
) -> None:
    ev = StrategyReturnsEvaluator(prices, SmaCross, fee_bps=5.0)
    w = None if warmup is None else strategy_warmup(ev, GRID)
    splits = cpcv_splits(len(prices), n_groups=6, n_test_groups=2, warmup_bars=w)
    base = ev.returns(GRID, len(prices))
    changed = []
    for fold in splits.folds:
        moved = StrategyReturnsEvaluator(
            _perturbed(prices, fold.test, fold.fold), SmaCross, fee_bps=5.0
        )
        after = moved.returns(GRID, len(prices))
        changed.append(not np.array_equal(base[fold.train], after[fold.train]))
    if warmup is None:
        assert any(changed)  # the leak this purge closes: returns-only purging lets it through
    else:
        assert not any(changed)


def test_cpcv_walk_forward_train_scores_ignore_the_test_bars(prices: pd.DataFrame) -> None:
    cfg = WalkForwardConfig(splitter=Splitter.cpcv, n_groups=5, n_test_groups=2)
    search = SearchConfig(method=SearchMethod.grid, space={"fast": [5, 10], "slow": [20, 60]})
    ev = StrategyReturnsEvaluator(prices, SmaCross, fee_bps=5.0)
    opt = WalkForwardOptimizer(cfg, search, spa_bootstrap=0, pbo_blocks=0)
    result = opt.run(ev)
    fold = result.splits.folds[3]
    moved = StrategyReturnsEvaluator(_perturbed(prices, fold.test, 1), SmaCross, fee_bps=5.0)
    again = opt.run(moved)
    first = result.trials[result.trials["fold"] == fold.fold]["score"].to_numpy()
    second = again.trials[again.trials["fold"] == fold.fold]["score"].to_numpy()
    np.testing.assert_array_equal(first, second)
    # the embargo is the warm-up plus one bar after each test group
    for f in result.splits.folds:
        for g in f.test_groups:
            hi = int(result.splits.group_bounds[g + 1])
            assert not np.isin(np.arange(hi, min(hi + 60, len(prices))), f.train).any()
