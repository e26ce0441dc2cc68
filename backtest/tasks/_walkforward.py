"""The ``walkforward`` task: optimise on each train window, trade on its test window.

The windows come from the ``walkforward`` config group, the per-fold search (method,
space, metric, direction, constraint, seed) from ``search`` (``method: none`` means a
grid). Parameters not searched keep their ``strategy`` config values. The headline
result is the stitched out-of-sample backtest; the record holds the fold table, the
walk-forward efficiency, parameter stability and the overfitting statistics (deflated
Sharpe with the trials each fold ran, PBO).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from backtest import results
from backtest.engine import BacktestResult
from backtest.tasks._context import TaskContext, TaskOutput
from backtest.tasks._search import fixed_params, overfitting_rows
from backtest.walkforward import StrategyReturnsEvaluator, WalkForwardOptimizer, WalkForwardResult


def _fmt(value: Any, spec: str = ".3f") -> str:
    if isinstance(value, float | np.floating) and not math.isfinite(float(value)):
        return "n/a"
    return format(value, spec) if isinstance(value, float | np.floating) else str(value)


def fold_rows(result: WalkForwardResult, param_names: list[str]) -> list[tuple[str, str]]:
    """One summary row per fold: test window, chosen parameters, IS and OOS score."""
    metric = result.metric
    rows = []
    for row in result.folds.to_dict("records"):
        if "test_groups" in row:
            where = f"test groups {row['test_groups']}"
        else:
            where = f"test {row['test_start']:%Y-%m-%d}..{row['test_end']:%Y-%m-%d}"
        params = ", ".join(f"{p}={row[p]}" for p in param_names)
        oos = _fmt(row.get(f"oos_{metric}", float("nan")), ".2f")
        rows.append(
            (
                f"fold {row['fold']}",
                f"{where}  {params}  IS {metric} {_fmt(row['is_score'], '.2f')}  "
                f"OOS {metric} {oos}  DSR {_fmt(row['is_dsr'], '.2f')}",
            )
        )
    return rows


def run(ctx: TaskContext) -> TaskOutput:
    """Walk-forward optimise the configured strategy.

    Raises:
        ConfigError: An empty ``search.space``, a space naming an unknown parameter,
            or windows the data cannot hold.
        StrategyContractError: the strategy looks ahead, or its ``batch_positions``
            disagrees with ``positions``.
        TrialsFailed: Every trial of a fold scored NaN.
    """
    wf_cfg = ctx.settings.walkforward
    assert wf_cfg is not None
    search = ctx.settings.search
    fixed = fixed_params(
        ctx,
        "walk-forward needs search.space: list the strategy parameters to optimise per "
        "fold, e.g. search.space.lookback: [21, 63, 126]",
    )
    evaluator = StrategyReturnsEvaluator(  # look-ahead checked in prepare()
        ctx.data,
        ctx.strategy_cls,
        fixed_params=fixed,
        check_lookahead=False,
        **ctx.engine_kwargs(),
    )
    # The CLI reports every fold's snooping statistics (opt-in in the library).
    optimizer = WalkForwardOptimizer(
        wf_cfg, search, spa_bootstrap=1000, effective_trials=True, progress=ctx.progress
    )
    result = optimizer.run(
        evaluator,
        dict(search.space),
        figures_dir=results.figures_dir(ctx.run_dir) if ctx.settings.draws_figures() else None,
    )
    headline = BacktestResult(
        returns=result.returns,
        equity=result.equity,
        positions=result.positions,
        trades=result.trades,
        metrics=result.metrics,
        params={**fixed, "walk-forward": result.parameter_path},
        benchmark=result.benchmark,  # engine.benchmark over the out-of-sample bars
        benchmark_metrics=result.benchmark_metrics,
        initial_capital=ctx.settings.engine.initial_capital,
    )
    param_names = list(search.space)
    of = result.overfitting
    summary = [
        *fold_rows(result, param_names),
        (
            "walk-forward",
            f"{result.splitter}, {len(result.folds)} folds, {of.n_trials} trials, "
            f"{search.metric} {getattr(search.direction, 'value', search.direction)}",
        ),
        (
            "walk-forward efficiency",
            f"{_fmt(result.efficiency)} (CAGR), {_fmt(result.sharpe_efficiency)} (Sharpe)",
        ),
        *overfitting_rows(of.as_dict(), " (mean over folds)"),
        (
            "min fold DSR / max fold SPA p",
            f"{_fmt(of.deflated_sharpe_min)} / {_fmt(of.spa_pvalue_max)}",
        ),
        ("oos probabilistic sharpe", _fmt(of.oos_probabilistic_sharpe)),
    ]
    children = [
        {
            "name": f"fold {int(row['fold'])}",
            "params": {p: row[p] for p in param_names},
            "metrics": {
                k: float(row[k])
                for k in result.folds.columns
                if k.startswith(("is_", "oos_"))
                or k
                in (
                    "pbo",
                    "n_trials",
                    "effective_trials",
                    "spa_pvalue",
                    "reality_check_pvalue",
                )
            },
        }
        for row in result.folds.to_dict("records")
    ]
    return TaskOutput(
        backtest=headline,
        record={"walkforward": result.summary(), "overfitting": of.as_dict()},
        tables={"folds": result.folds, "trials": result.trials},
        figures=list(result.figures),
        summary=summary,
        objective=result.metrics.get(search.metric),
        children=children,
    )
