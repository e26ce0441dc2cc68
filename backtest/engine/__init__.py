"""Positions to returns: the single backtest and the batched path for searches.

Conventions (the same in both paths, tested against a plain per-bar loop):

* the target position computed at the close of bar t is held over bar t+1, so a
  signal never earns the return of the bar that produced it (no look-ahead);
* bar return ``r[t] = close[t] / close[t-1] - 1``;
* strategy return ``ret[t] = (1 + pos[t-1] * r[t]) * (1 - c * |pos[t] - pos[t-1]|) - 1``
  with ``c = (fee_bps + slippage_bps) / 1e4``, ``pos[-1] = 0`` and ``ret[0] = 0``:
  costs are charged on traded notional at the close where the position changes;
* several assets: each asset's strategy return is combined with equal (or given)
  weights every bar (a daily-rebalanced portfolio).

Nothing here knows about Hydra, MLflow or Redis.

The package, one concept per module: ``_costs`` (cost rate, bar returns), ``_trades``
(the trades table), ``_single`` (:func:`simulate`), ``_batch`` (:func:`simulate_batch`),
``_fused`` / ``_fused_kernels`` / ``_fused_stats`` (compiled kernels of the built-in
strategies with streaming metrics).
"""

from __future__ import annotations

from backtest.engine._batch import BatchResult, simulate_batch
from backtest.engine._costs import asset_returns, bar_returns, cost_rate
from backtest.engine._options import check_engine_config, engine_options
from backtest.engine._params import EngineParams, engine_params
from backtest.engine._periods import infer_periods_per_year
from backtest.engine._single import BacktestResult, resolve_weights, simulate
from backtest.engine._targets import target_weights
from backtest.engine._trades import TRADE_COLUMNS, trades_table

__all__ = [
    "TRADE_COLUMNS",
    "BacktestResult",
    "BatchResult",
    "EngineParams",
    "asset_returns",
    "bar_returns",
    "check_engine_config",
    "cost_rate",
    "engine_options",
    "engine_params",
    "infer_periods_per_year",
    "resolve_weights",
    "simulate",
    "simulate_batch",
    "target_weights",
    "trades_table",
]
