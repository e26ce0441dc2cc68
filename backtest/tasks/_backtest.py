"""The ``backtest`` task: one strategy, one set of parameters, the whole data."""

from __future__ import annotations

from backtest.engine import simulate
from backtest.tasks._context import TaskContext, TaskOutput


def run(ctx: TaskContext) -> TaskOutput:
    """Backtest the configured strategy with its configured parameters.

    Its look-ahead check ran in :func:`~backtest.tasks.prepare`, before any run dir.
    """
    strategy = ctx.strategy_cls(**ctx.strategy_params)
    result = simulate(ctx.data, strategy, **ctx.engine_kwargs())
    metric = ctx.settings.search.metric
    return TaskOutput(backtest=result, objective=result.metrics.get(metric))
