"""Monte Carlo: the ``montecarlo`` task, and the analysis added to any other task's result.

``run`` backtests the configured strategy, then simulates; ``attach`` analyses the
headline result of a backtest, search (the best parameters) or walk-forward (the
stitched out-of-sample returns). The report's summary goes into ``result.json`` under
``montecarlo``, its per-path table, fan and percentiles into Parquet tables, its fan
chart and histograms into ``figures/``.
"""

from __future__ import annotations

import math
from dataclasses import replace

from backtest import results
from backtest.errors import ConfigError
from backtest.tasks import _backtest
from backtest.tasks._context import TaskContext, TaskOutput


def run(ctx: TaskContext) -> TaskOutput:
    """Backtest with the configured parameters, then run the configured Monte Carlo."""
    return attach(ctx, _backtest.run(ctx))


def _strategy_for(ctx: TaskContext, output: TaskOutput) -> object:
    """The strategy whose parameters are analysed: the headline result's, else the config's."""
    params = {**ctx.strategy_params, **output.backtest.params}
    try:
        return ctx.strategy_cls(**params)
    except (TypeError, ConfigError):
        return ctx.strategy_cls(**ctx.strategy_params)


def _engine_for(ctx: TaskContext, output: TaskOutput) -> object:
    """The engine config with a search's best ``engine.*`` values (stop levels, ...)."""
    best = output.record.get("search", {}).get("best_params", {})
    engine = {
        k.removeprefix("engine."): v
        for k, v in best.items()
        if k.startswith("engine.") and hasattr(ctx.settings.engine, k.removeprefix("engine."))
    }
    return replace(ctx.settings.engine, **engine) if engine else ctx.settings.engine


def _pct(value: object) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (
            f"{float(value):.1%}"  # type: ignore[arg-type]
        )
    )


def attach(ctx: TaskContext, output: TaskOutput) -> TaskOutput:
    """Add a Monte Carlo analysis of ``output.backtest`` to the task's output."""
    from backtest.montecarlo import MonteCarloSimulator

    config = ctx.settings.montecarlo
    if config is None:
        return output
    report = MonteCarloSimulator(
        config, progress=ctx.progress, check_lookahead=ctx.settings.engine.check_lookahead
    ).run(
        output.backtest,
        prices=ctx.data,
        strategy=_strategy_for(ctx, output),
        engine=_engine_for(ctx, output),
    )
    draw = ctx.settings.draws_figures()
    figures = report.save_figures(results.figures_dir(ctx.run_dir)) if draw else []
    summary = report.summary()
    levels = list(report.confidence)
    rows = [
        (
            "monte carlo",
            f"{report.method}, {report.n_paths} paths, seed {report.seed}",
        ),
        (
            "mc prob. of loss / ruin",
            f"{_pct(report.prob_loss)} / {_pct(report.prob_ruin)} "
            f"(drawdown >= {config.ruin_drawdown:.0%})",
        ),
    ]
    if "sharpe_ratio" in summary.index:
        sharpe = summary.loc["sharpe_ratio"]
        band = ", ".join(f"p{lv:g} {sharpe.iloc[2 + i]:.2f}" for i, lv in enumerate(levels))
        if report.method in TESTS_A_NULL:
            p_text = p_value_text(float(sharpe["p_value"]), report.n_paths)
            tested = f"observed p-value {p_text} ({TESTS_A_NULL[report.method]})"
        else:  # paths resampled from the strategy's own result centre on it: no test
            rank = report.percentile_ranks.get("sharpe_ratio", float("nan"))
            tested = f"observed at the {rank:.0f}th percentile (a spread, not a test)"
        rows.append(("mc sharpe_ratio", f"{band}; {tested}"))
    if "max_drawdown" in summary.index:
        dd = summary.loc["max_drawdown"]
        band = ", ".join(f"p{lv:g} {dd.iloc[2 + i]:.1%}" for i, lv in enumerate(levels))
        rows.append(("mc max_drawdown", band))
    return replace(
        output,
        record={**output.record, "montecarlo": report.to_dict()},
        tables={**output.tables, **report.tables()},
        figures=[*output.figures, *figures],
        summary=[*output.summary, *rows],
    )


#: Methods whose paths are drawn under a null the observed result is tested against (their
#: p-value means something), with that null. A bootstrap of the strategy's own returns or
#: trades, or a parameter jitter, centres its paths on the observed result: its "p-value"
#: is near 0.5 by construction, so the summary prints the percentile instead.
TESTS_A_NULL = {
    "random_entries": "null: random entries of the same count and holding",
    "synthetic_prices": "null: the strategy on prices with no structure",
}


def p_value_text(p_value: float, n_paths: int) -> str:
    """A Monte Carlo p-value as printed: never ``0.000``, since its floor is ``1/(n+1)``.

    With ``n`` paths and none as good as the observed result, the p-value is
    ``1/(n+1)``: it is printed as such, a bound set by the number of paths.

    >>> p_value_text(1 / 2001, 2000), p_value_text(0.0123, 2000), p_value_text(3 / 2001, 2000)
    ('<= 1/2001 (no path did as well)', '0.012', '1.5e-03')
    """
    if p_value != p_value:  # NaN
        return "n/a"
    if p_value * (n_paths + 1) <= 1.0 + 1e-9:
        return f"<= 1/{n_paths + 1} (no path did as well)"
    return f"{p_value:.3f}" if p_value >= 0.01 else f"{p_value:.1e}"
