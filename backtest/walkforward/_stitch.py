"""Stitching the out-of-sample segments of a walk-forward and assembling its result."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest import metrics as m
from backtest.config import Direction, SearchConfig
from backtest.overfitting import performance_degradation, probabilistic_sharpe_ratio, return_moments
from backtest.walkforward._evaluator import ReturnsEvaluator
from backtest.walkforward._result import (
    WalkForwardOverfitting,
    WalkForwardResult,
    parameter_stability,
    walkforward_efficiency,
)
from backtest.walkforward._splitters import Splits


@dataclass(frozen=True, slots=True)
class Segment:
    """Out-of-sample bars [start, end) traded with one fold's parameters."""

    fold: int
    start: int
    end: int
    returns: NDArray[np.float64]
    run_positions: NDArray[np.float64] | None  # the run's positions over [0, end)


def oos_segments(splits: Splits, runs: Mapping[tuple[int, int], Any]) -> list[list[Segment]]:
    """Out-of-sample segments: one list for rolling/anchored, one per CPCV path."""
    if splits.paths is None:
        out = []
        folds = splits.folds
        for i, f in enumerate(folds):
            end = min(f.test_end, folds[i + 1].test_start) if i + 1 < len(folds) else f.test_end
            r_run, pos_run = runs[(f.fold, f.test_end)]
            out.append(Segment(f.fold, f.test_start, end, r_run[f.test_start : end], pos_run))
        return [out]
    bounds = splits.group_bounds
    assert bounds is not None
    paths = []
    for path in splits.paths:
        segs = []
        for g, fold in enumerate(path):
            lo, hi = int(bounds[g]), int(bounds[g + 1])
            r_run, pos_run = runs[(int(fold), hi)]
            segs.append(Segment(int(fold), lo, hi, r_run[lo:hi], pos_run))
        paths.append(segs)
    return paths


def stitch(evaluator: ReturnsEvaluator, segments: list[Segment]) -> tuple[pd.Series, pd.DataFrame]:
    cost = np.asarray(getattr(evaluator, "cost", 0.0), dtype=np.float64)  # or one per asset
    weights = getattr(evaluator, "weights", None)
    parts, pos_parts = [], []
    prev: Segment | None = None
    for seg in segments:
        r = seg.returns.copy()
        have_pos = seg.run_positions is not None and (
            prev is None or prev.run_positions is not None
        )
        if prev is not None and prev.end == seg.start and have_pos and weights is not None:
            assert seg.run_positions is not None and prev.run_positions is not None
            delta = np.abs(seg.run_positions[seg.start - 1] - prev.run_positions[seg.start - 1])
            switch = float(np.dot(cost * weights, delta))
            r[0] = (1.0 + r[0]) * (1.0 - switch) - 1.0
        parts.append(r)
        if seg.run_positions is not None:
            pos_parts.append(seg.run_positions[seg.start : seg.end])
        prev = seg
    bars = np.concatenate([np.arange(s.start, s.end) for s in segments])
    idx = evaluator.index[bars]
    returns = pd.Series(np.concatenate(parts), index=idx, name="returns")
    columns = list(getattr(evaluator, "prices", pd.DataFrame()).columns)
    if len(pos_parts) == len(segments):
        pos = np.concatenate(pos_parts)
        positions = pd.DataFrame(pos, index=idx, columns=columns or range(pos.shape[1]))
    else:
        positions = pd.DataFrame(index=idx)
    return returns, positions


def assemble_result(
    search: SearchConfig,
    evaluator: ReturnsEvaluator,
    splits: Splits,
    folds: pd.DataFrame,
    trials: pd.DataFrame,
    searched: list[pd.DataFrame],
    runs: Mapping[tuple[int, int], Any],
    ppy: int,
) -> WalkForwardResult:
    from backtest.engine import trades_table

    paths = oos_segments(splits, runs)
    stitched = [stitch(evaluator, segs) for segs in paths]
    returns, positions = stitched[0]
    prices = getattr(evaluator, "prices", None)
    if prices is not None and positions.shape[1]:
        trades = trades_table(prices.loc[positions.index], positions, evaluator.cost)  # type: ignore[attr-defined]
    else:
        trades = pd.DataFrame({"return": pd.Series(dtype=float)})
    weights = getattr(evaluator, "weights", None)
    metrics = (
        m.compute_metrics(returns, positions, trades, weights=weights, periods_per_year=ppy)
        if positions.shape[1]
        else {
            k: float(v)
            for k, v in m.return_metrics(returns.to_numpy(), periods_per_year=ppy).items()
        }
    )
    bench = oos_benchmark(evaluator, returns.index)
    bench_metrics: dict[str, float] = {}
    if bench is not None:
        metrics.update(
            m.relative_metrics(returns.to_numpy(), bench.to_numpy(), periods_per_year=ppy)
        )
        own = m.return_metrics(bench.to_numpy(), periods_per_year=ppy)
        bench_metrics = {k: float(v) for k, v in own.items()}
    param_names = [c for c in searched[0].columns]
    mom = return_moments(returns.to_numpy()) if len(returns) > 1 else None
    oos_psr = (
        probabilistic_sharpe_ratio(
            mom.sharpe, mom.n_obs, skewness=mom.skewness, kurtosis=mom.kurtosis
        )
        if mom is not None and math.isfinite(mom.sharpe)
        else math.nan
    )
    overfit = WalkForwardOverfitting(
        n_trials=int(folds["n_trials"].sum()),
        deflated_sharpe=_nanmean(folds["is_dsr"]),
        deflated_sharpe_min=float(folds["is_dsr"].min()),
        pbo=_nanmean(folds["pbo"]),
        pbo_walkforward=float(np.mean(folds["oos_rank"] <= 0.5)),
        oos_probabilistic_sharpe=oos_psr,
        degradation=performance_degradation(folds["is_sharpe"], folds["oos_sharpe_ratio"]),
        effective_trials=float(folds["effective_trials"].sum(min_count=1)),
        deflated_sharpe_effective=_nanmean(folds["is_dsr_effective"]),
        spa_pvalue=_nanmean(folds["spa_pvalue"]),
        spa_pvalue_max=_nanmax(folds["spa_pvalue"]),
        reality_check_pvalue=_nanmean(folds["reality_check_pvalue"]),
    )
    path_frame = path_metrics = None
    if splits.paths is not None:
        path_frame = pd.DataFrame({f"path_{i}": r for i, (r, _) in enumerate(stitched)})
        path_metrics = pd.DataFrame(
            [
                {
                    "path": i,
                    **{
                        k: float(v)
                        for k, v in m.return_metrics(r.to_numpy(), periods_per_year=ppy).items()
                    },
                }
                for i, (r, _) in enumerate(stitched)
            ]
        )
    return WalkForwardResult(
        folds=folds,
        trials=trials,
        returns=returns,
        equity=(1.0 + returns).cumprod().rename("equity"),
        positions=positions,
        trades=trades,
        metrics=metrics,
        efficiency=walkforward_efficiency(metrics["cagr"], folds["is_cagr"]),
        sharpe_efficiency=walkforward_efficiency(metrics["sharpe_ratio"], folds["is_sharpe"]),
        stability=parameter_stability(folds[param_names], pd.concat(searched, ignore_index=True)),
        overfitting=overfit,
        splitter=splits.splitter,
        metric=search.metric,
        direction=Direction(search.direction).value,
        paths=path_frame,
        path_metrics=path_metrics,
        periods_per_year=ppy,
        splits=splits,
        index=pd.DatetimeIndex(evaluator.index),
        benchmark=None if bench is None else (1.0 + bench).cumprod().rename("benchmark"),
        benchmark_metrics=bench_metrics,
    )


def oos_benchmark(evaluator: ReturnsEvaluator, index: pd.DatetimeIndex) -> pd.Series | None:
    """Per-bar returns of the evaluator's ``benchmark`` on the out-of-sample bars, or None.

    Built over the bars from the first out-of-sample bar to the last (bought at the
    first one's close, its first return 0, ``equal_weight_rebalanced`` on the configured
    ``rebalance`` schedule), then read at the stitched bars.
    """
    options = getattr(evaluator, "engine_options", None) or {}
    name = options.get("benchmark")
    bars = getattr(evaluator, "bars", None)
    if not name or bars is None or len(index) == 0:
        return None
    from backtest.engine._benchmark import benchmark_returns
    from backtest.engine._params import parse_rebalance

    full = pd.DatetimeIndex(evaluator.index)
    first, last = full.get_loc(index[0]), full.get_loc(index[-1])
    sub = bars.iloc[int(first) : int(last) + 1]
    rebalance = parse_rebalance(options.get("rebalance", "bar"))
    return benchmark_returns(sub, str(name), rebalance=rebalance).reindex(index)


def _nanmean(values: pd.Series) -> float:
    arr = values.to_numpy(dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else math.nan


def _nanmax(values: pd.Series) -> float:
    arr = values.to_numpy(dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.max()) if arr.size else math.nan
