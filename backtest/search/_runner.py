"""The trial loop every search method shares: evaluate, record, pick the best.

A method decides *which* parameter sets to try; :class:`TrialLog` evaluates them
(batched, serially or in worker processes), gives each trial its number and seed,
records metrics or the failure reason, keeps a memory-bounded sample of return series
and finally assembles the :class:`~backtest.search.SearchResult`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.errors import ConfigError, StrategyContractError
from backtest.search._evaluators import BatchEvaluator
from backtest.search._parallel import run_trials
from backtest.search._result import ERROR, FAILED, OK, SEED, STATUS, TRIAL, SearchResult
from backtest.search._result import build_result as _build
from backtest.search._seeds import trial_seeds
from backtest.search._truth import verify_search

#: Parameter sets per call of a batch evaluator (bounds memory, paces the progress bar).
BATCH_CHUNK = 4096

Columns = dict[str, Any]  # name -> 1-D array, one value per trial


def _concat(parts: list[Columns], sizes: list[int]) -> Columns:
    """Concatenate per-chunk metric columns; a column missing from a chunk is NaN there."""
    names: dict[str, None] = {}
    for part in parts:
        names.update(dict.fromkeys(part))
    return {
        name: np.concatenate(
            [
                np.asarray(part[name], dtype=np.float64) if name in part else np.full(size, np.nan)
                for part, size in zip(parts, sizes, strict=True)
            ]
        )
        for name in names
    }


def keep_selection(n_planned: int, keep_returns: int) -> NDArray[np.bool_]:
    """Which of ``n_planned`` trials keep their return series.

    All of them when they fit, else ``keep_returns`` evenly spaced ones (an unbiased
    sample of the search, not its best trials).
    """
    mask = np.zeros(n_planned, dtype=bool)
    if keep_returns <= 0 or n_planned == 0:
        return mask
    if n_planned <= keep_returns:
        mask[:] = True
    else:
        mask[np.unique(np.linspace(0, n_planned - 1, keep_returns).round().astype(int))] = True
    return mask


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from backtest.report._progress import progress

    return progress(total=total, desc=desc, unit="trial", enabled=enabled)


class TrialLog:
    """Evaluates parameter sets as numbered trials and collects their outcomes.

    Args:
        evaluator: A batch evaluator, a callable, or an import path to a callable.
        param_names: The searched parameters, in order.
        metric: The metric that must be finite for a trial to succeed.
        root: The root seed; trial ``t`` gets ``SeedSequence(root, spawn_key=(t,))``.
        n_jobs: Worker processes for callable evaluators.
        keep: Per planned trial number, whether to keep its return series.
        progress: Show a progress bar over ``len(keep)`` trials.
        desc: The progress bar's label.

    Raises:
        ConfigError: ``n_jobs < 1``, or a space the evaluator refuses (its
            ``check_space``, e.g. a searched ``engine.<key>`` the strategy declares).
    """

    def __init__(
        self,
        evaluator: Any,
        param_names: Sequence[str],
        *,
        metric: str,
        root: int,
        n_jobs: int,
        keep: NDArray[np.bool_],
        progress: bool,
        desc: str,
    ) -> None:
        if n_jobs < 1:
            raise ConfigError(f"n_jobs must be >= 1, got {n_jobs}", key="search.n_jobs")
        check_space = getattr(evaluator, "check_space", None)
        if check_space is not None:  # a space the evaluator refuses, before any trial
            check_space(param_names)
        self.evaluator = evaluator
        self.batched = isinstance(evaluator, BatchEvaluator)
        self.param_names = tuple(param_names)
        self.metric = metric
        self.root = root
        self.n_jobs = n_jobs
        self.keep = keep
        self._bar = _progress(len(keep), desc, progress)
        self._parts: list[dict[str, Any]] = []
        self._returns: dict[int, NDArray[np.float32]] = {}
        self._index: pd.Index | None = getattr(evaluator, "index", None)
        self.n_done = 0
        self._started = time.perf_counter()

    def _kept(self, numbers: NDArray[np.int64]) -> NDArray[np.bool_]:
        inside = numbers < len(self.keep)
        out = np.zeros(len(numbers), dtype=bool)
        out[inside] = self.keep[numbers[inside]]
        return out

    def run(self, params: pd.DataFrame | Mapping[str, Any]) -> NDArray[np.float64]:
        """Evaluate ``params`` (a frame, or name -> array; one row per set) as the next trials.

        Returns:
            Each trial's score (NaN where it failed), in order.
        """
        cols = {str(c): np.asarray(params[c]) for c in params}
        count = len(next(iter(cols.values()))) if cols else 0
        numbers = np.arange(self.n_done, self.n_done + count, dtype=np.int64)
        seeds = trial_seeds(self.root, numbers)
        keep = self._kept(numbers)
        if self.batched:
            metrics, errors = self._run_batched(cols, numbers, keep)
        else:
            metrics, errors = self._run_callable(cols, numbers, seeds, keep)
        if self.metric in metrics:
            score = np.array(metrics[self.metric], dtype=np.float64)
        else:
            score = np.full(count, np.nan)
        for i in np.flatnonzero(~np.isfinite(score)):
            if errors[i] is None:
                errors[i] = (
                    f"{self.metric} is {score[i]}"
                    if self.metric in metrics
                    else f"the evaluator returned no {self.metric!r}"
                )
        failed = np.array([e is not None for e in errors], dtype=bool)
        score[failed] = np.nan
        for t in numbers[failed]:
            self._returns.pop(int(t), None)
        part: dict[str, Any] = {TRIAL: numbers, **cols, **metrics}
        part[SEED] = seeds
        part[STATUS] = np.where(failed, FAILED, OK).astype(object)
        part[ERROR] = np.array(["" if e is None else e for e in errors], dtype=object)
        self._parts.append(part)
        self.n_done += count
        return score

    def _run_batched(
        self, cols: Columns, numbers: NDArray[np.int64], keep: NDArray[np.bool_]
    ) -> tuple[Columns, list[str | None]]:
        parts: list[Columns] = []
        sizes: list[int] = []
        errors: list[str | None] = []
        for lo in range(0, len(numbers), BATCH_CHUNK):
            hi = min(len(numbers), lo + BATCH_CHUNK)
            chunk = {name: values[lo:hi] for name, values in cols.items()}
            metrics, errs = self._batch(chunk, numbers[lo:hi], keep[lo:hi])
            parts.append(metrics)
            sizes.append(hi - lo)
            errors += errs
            self._bar.update(hi - lo)
        return _concat(parts, sizes), errors

    def _evaluate(
        self, cols: Columns, keep: NDArray[np.bool_] | None
    ) -> tuple[Columns, NDArray[np.float64] | None]:
        fast = getattr(self.evaluator, "evaluate_columns", None)
        if fast is not None:
            names, values, kept = fast(cols, keep=keep)
            return {name: values[:, j] for j, name in enumerate(names)}, kept
        result = self.evaluator.evaluate_batch(pd.DataFrame(cols), keep=keep)
        metrics = {str(c): result.metrics[c].to_numpy() for c in result.metrics.columns}
        return metrics, result.returns

    def _batch(
        self, cols: Columns, numbers: NDArray[np.int64], keep: NDArray[np.bool_]
    ) -> tuple[Columns, list[str | None]]:
        try:
            metrics, kept = self._evaluate(cols, keep if keep.any() else None)
        except StrategyContractError:  # the strategy is wrong, not one set: stop the search
            raise
        except Exception:  # find the failing sets one by one below
            if len(numbers) == 1:
                raise
        else:
            if kept is not None:
                for col, t in enumerate(numbers[keep]):
                    self._returns[int(t)] = kept[:, col].astype(np.float32)
            return metrics, [None] * len(numbers)
        rows: list[Columns] = []
        errors: list[str | None] = []
        for i in range(len(numbers)):
            one = {name: values[i : i + 1] for name, values in cols.items()}
            try:
                rows.append(self._batch(one, numbers[i : i + 1], keep[i : i + 1])[0])
                errors.append(None)
            except StrategyContractError:
                raise
            except Exception as exc:  # recorded as the trial's failure
                rows.append({})
                errors.append(f"{type(exc).__name__}: {exc}")
        return _concat(rows, [1] * len(rows)), errors

    def _run_callable(
        self,
        cols: Columns,
        numbers: NDArray[np.int64],
        seeds: NDArray[np.int64],
        keep: NDArray[np.bool_],
    ) -> tuple[Columns, list[str | None]]:
        names = list(cols)
        records = [
            dict(zip(names, row, strict=True))
            for row in zip(*(cols[n].tolist() for n in names), strict=True)
        ]
        outcomes = run_trials(
            self.evaluator,
            records,
            seeds.tolist(),
            keep.tolist(),
            metric=self.metric,
            n_jobs=self.n_jobs,
            on_done=self._bar.update,
        )
        for t, outcome in zip(numbers, outcomes, strict=True):
            if outcome.returns is not None:
                self._returns[int(t)] = outcome.returns.to_numpy(dtype=np.float32)
                if self._index is None:
                    self._index = outcome.returns.index
        keys: dict[str, None] = {}
        for outcome in outcomes:
            keys.update(dict.fromkeys(outcome.metrics))
        metrics = {
            key: np.array([o.metrics.get(key, np.nan) for o in outcomes], dtype=np.float64)
            for key in keys
        }
        return metrics, [o.error for o in outcomes]

    def trials(self) -> pd.DataFrame:
        """The trials table so far."""
        first = [TRIAL, *self.param_names]
        last = [SEED, STATUS, ERROR]
        names = list(first)
        for part in self._parts:
            names += [c for c in part if c not in names and c not in last]
        columns: dict[str, Any] = {}
        for name in [*names, *last]:
            pieces = [
                part[name] if name in part else np.full(len(part[TRIAL]), np.nan)
                for part in self._parts
            ]
            columns[name] = np.concatenate(pieces) if pieces else np.empty(0)
        return pd.DataFrame(columns)

    def result(self, *, method: str, direction: str) -> SearchResult:
        """Close the progress bar, assemble the result and verify it.

        The best trial, then a sample of others, are re-run through the evaluator's
        single backtest (:func:`backtest.search._truth.verify_search`): the one place
        every search method checks that its numbers are the engine's.

        Raises:
            TrialsFailed: no trial succeeded.
            PathDivergence: a verified trial differs from its single backtest.
        """
        elapsed = time.perf_counter() - self._started
        self._bar.close()
        returns = None
        if self._returns:
            numbers = sorted(self._returns)
            index = (
                self._index
                if self._index is not None
                else pd.RangeIndex(len(self._returns[numbers[0]]))
            )
            returns = pd.DataFrame(
                np.column_stack([self._returns[t] for t in numbers]), index=index, columns=numbers
            )
        result = _build(
            self.trials(),
            metric=self.metric,
            direction=direction,
            param_names=self.param_names,
            method=method,
            seed=self.root,
            returns=returns,
        )
        best, verified = verify_search(
            self.evaluator,
            result.trials,
            self.param_names,
            metric=self.metric,
            best_trial=result.best_trial,
            elapsed=elapsed,
            seed=self.root,
        )
        return replace(result, best_backtest=best, verified=verified)
