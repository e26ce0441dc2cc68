"""The walk-forward optimizer: search on each train window, trade on its test window."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest import metrics as m
from backtest.config import Direction, SearchConfig, SearchMethod, Splitter, WalkForwardConfig
from backtest.errors import BacktestError, ConfigError
from backtest.search._truth import FoldTruth, explain_mismatch
from backtest.walkforward._evaluator import ReturnsEvaluator, StrategyReturnsEvaluator
from backtest.walkforward._fold_stats import fold_overfitting, fold_snooping
from backtest.walkforward._kernels import window_sharpe, windows_sharpe
from backtest.walkforward._result import (
    WalkForwardResult,
    _plain,
)
from backtest.walkforward._search import FoldSearch, search_fold, tie_rank, train_rows
from backtest.walkforward._space import grid_frame, random_frame
from backtest.walkforward._splitters import Fold, Splits, make_splits
from backtest.walkforward._stitch import assemble_result
from backtest.walkforward._warmup import strategy_warmup

RETURN_METRICS = m.RETURN_METRIC_NAMES  # the same metrics, in the same order, as the engine


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
    if metric == "sharpe_ratio":  # the common case, compiled: no temporaries
        scale = math.sqrt(periods_per_year)
        return lambda r: _sharpe(r) * scale
    fn = getattr(m, metric)
    if metric in ("total_return", "max_drawdown"):
        return lambda r: np.atleast_1d(fn(r))
    return lambda r: np.atleast_1d(fn(r, periods_per_year=periods_per_year))


def _sharpe(returns: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per-period Sharpe of each column (see :func:`window_sharpe`)."""
    r = np.asarray(returns, dtype=np.float64)  # any layout: no copy of a slice
    return window_sharpe(r, 0, r.shape[0])


class WalkForwardOptimizer:
    """Walk-forward optimisation over the windows of a :class:`WalkForwardConfig`.

    For every fold the search (grid, random or Optuna TPE/CMA-ES per ``search``) scores
    each parameter set on the train window only; the best set is then traded on the
    test window. Indicators see all history before each bar (earlier bars are warm-up),
    never later ones: the test window's returns come from a run over the prices up to
    the end of that window, and its first bar earns the position carried in from the
    train window without an extra fee. When the next fold switches parameters, the
    trade from the old position to the new one is charged on the new window's first bar.

    The folds' chosen sets (and a sample of others) are re-run alone through
    :func:`~backtest.engine.simulate`, each once (over the whole history when the
    evaluator shares it): the first and last folds' always, the others within a share of
    the run's time, every fold's when the evaluator trades through ``simulate`` anyway.
    The re-run's train rows must give the fold's in-sample score and total return, else
    :class:`~backtest.errors.PathDivergence` (:class:`backtest.search._truth.FoldTruth`).
    Every fold's traded run is compared bar for bar with the shared-history returns
    (the look-ahead check). As the
    command line: a :class:`StrategyReturnsEvaluator` (or a search
    :class:`~backtest.search.StrategyEvaluator`, converted with its bars and options)
    infers ``periods_per_year`` from the index when not given, checks the data with the
    same named errors, and checks the strategy for look-ahead unless built with
    ``check_lookahead=False``.

    Args:
        config: The windows (rolling, anchored, calendar or CPCV).
        search: Method, metric, direction, space, ``n_iter``, constraint and seed;
            a grid maximising ``sharpe_ratio`` when None. ``method: none`` means grid.
        pbo_blocks: S of the per-fold CSCV probability of backtest overfitting
            (16 in the paper); 0 skips it (it costs about 0.15 s per fold for 500
            trials).
        spa_bootstrap: Stationary-bootstrap draws of each fold's SPA / Reality Check
            test of the chosen set against the benchmark, e.g. 1000 (arch's default);
            0, the default, skips it (NaN). Opt-in because it outweighs the search:
            1000 draws of a 756-bar x 500-trial fold cost about 10-20 ms, several
            times the fold's share of the grid search.
        effective_trials: Compute each fold's effective number of trials (Li & Ji)
            and the DSR with it; off by default (NaN). Opt-in for the same reason: an
            eigen-decomposition of the trials' correlation matrix per fold, some tens
            of ms for 500 trials.
        benchmark: Per-bar benchmark returns aligned with the evaluator's bars, for
            the SPA test; flat (zero returns) when None.
        warmup_bars: CPCV: the strategy's longest warm-up, so that train bars whose
            indicators read a test group are embargoed; declared by the strategy's
            ``warmup_bars`` or measured over the searched sets when None.
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
        spa_bootstrap: int = 0,
        effective_trials: bool = False,
        benchmark: pd.Series | NDArray[np.float64] | None = None,
        warmup_bars: int | None = None,
        progress: bool = False,
    ) -> None:
        self.config = config
        self.search = search if search is not None else SearchConfig(method=SearchMethod.grid)
        score_function(self.search.metric, 252)
        self.pbo_blocks = int(pbo_blocks)
        self.spa_bootstrap = int(spa_bootstrap)
        self.effective_trials = bool(effective_trials)
        self.warmup_bars = warmup_bars
        self.benchmark = None if benchmark is None else np.asarray(benchmark, dtype=np.float64)
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
                :class:`~backtest.walkforward.StrategyReturnsEvaluator` (a search
                :class:`~backtest.search.StrategyEvaluator` is converted to one).
            param_space: The space (name -> list or ``{low, high, step, log}``), or a
                frame of explicit parameter sets; ``search.space`` when None.
            figures_dir: Write the fold chart and out-of-sample equity PNGs here.

        Returns:
            The :class:`WalkForwardResult`.

        Raises:
            ConfigError: A bad space, constraint or window setting, naming the key.
            TrialsFailed: Every trial of a fold scored NaN.
            PathDivergence: A fold's chosen (or sampled) set re-run alone does not give
                its in-sample score.
            BacktestError: The strategy's returns changed when later bars were removed
                (it looks ahead).
        """
        from backtest.report._progress import progress

        evaluator = as_returns_evaluator(evaluator)
        ppy = int(evaluator.periods_per_year)
        index = pd.DatetimeIndex(evaluator.index)
        score = score_function(self.search.metric, ppy)
        maximize = Direction(self.search.direction) is Direction.maximize
        space: Mapping[str, Any] | pd.DataFrame = (
            self.search.space if param_space is None else param_space
        )
        method = SearchMethod(self.search.method)
        check_space = getattr(evaluator, "check_space", None)
        if check_space is not None:  # e.g. engine.<key> the strategy declares, before a fold
            check_space(list(space.columns if isinstance(space, pd.DataFrame) else space))
        grid = None
        if isinstance(space, pd.DataFrame):
            grid = space.reset_index(drop=True)
        elif method in (SearchMethod.none, SearchMethod.grid):
            grid = grid_frame(space, self.search.constraint)
        warmup = None
        if Splitter(self.config.splitter) is Splitter.cpcv:
            warmup = self.warmup_bars
            if warmup is None:
                probe = grid
                if probe is None:  # sampled methods: a sample of the space stands for it
                    rng = np.random.default_rng(int(self.search.seed))
                    probe = random_frame(space, 64, rng, self.search.constraint)
                warmup = strategy_warmup(evaluator, probe)
        splits = make_splits(self.config, index, warmup_bars=warmup)
        rows, trials, searched = [], [], []
        runs: dict[tuple[int, int], tuple[NDArray[np.float64], NDArray[np.float64] | None]] = {}
        started = time.perf_counter()
        truth = FoldTruth(
            evaluator,
            n_bars=len(index),
            whole=bool(getattr(evaluator, "shared_history", False)),
            seed=int(self.search.seed),
        )
        pre = self._window_scores(evaluator, splits, grid, ppy)
        last = splits.folds[-1].fold if splits.folds else None
        folds = progress(splits.folds, desc="walk-forward", unit="fold", enabled=self.progress)
        for fold in folds:
            fs = search_fold(
                fold,
                evaluator,
                space,
                grid,
                self.search,
                score,
                maximize,
                method,
                ppy,
                scores=None if pre is None else pre[0][fold.fold],
            )
            self._verify(evaluator, fold, fs, score, truth, time.perf_counter() - started, last)
            searched.append(fs.frame)
            trials.append((fold.fold, fs.scores))
            row, fold_runs = self._fold_row(
                fold,
                fs,
                evaluator,
                splits,
                score,
                maximize,
                ppy,
                None if pre is None else pre[1][fold.fold],
            )
            rows.append(row)
            runs.update(fold_runs)
        folds = _folds_frame(rows, evaluator.index, ppy)
        trials_frame = pd.concat(
            [
                pd.DataFrame(
                    {"fold": np.repeat([f for f, _ in trials], [len(s) for _, s in trials])}
                ),
                pd.concat(searched, ignore_index=True),
                pd.DataFrame({"score": np.concatenate([s for _, s in trials])}),
            ],
            axis=1,
        )
        result = assemble_result(
            self.search, evaluator, splits, folds, trials_frame, searched, runs, ppy
        )
        result = replace(result, verified_folds=tuple(truth.verified))
        if figures_dir is not None:
            result = replace(result, figures=result.save_figures(figures_dir))
        return result

    # ------------------------------------------------------------------ one fold

    def _verify(
        self,
        evaluator: ReturnsEvaluator,
        fold: Fold,
        fs: FoldSearch,
        score: Callable[[NDArray[np.float64]], Any],
        truth: FoldTruth,
        elapsed: float,
        last: int | None,
    ) -> None:
        """The fold's chosen set (and a sample) re-run alone equals its in-sample score.

        Through the evaluator's single backtest (:class:`backtest.search._truth.FoldTruth`:
        once per set over the whole history with shared history, the first and last
        folds' sets always, the others within a share of the time so far).

        Raises:
            PathDivergence: names the strategy, the set, the fold and the metric.
        """
        idx = evaluator.index
        truth.check(
            fold=fold.fold,
            columns=fs.columns,
            scores=fs.scores,
            train_returns=fs.train_returns,
            best=fs.best,
            train_rows=lambda r: train_rows(fold, r),
            train_end=fold.train_end,
            run_end=max(fold.test_end, fold.train_end),  # the run its trade then reuses
            score=score,
            elapsed=elapsed,
            last=fold.fold == last,
            where=f"fold {fold.fold} (train {idx[fold.train_start].date()}.."
            f"{idx[fold.train_end - 1].date()})",
        )

    def _window_scores(
        self,
        evaluator: ReturnsEvaluator,
        splits: Splits,
        grid: pd.DataFrame | None,
        ppy: int,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
        """Train and test Sharpe of every grid set in every fold, in one pass.

        Only for a fixed grid ranked by Sharpe on a shared-history evaluator with
        contiguous windows: then every window is a slice of one returns matrix and
        :func:`windows_sharpe` scores them all from running sums (equal to the
        per-window formula to about 1e-13).
        """
        folds = splits.folds
        contiguous = all(
            f.train_end - f.train_start == len(f.train) and f.test_end - f.test_start == len(f.test)
            for f in folds
        )
        if (
            grid is None
            or self.search.metric != "sharpe_ratio"
            or not getattr(evaluator, "shared_history", False)
            or not contiguous
        ):
            return None
        full = np.asarray(evaluator.returns(grid, len(evaluator.index)), dtype=np.float64)
        starts = np.array([f.train_start for f in folds] + [f.test_start for f in folds])
        ends = np.array([f.train_end for f in folds] + [f.test_end for f in folds])
        both = windows_sharpe(full, starts.astype(np.int64), ends.astype(np.int64))
        both *= math.sqrt(ppy)
        return both[: len(folds)], both[len(folds) :]

    def _fold_row(
        self,
        fold: Fold,
        fs: FoldSearch,
        evaluator: ReturnsEvaluator,
        splits: Splits,
        score: Callable[[NDArray[np.float64]], Any],
        maximize: bool,
        ppy: int,
        test_scores: NDArray[np.float64] | None = None,
    ) -> tuple[dict[str, Any], dict[tuple[int, int], Any]]:
        best = fs.best
        params = {name: _plain(values[best]) for name, values in fs.columns.items()}
        is_sharpe, dsr, pbo = fold_overfitting(fs, self.pbo_blocks)
        snoop = fold_snooping(
            fold,
            fs,
            self.spa_bootstrap,
            self.benchmark,
            int(self.search.seed),
            effective=self.effective_trials,
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
            _check_no_look_ahead(evaluator, fs, best, r_run, params, f"fold {fold.fold}")
            runs[(fold.fold, end)] = (r_run, pos_run)
        if len(ends) == 1 and fold.test_end - fold.test_start == len(fold.test):
            r_test = runs[(fold.fold, ends[0])][0][fold.test_start : fold.test_end]
        else:
            r_test = np.concatenate(
                [
                    runs[(fold.fold, e)][0][fold.test[(fold.test < e) & (fold.test >= s)]]
                    for s, e in zip([0, *ends[:-1]], ends, strict=True)
                ]
            )
        if test_scores is None:
            full = evaluator.returns(fs.frame, fold.test_end)
            contiguous = fold.test_end - fold.test_start == len(fold.test)
            all_test = full[fold.test_start : fold.test_end] if contiguous else full[fold.test]
            test_scores = np.asarray(score(all_test), dtype=np.float64)
        if not maximize:
            test_scores = -test_scores
        test_scores = np.where(np.isfinite(test_scores), test_scores, -np.inf)
        rank = tie_rank(test_scores, float(test_scores[best]))
        train_best = fs.train_returns[:, best]
        row: dict[str, Any] = {
            "fold": fold.fold,
            "train_start": fold.train_start,
            "train_end": fold.train_end - 1,
            "test_start": fold.test_start,
            "test_end": fold.test_end - 1,
            "train_bars": len(fold.train),
            "test_bars": len(fold.test),
            **({"test_groups": ",".join(map(str, fold.test_groups))} if fold.test_groups else {}),
            **params,
            "n_trials": len(fs.frame),
            "is_score": float(fs.scores[best]),
            "is_sharpe": is_sharpe * math.sqrt(ppy),
            "is_cagr": float(m.cagr(train_best, periods_per_year=ppy)),
            "is_dsr": dsr,
            **snoop,
            "pbo": pbo,
            "oos_rank": float(rank / (len(test_scores) + 1)),
            "_oos_returns": r_test,
        }
        return row, runs


def as_returns_evaluator(evaluator: Any) -> ReturnsEvaluator:
    """The evaluator as a :class:`ReturnsEvaluator`.

    A search :class:`~backtest.search.StrategyEvaluator` becomes a
    :class:`StrategyReturnsEvaluator` with the same bars, strategy, costs, weights,
    bars per year, fixed parameters and engine options.

    Raises:
        ConfigError: Anything else (key ``evaluator``).
    """
    if isinstance(evaluator, ReturnsEvaluator):
        return evaluator
    if hasattr(evaluator, "prices") and hasattr(evaluator, "strategy_cls"):
        bars = getattr(evaluator, "bars", None)
        return StrategyReturnsEvaluator(
            bars if bars is not None else evaluator.prices,
            evaluator.strategy_cls,
            fee_bps=getattr(evaluator, "fee_bps", 0.0),
            slippage_bps=getattr(evaluator, "slippage_bps", 0.0),
            weights=getattr(evaluator, "weights", None),
            periods_per_year=getattr(evaluator, "periods_per_year", None),
            fixed_params=getattr(evaluator, "fixed_params", None),
            check_lookahead=getattr(evaluator, "_check_lookahead", True),
            **getattr(evaluator, "engine_options", {}),
        )
    raise ConfigError(
        f"walk-forward needs an evaluator with returns(param_sets, end) and "
        f"trade(params, end) (e.g. StrategyReturnsEvaluator), got {type(evaluator).__name__}",
        key="evaluator",
    )


def _folds_frame(rows: list[dict[str, Any]], index: pd.DatetimeIndex, ppy: int) -> pd.DataFrame:
    """The fold table, with timestamps and the return metrics of each test window.

    The metrics take one vectorised pass per distinct test-window length.
    """
    tests = [row.pop("_oos_returns") for row in rows]
    folds = pd.DataFrame(rows)
    for col in ("train_start", "train_end", "test_start", "test_end"):
        folds[col] = index[folds[col].to_numpy()]
    lengths = np.array([len(r) for r in tests])
    oos: dict[str, NDArray[np.float64]] = {}
    for length in np.unique(lengths):
        which = np.flatnonzero(lengths == length)
        block = np.column_stack([tests[i] for i in which])
        for name, values in m.return_metrics(block, periods_per_year=ppy).items():
            oos.setdefault(name, np.full(len(rows), np.nan))[which] = values
    for name, values in oos.items():
        folds[f"oos_{name}"] = values
    return folds


def _check_no_look_ahead(
    evaluator: ReturnsEvaluator,
    fs: FoldSearch,
    best: int,
    r_run: NDArray[np.float64],
    params: Mapping[str, Any],
    where: str,
) -> None:
    """With shared history, the run over a price prefix must equal the shared run.

    A strategy whose positions at bar t use closes after t gives different returns
    when later bars are removed; that is look-ahead, and the walk-forward refuses it.
    Every fold's traded run is compared so; a difference that the single backtest
    shows to be a path's own is a :class:`~backtest.errors.PathDivergence` instead
    (:func:`backtest.search._truth.explain_mismatch`).
    """
    if not getattr(evaluator, "shared_history", False):
        return
    shared = evaluator.returns(fs.frame, len(evaluator.index))[:, best]
    full = shared[: len(r_run)]
    if np.array_equal(full, r_run):  # the usual case: bit-identical
        return
    bad = ~np.isclose(full, r_run, rtol=1e-10, atol=1e-13)
    if bad.any():
        explain_mismatch(evaluator, params, shared, r_run, where)
        t = int(np.argmax(bad))
        raise BacktestError(
            f"strategy looks ahead: with params {dict(params)} its return at "
            f"{evaluator.index[t]} changes when the bars after "
            f"{evaluator.index[len(r_run) - 1]} are removed"
        )
