"""The walk-forward optimizer: search on each train window, trade on its test window."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest import metrics as m
from backtest.config import Direction, SearchConfig, SearchMethod, WalkForwardConfig
from backtest.errors import BacktestError, ConfigError
from backtest.overfitting import (
    overfitting_report,
    performance_degradation,
    probabilistic_sharpe_ratio,
    return_moments,
)
from backtest.walkforward._evaluator import ReturnsEvaluator
from backtest.walkforward._result import (
    WalkForwardOverfitting,
    WalkForwardResult,
    _plain,
    parameter_stability,
    walkforward_efficiency,
)
from backtest.walkforward._search import FoldSearch, search_fold
from backtest.walkforward._space import grid_frame
from backtest.walkforward._splitters import Fold, Splits, make_splits

RETURN_METRICS = (
    "total_return",
    "cagr",
    "annual_volatility",
    "sharpe_ratio",
    "sortino_ratio",
    "max_drawdown",
    "calmar_ratio",
)


def score_function(metric: str, periods_per_year: int) -> Callable[[NDArray[np.float64]], Any]:
    """The return metric ``metric`` over the columns of a (bars x trials) array.

    Raises:
        ConfigError: Not a return metric (key ``search.metric``).
    """
    if metric not in RETURN_METRICS:
        raise ConfigError(
            f"search.metric {metric!r} cannot rank walk-forward trials; use one of "
            f"{list(RETURN_METRICS)}",
            key="search.metric",
        )
    fn = getattr(m, metric)
    if metric in ("total_return", "max_drawdown"):
        return lambda r: np.atleast_1d(fn(r))
    return lambda r: np.atleast_1d(fn(r, periods_per_year=periods_per_year))


@dataclass(frozen=True, slots=True)
class _Segment:
    """Out-of-sample bars [start, end) traded with one fold's parameters."""

    fold: int
    start: int
    end: int
    returns: NDArray[np.float64]
    run_positions: NDArray[np.float64] | None  # the run's positions over [0, end)


class WalkForwardOptimizer:
    """Walk-forward optimisation over the windows of a :class:`WalkForwardConfig`.

    For every fold the search (grid, random or Optuna TPE/CMA-ES per ``search``) scores
    each parameter set on the train window only; the best set is then traded on the
    test window. Indicators see all history before each bar (earlier bars are warm-up),
    never later ones: the test window's returns come from a run over the prices up to
    the end of that window, and its first bar earns the position carried in from the
    train window without an extra fee. When the next fold switches parameters, the
    trade from the old position to the new one is charged on the new window's first bar.

    Args:
        config: The windows (rolling, anchored, calendar or CPCV).
        search: Method, metric, direction, space, ``n_iter``, constraint and seed;
            a grid maximising ``sharpe_ratio`` when None. ``method: none`` means grid.
        pbo_blocks: S of the per-fold CSCV probability of backtest overfitting
            (16 in the paper); 0 skips it (it costs about 0.15 s per fold for 500
            trials).
        progress: Show a progress bar over folds.

    Raises:
        ConfigError: A metric that is not a return metric (key ``search.metric``).
    """

    def __init__(
        self,
        config: WalkForwardConfig,
        search: SearchConfig | None = None,
        *,
        pbo_blocks: int = 16,
        progress: bool = False,
    ) -> None:
        self.config = config
        self.search = search if search is not None else SearchConfig(method=SearchMethod.grid)
        score_function(self.search.metric, 252)
        self.pbo_blocks = int(pbo_blocks)
        self.progress = progress

    def run(
        self,
        evaluator: ReturnsEvaluator,
        param_space: Mapping[str, Any] | pd.DataFrame | None = None,
        *,
        figures_dir: str | Path | None = None,
    ) -> WalkForwardResult:
        """Optimise on every train window and trade the choice on its test window.

        Args:
            evaluator: Per-bar returns of parameter sets, e.g.
                :class:`~backtest.walkforward.StrategyReturnsEvaluator`.
            param_space: The space (name -> list or ``{low, high, step, log}``), or a
                frame of explicit parameter sets; ``search.space`` when None.
            figures_dir: Write the fold chart and out-of-sample equity PNGs here.

        Returns:
            The :class:`WalkForwardResult`.

        Raises:
            ConfigError: A bad space, constraint or window setting, naming the key.
            TrialsFailed: Every trial of a fold scored NaN.
            BacktestError: The strategy's returns changed when later bars were removed
                (it looks ahead).
        """
        from tqdm.auto import tqdm

        ppy = int(evaluator.periods_per_year)
        index = pd.DatetimeIndex(evaluator.index)
        splits = make_splits(self.config, index)
        score = score_function(self.search.metric, ppy)
        maximize = Direction(self.search.direction) is Direction.maximize
        space: Mapping[str, Any] | pd.DataFrame = (
            self.search.space if param_space is None else param_space
        )
        method = SearchMethod(self.search.method)
        grid = None
        if isinstance(space, pd.DataFrame):
            grid = space.reset_index(drop=True)
        elif method in (SearchMethod.none, SearchMethod.grid):
            grid = grid_frame(space, self.search.constraint)
        rows, trials, searched = [], [], []
        runs: dict[tuple[int, int], tuple[NDArray[np.float64], NDArray[np.float64] | None]] = {}
        for fold in tqdm(splits.folds, desc="walk-forward", disable=not self.progress):
            fs = search_fold(fold, evaluator, space, grid, self.search, score, maximize, method)
            searched.append(fs.frame)
            trials.append(fs.frame.assign(fold=fold.fold, score=fs.scores))
            row, fold_runs = self._fold_row(fold, fs, evaluator, splits, score, maximize, ppy)
            rows.append(row)
            runs.update(fold_runs)
        folds = pd.DataFrame(rows)
        trials_frame = pd.concat(trials, ignore_index=True)
        trials_frame = trials_frame[["fold", *searched[0].columns, "score"]]
        result = self._assemble(evaluator, splits, folds, trials_frame, searched, runs, ppy)
        if figures_dir is not None:
            result = replace(result, figures=result.save_figures(figures_dir))
        return result

    # ------------------------------------------------------------------ one fold

    def _fold_row(
        self,
        fold: Fold,
        fs: FoldSearch,
        evaluator: ReturnsEvaluator,
        splits: Splits,
        score: Callable[[NDArray[np.float64]], Any],
        maximize: bool,
        ppy: int,
    ) -> tuple[dict[str, Any], dict[tuple[int, int], Any]]:
        index = evaluator.index
        best = fs.best
        params = {str(k): _plain(v) for k, v in fs.frame.iloc[best].items()}
        rep = overfitting_report(
            fs.train_returns, best_trial=best, periods_per_year=ppy, n_blocks=self.pbo_blocks
        )
        # Out of sample: runs over the prices up to the end of each test stretch.
        ends = (
            [int(splits.group_bounds[g + 1]) for g in fold.test_groups]
            if fold.test_groups and splits.group_bounds is not None
            else [fold.test_end]
        )
        runs = {}
        for end in ends:
            r_run, pos_run = evaluator.trade(params, end)
            _check_no_look_ahead(evaluator, fs, best, r_run, params)
            runs[(fold.fold, end)] = (r_run, pos_run)
        r_test = np.concatenate(
            [
                runs[(fold.fold, e)][0][fold.test[(fold.test < e) & (fold.test >= s)]]
                for s, e in zip([0, *ends[:-1]], ends, strict=True)
            ]
        )
        oos = m.return_metrics(r_test, periods_per_year=ppy)
        all_test = evaluator.returns(fs.frame, fold.test_end)[fold.test]
        test_scores = np.asarray(score(all_test), dtype=np.float64)
        if not maximize:
            test_scores = -test_scores
        test_scores = np.where(np.isfinite(test_scores), test_scores, -np.inf)
        v = test_scores[best]
        rank = np.sum(test_scores < v) + (np.sum(test_scores == v) + 1) / 2.0
        train_best = fs.train_returns[:, best]
        row: dict[str, Any] = {
            "fold": fold.fold,
            "train_start": index[fold.train_start],
            "train_end": index[fold.train_end - 1],
            "test_start": index[fold.test_start],
            "test_end": index[fold.test_end - 1],
            "train_bars": len(fold.train),
            "test_bars": len(fold.test),
            **params,
            "n_trials": len(fs.frame),
            "is_score": float(fs.scores[best]),
            "is_sharpe": rep.best_sharpe_annual,
            "is_cagr": float(m.cagr(train_best, periods_per_year=ppy)),
            "is_dsr": rep.dsr,
            "pbo": rep.pbo,
            "oos_rank": float(rank / (len(test_scores) + 1)),
            **{f"oos_{k}": float(val) for k, val in oos.items()},
        }
        return row, runs

    # ------------------------------------------------------------------ stitching

    def _segments(
        self, splits: Splits, runs: Mapping[tuple[int, int], Any]
    ) -> list[list[_Segment]]:
        """Out-of-sample segments: one list for rolling/anchored, one per CPCV path."""
        if splits.paths is None:
            out = []
            folds = splits.folds
            for i, f in enumerate(folds):
                end = min(f.test_end, folds[i + 1].test_start) if i + 1 < len(folds) else f.test_end
                r_run, pos_run = runs[(f.fold, f.test_end)]
                out.append(_Segment(f.fold, f.test_start, end, r_run[f.test_start : end], pos_run))
            return [out]
        bounds = splits.group_bounds
        assert bounds is not None
        paths = []
        for path in splits.paths:
            segs = []
            for g, fold in enumerate(path):
                lo, hi = int(bounds[g]), int(bounds[g + 1])
                r_run, pos_run = runs[(int(fold), hi)]
                segs.append(_Segment(int(fold), lo, hi, r_run[lo:hi], pos_run))
            paths.append(segs)
        return paths

    def _stitch(
        self, evaluator: ReturnsEvaluator, segments: list[_Segment]
    ) -> tuple[pd.Series, pd.DataFrame]:
        cost = float(getattr(evaluator, "cost", 0.0))
        weights = getattr(evaluator, "weights", None)
        parts, pos_parts = [], []
        prev: _Segment | None = None
        for seg in segments:
            r = seg.returns.copy()
            have_pos = seg.run_positions is not None and (
                prev is None or prev.run_positions is not None
            )
            if prev is not None and prev.end == seg.start and have_pos and weights is not None:
                assert seg.run_positions is not None and prev.run_positions is not None
                delta = np.abs(seg.run_positions[seg.start - 1] - prev.run_positions[seg.start - 1])
                switch = cost * float(np.dot(weights, delta))
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

    def _assemble(
        self,
        evaluator: ReturnsEvaluator,
        splits: Splits,
        folds: pd.DataFrame,
        trials: pd.DataFrame,
        searched: list[pd.DataFrame],
        runs: Mapping[tuple[int, int], Any],
        ppy: int,
    ) -> WalkForwardResult:
        from backtest.engine import trades_table

        paths = self._segments(splits, runs)
        stitched = [self._stitch(evaluator, segs) for segs in paths]
        returns, positions = stitched[0]
        prices = getattr(evaluator, "prices", None)
        if prices is not None and positions.shape[1]:
            trades = trades_table(prices.loc[positions.index], positions, float(evaluator.cost))  # type: ignore[attr-defined]
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
            stability=parameter_stability(
                folds[param_names], pd.concat(searched, ignore_index=True)
            ),
            overfitting=overfit,
            splitter=splits.splitter,
            metric=self.search.metric,
            direction=Direction(self.search.direction).value,
            paths=path_frame,
            path_metrics=path_metrics,
            periods_per_year=ppy,
            splits=splits,
            index=pd.DatetimeIndex(evaluator.index),
        )


def _nanmean(values: pd.Series) -> float:
    arr = values.to_numpy(dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else math.nan


def _check_no_look_ahead(
    evaluator: ReturnsEvaluator,
    fs: FoldSearch,
    best: int,
    r_run: NDArray[np.float64],
    params: Mapping[str, Any],
) -> None:
    """With shared history, the run over a price prefix must equal the shared run.

    A strategy whose positions at bar t use closes after t gives different returns
    when later bars are removed; that is look-ahead, and the walk-forward refuses it.
    """
    if not getattr(evaluator, "shared_history", False):
        return
    full = evaluator.returns(fs.frame, len(evaluator.index))[: len(r_run), best]
    bad = ~np.isclose(full, r_run, rtol=1e-10, atol=1e-13)
    if bad.any():
        t = int(np.argmax(bad))
        raise BacktestError(
            f"strategy looks ahead: with params {dict(params)} its return at "
            f"{evaluator.index[t]} changes when the bars after "
            f"{evaluator.index[len(r_run) - 1]} are removed"
        )
