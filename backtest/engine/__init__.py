"""Target weights + bars -> a portfolio: the single backtest and the batched path.

One per-bar state machine (:mod:`._kernel`) serves :func:`simulate`, the batched path
(:func:`simulate_batch`, :mod:`._batch_kernel`) and, for engine v1's options, the fused
kernels, so a rule (a cost, a schedule, a stop) lives in one place. A plain Python loop
of the same rules is kept in ``tests/engine_reference.py``.

* the target decided at the close of bar t (from data up to t) is filled at that close,
  or at the next open with ``execution="next_open"``: no look-ahead;
* defaults (``rebalance="bar"``, ``execution="close"``, proportional costs) are engine
  v1's sleeves: ``ret[t] = sum_j w_j ((1 + pos[t-1] r[t]) (1 - c |pos[t] - pos[t-1]|) - 1)``
  with ``r[t] = close[t] / close[t-1] - 1`` and ``c = (fee_bps + slippage_bps) / 1e4``;
* any other option runs cash and units from ``initial_capital``: holdings drift between
  rebalances (:mod:`._schedule`), every traded unit is charged (:mod:`._kernel`), limits
  and the volatility overlay scale targets (:mod:`._limits`), exits come from
  :mod:`._exits`; ``periods_per_year`` is inferred from the index (:mod:`._periods`);
  a benchmark adds relative metrics (:mod:`._benchmark`).

Real universes (:mod:`._universe`): assets listing late and delisting early (NaN
prices), a tradable set (``Bars.tradable``), delisting returns, splits and cash dividends
on unadjusted prices run in the per-bar kernel (single, batched, walk-forward, Monte
Carlo's parameter jitter); legacy positions strategies without stops batch on the
generic sleeve path fed the mask and the total returns (``_universe_batch``), as the
fused kernels know neither: nothing is held where an asset is not tradable,
a delisting holding is closed at its last price (``exit_reason = delisted``), and
strategies see the adjusted prices while fills are at the raw ones.

Modules: ``_params`` (options), ``_targets`` (strategy -> target weights), ``_kernel``
(with ``_sleeves``),
``_limits``, ``_schedule``, ``_periods``, ``_benchmark``, ``_exits``, ``_single``,
``_batch`` / ``_batch_kernel``, ``_costs``, ``_trades``, ``_fused*``, ``_checks`` (the strategy
checks that need the engine), ``_orders`` (limit/stop entries, risk sizing, volume caps and
impact, compiled) with ``_order_params`` (their keys, validated) and ``_sessions`` (flat at
the session's end, time stops in sessions). Nothing here knows
about Hydra, MLflow or Redis.
"""

from __future__ import annotations

from backtest.engine import _compiling  # noqa: F401 - says once when numba compiles
from backtest.engine._batch import BatchResult, simulate_batch
from backtest.engine._checks import check_strategy
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
    "check_strategy",
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
