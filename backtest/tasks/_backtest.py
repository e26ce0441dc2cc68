"""The ``backtest`` task: one strategy, one set of parameters, the whole data."""

from __future__ import annotations

from backtest.engine import simulate
from backtest.tasks._context import TaskContext, TaskOutput


def run(ctx: TaskContext) -> TaskOutput:
    """Backtest the configured strategy with its configured parameters."""
    strategy = ctx.strategy_cls(**ctx.strategy_params)
    result = simulate(ctx.data, strategy, **ctx.engine_kwargs())
    ctx.check_strategy(strategy, full=result.positions.to_numpy(dtype=float))
    metric = ctx.settings.search.metric
    return TaskOutput(backtest=result, objective=result.metrics.get(metric))
