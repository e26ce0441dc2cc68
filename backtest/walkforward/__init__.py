"""Walk-forward optimisation: splitters, evaluators and the optimizer.

:class:`WalkForwardOptimizer` cuts the history into folds (:func:`make_splits`:
rolling, anchored, calendar periods such as ``3Y``/``1Y``, ``gap_bars`` purged between
train and test, or combinatorial purged cross-validation with several out-of-sample
paths), searches each train window (grid, random or Optuna, scored on the train bars
only, indicators warmed up on all earlier bars) and trades the best parameters on the
test window from a run over the prices up to that window's end. The result holds the
fold table, the stitched out-of-sample returns and equity with their metrics, the
walk-forward efficiency, parameter stability, the deflated Sharpe ratio and PBO of
every fold's search, and PNG figures.

>>> from backtest.data import synthetic_prices
>>> from backtest.config import WalkForwardConfig
>>> from backtest.strategies import Momentum
>>> prices = synthetic_prices(n_bars=1000, n_assets=2, seed=1)
>>> evaluator = StrategyReturnsEvaluator(prices, Momentum, fee_bps=5)
>>> wf = WalkForwardOptimizer(WalkForwardConfig(train_bars=500, test_bars=250), pbo_blocks=0)
>>> result = wf.run(evaluator, {"lookback": [20, 60, 120], "skip": [0, 5]})
>>> len(result.folds), len(result.returns)
(2, 500)
"""

from __future__ import annotations

from backtest.walkforward._evaluator import ReturnsEvaluator, StrategyReturnsEvaluator
from backtest.walkforward._optimizer import RETURN_METRICS, WalkForwardOptimizer
from backtest.walkforward._result import (
    WalkForwardOverfitting,
    WalkForwardResult,
    parameter_stability,
    walkforward_efficiency,
)
from backtest.walkforward._space import constraint_mask, grid_frame, random_frame
from backtest.walkforward._splitters import (
    Fold,
    Splits,
    calendar_splits,
    cpcv_splits,
    make_splits,
    parse_period,
    rolling_splits,
)

__all__ = [
    "RETURN_METRICS",
    "Fold",
    "ReturnsEvaluator",
    "Splits",
    "StrategyReturnsEvaluator",
    "WalkForwardOptimizer",
    "WalkForwardOverfitting",
    "WalkForwardResult",
    "calendar_splits",
    "constraint_mask",
    "cpcv_splits",
    "grid_frame",
    "make_splits",
    "parameter_stability",
    "parse_period",
    "random_frame",
    "rolling_splits",
    "walkforward_efficiency",
]
