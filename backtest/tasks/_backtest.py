"""The ``backtest`` task: one strategy, one set of parameters, the whole data."""

from __future__ import annotations

from backtest.engine import simulate
from backtest.engine._targets import reused_output
from backtest.tasks._context import TaskContext, TaskOutput


def run(ctx: TaskContext) -> TaskOutput:
    """Backtest the configured strategy with its configured parameters.

    Its look-ahead check ran in :func:`~backtest.tasks.prepare`, before any run dir,
    and computed the strategy's output over all the bars: the backtest uses it.
    """
    checked = ctx.checked
    if checked:  # the check's instance and its output over these bars: not computed again
        strategy = checked["strategy"]
        with reused_output(strategy, checked["output"]):
            result = simulate(ctx.data, strategy, check_lookahead=False, **ctx.engine_kwargs())
    else:  # not checked in prepare() (the montecarlo task): simulate checks, if asked to
        strategy = ctx.strategy_cls(**ctx.strategy_params)
        result = simulate(
            ctx.data,
            strategy,
            check_lookahead=ctx.settings.engine.check_lookahead,
            **ctx.engine_kwargs(),
        )
    metric = ctx.settings.search.metric
    return TaskOutput(backtest=result, objective=result.metrics.get(metric))
