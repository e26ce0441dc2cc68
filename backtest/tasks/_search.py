"""The ``search`` task: search the strategy's parameters, then backtest the best.

The space, method, metric and constraint come from the ``search`` config group; the
parameters not searched keep their ``strategy`` config values. The headline result is
a full :func:`~backtest.engine.simulate` backtest of the best parameters over all the
data: the one the search compared its best trial with (its score, trade count and
total return equal the trial's, or the run fails with ``PathDivergence``), with the
trials table, a heatmap over the first two searched parameters and the overfitting
statistics of the kept trial returns (PSR, DSR, PBO).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
import pandas as pd

from backtest import results
from backtest.engine import simulate
from backtest.errors import BacktestError, ConfigError
from backtest.report import _png
from backtest.search import SearchResult, StrategyEvaluator, run_search
from backtest.tasks._context import TaskContext, TaskOutput

log = logging.getLogger("backtest.tasks.search")


def is_engine_key(name: str) -> bool:
    """Whether a search-space key is an engine option (``engine.rebalance``, ...)."""
    from backtest.engine import _exits
    from backtest.engine._params import ENGINE_KEYS

    key = name.removeprefix("engine.")
    return name.startswith("engine.") and (key in ENGINE_KEYS or key in _exits.STOP_FIELDS)


def split_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(strategy parameters, engine options)`` of a trial's parameters."""
    strategy = {k: v for k, v in params.items() if not is_engine_key(k)}
    engine = {k.removeprefix("engine."): v for k, v in params.items() if is_engine_key(k)}
    return strategy, engine


def fixed_params(ctx: TaskContext, if_empty: str) -> dict[str, Any]:
    """The strategy parameters the search leaves as configured, once ``search.space`` is checked.

    Raises:
        ConfigError: an empty ``search.space`` (``if_empty`` is the message: what to list),
            or a key that is neither a parameter of the strategy nor an engine option.
    """
    space = ctx.settings.search.space
    if not space:
        raise ConfigError(if_empty, key="search.space")
    from backtest.strategies import param_names

    names = param_names(ctx.strategy_cls)
    unknown = [p for p in space if p not in names and not is_engine_key(p)]
    if unknown:
        raise ConfigError(
            f"search.space.{unknown[0]} is not a parameter of "
            f"{ctx.strategy_cls.__name__} ({', '.join(names)})",
            key=f"search.space.{unknown[0]}",
        )
    return {k: v for k, v in ctx.strategy_params.items() if k not in space}


class SimulateEvaluator:
    """Scores one parameter set with :func:`simulate` (strategies without ``batch_positions``).

    A module-level class, so worker processes can receive it.
    """

    def __init__(
        self,
        prices: pd.DataFrame,
        strategy_cls: type,
        fixed_params: dict[str, Any],
        engine_kwargs: dict[str, Any],
    ) -> None:
        self.prices = prices
        self.strategy_cls = strategy_cls
        self.fixed_params = fixed_params
        self.engine_kwargs = engine_kwargs

    def backtest(self, params: dict[str, Any]) -> Any:
        """The single backtest of ``params``, which the search verifies its trials with."""
        return self(params)

    def __call__(self, params: dict[str, Any]) -> Any:
        """The single backtest of ``params`` (metrics and return series)."""
        own, engine = split_params(params)
        strategy = self.strategy_cls(**{**self.fixed_params, **own})
        return simulate(  # (checked for look-ahead before the search)
            self.prices, strategy, check_lookahead=False, **{**self.engine_kwargs, **engine}
        )


def _overfitting(
    ctx: TaskContext, result: SearchResult, best_returns: pd.Series
) -> dict[str, float] | None:
    """PSR, DSR (raw and effective N), PBO and SPA over the kept trial returns."""
    if result.returns is None:
        return None
    from backtest.overfitting import overfitting_report

    matrix = result.returns.astype(np.float64)
    if result.best_trial not in matrix.columns:
        matrix[result.best_trial] = best_returns.to_numpy()
    if matrix.shape[1] < 2:
        return None
    ppy = ctx.engine_kwargs()["periods_per_year"]
    ok = result.trials[result.trials["status"] == "ok"]
    sharpes = None
    if "sharpe_ratio" in ok.columns:
        sharpes = ok["sharpe_ratio"].to_numpy(dtype=np.float64) / math.sqrt(ppy)
    try:
        report = overfitting_report(
            matrix.to_numpy(),
            best_trial=list(matrix.columns).index(result.best_trial),
            n_trials=result.n_trials - result.n_failed,
            trial_sharpes=sharpes,
            periods_per_year=ppy,
            seed=ctx.settings.search.seed,
        )
    except BacktestError as exc:
        log.warning("overfitting statistics skipped: %s", exc)
        return None
    return report.as_dict()


def run(ctx: TaskContext) -> TaskOutput:
    """Search, then backtest the best parameters over the whole data.

    Raises:
        ConfigError: an empty ``search.space`` or a space naming an unknown parameter.
        TrialsFailed: every trial failed.
    """
    cfg = ctx.settings.search
    method = str(getattr(cfg.method, "value", cfg.method))
    direction = str(getattr(cfg.direction, "value", cfg.direction))
    fixed = fixed_params(
        ctx,
        f"search.method is {method!r} but search.space is empty: list the strategy "
        "parameters to search, e.g. search.space.fast: [5, 10, 20]",
    )
    from backtest.strategies import has_fast_path

    engine = ctx.engine_kwargs()
    if has_fast_path(ctx.strategy_cls):
        evaluator: Any = StrategyEvaluator(  # look-ahead checked in prepare()
            ctx.data, ctx.strategy_cls, fixed_params=fixed, check_lookahead=False, **engine
        )
    else:
        log.warning(
            "%s has no batch_positions of its own: the search runs one backtest per "
            "parameter set (search.n_jobs processes help); for the fast path add a "
            "classmethod batch_positions(close, params) -> (n_bars, n_sets) positions "
            "(README: Writing a strategy)",
            ctx.strategy_cls.__name__,
        )
        evaluator = SimulateEvaluator(ctx.data, ctx.strategy_cls, fixed, engine)
    started = time.perf_counter()
    result = run_search(
        method,
        dict(cfg.space),
        evaluator,
        n_iter=cfg.n_iter,
        metric=cfg.metric,
        direction=direction,
        constraint=cfg.constraint,
        n_jobs=cfg.n_jobs,
        seed=cfg.seed,
        progress=ctx.progress,
        keep_returns=cfg.keep_returns,
    )
    elapsed = time.perf_counter() - started
    best = result.best_backtest  # the search compared its best trial with it
    if best is None:
        best_strategy, best_engine = split_params(result.best_params)
        best = simulate(
            ctx.data,
            ctx.strategy_cls(**{**fixed, **best_strategy}),
            check_lookahead=False,  # checked in prepare()
            **{**engine, **best_engine},
        )
    figures = []
    if ctx.settings.draws_figures() and len(result.param_names) >= 2:
        x, y = result.param_names[:2]
        cells, title = result.heatmap_cells(x, y)
        path = results.figures_dir(ctx.run_dir) / "heatmap.png"
        maximize = result.direction == "maximize"
        figures.append(
            _png.heatmap_figure(cells, x, y, result.metric, path, title=title, maximize=maximize)
        )
    section: dict[str, Any] = {
        "method": method,
        "metric": cfg.metric,
        "direction": direction,
        "space": dict(cfg.space),
        "constraint": cfg.constraint,
        "n_trials": result.n_trials,
        "n_failed": result.n_failed,
        "best_trial": result.best_trial,
        "best_params": result.best_params,
        "best_score": result.best_score,
        "seed": result.seed,
        "elapsed_s": elapsed,
        "trials_per_s": result.n_trials / elapsed if elapsed > 0 else None,
        "verified_trials": list(result.verified),
    }
    record: dict[str, Any] = {"search": section}
    overfitting = _overfitting(ctx, result, best.returns)
    if overfitting is not None:
        record["overfitting"] = overfitting
    top = result.top(ctx.settings.tracking.max_child_runs)
    children = [
        {
            "name": f"trial {int(row['trial'])}",
            "params": {p: _plain(row[p]) for p in result.param_names},
            "metrics": {
                m: float(row[m])
                for m in top.columns
                if m not in ("trial", "seed", "status", "error", *result.param_names)
                and isinstance(row[m], int | float | np.number)
            },
        }
        for _, row in top.iterrows()
    ]
    summary = [
        (
            "search",
            f"{method}, {result.n_trials} trials ({result.n_failed} failed) in {elapsed:.2f} s",
        ),
        (
            "best trial",
            f"#{result.best_trial}: "
            + ", ".join(f"{k}={v}" for k, v in result.best_params.items()),
        ),
        (f"best {cfg.metric}", f"{result.best_score:.4f}"),
    ]
    if overfitting is not None:
        summary.extend(overfitting_rows(overfitting))
    return TaskOutput(
        backtest=best,
        record=record,
        tables={"trials": result.trials},
        figures=figures,
        summary=summary,
        objective=result.best_score,
        children=children,
    )


def overfitting_rows(of: dict[str, float], note: str = "") -> list[tuple[str, str]]:
    """Summary rows of an ``overfitting`` section: both DSRs, PBO, effective N, SPA."""

    def f(key: str, spec: str = ".3f") -> str:
        value = of.get(key, math.nan)
        return format(value, spec) if value is not None and math.isfinite(value) else "n/a"

    return [
        (
            "deflated sharpe (raw N / effective N)",
            f"{f('deflated_sharpe')} / {f('deflated_sharpe_effective')}{note}",
        ),
        ("trials (run / effective)", f"{f('n_trials', '.0f')} / {f('effective_trials', '.1f')}"),
        ("pbo", f"{f('pbo')}{note}"),
        (
            "spa / reality check p-value",
            f"{f('spa_pvalue')} / {f('reality_check_pvalue')}{note}",
        ),
    ]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
