"""Monte Carlo robustness analysis: one simulator, every method, selected by config.

``MonteCarloSimulator(config).run(source)`` resamples a backtest's bar returns
(iid, stationary or circular block bootstrap) or its trades (reshuffle or
bootstrap), or re-runs the strategy on synthetic prices, jittered parameters or
random entries, and returns a :class:`MonteCarloReport`. Paths compound
fractional returns, so a drawdown never exceeds 100%.
"""

from __future__ import annotations

from backtest.config import MonteCarloConfig, MonteCarloMethod
from backtest.montecarlo._report import MonteCarloReport
from backtest.montecarlo._simulator import MonteCarloSimulator

__all__ = ["MonteCarloConfig", "MonteCarloMethod", "MonteCarloReport", "MonteCarloSimulator"]
