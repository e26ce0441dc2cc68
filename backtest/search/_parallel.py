"""Running a Python-callable evaluator over trials, serially or in worker processes.

Workers receive the evaluator once, when they start: inherited through ``fork`` where
the platform has it (so closures and ``__main__`` functions work without pickling),
otherwise pickled or imported by path. Trials go out in contiguous chunks and come
back in trial order, and each trial gets its own seed, so the outcome never depends
on the number of workers.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np

from backtest.errors import BacktestError
from backtest.search._evaluators import (
    accepts_seed,
    check_score,
    normalize_outcome,
    resolve_callable,
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one trial produced: metrics, why it failed (or ``None``), kept returns."""

    metrics: dict[str, float]
    error: str | None
    returns: Any = None  # a pd.Series of the trial's per-bar returns, when kept


def run_trial(
    func: Callable[..., Any],
    pass_seed: bool,
    params: dict[str, Any],
    seed: int,
    metric: str,
    keep: bool,
) -> Outcome:
    """Call the evaluator on one parameter set; any exception becomes the trial's error."""
    try:
        value = func(params, seed=seed) if pass_seed else func(params)
        metrics, returns = normalize_outcome(value, metric)
    except Exception as exc:  # a failing trial is recorded, not fatal
        return Outcome({}, f"{type(exc).__name__}: {exc}")
    error = check_score(metrics, metric)
    kept = returns.astype(np.float32) if keep and returns is not None and error is None else None
    return Outcome(metrics, error, kept)


_WORKER: dict[str, Any] = {}


def _init_worker(evaluator: Any) -> None:
    from backtest.engine import _fused

    _fused.SERIAL = True  # one thread per worker: the workers already use every core
    func = resolve_callable(evaluator)
    _WORKER["func"] = func
    _WORKER["pass_seed"] = accepts_seed(func)


def _run_chunk(
    params: list[dict[str, Any]], seeds: list[int], metric: str, keep: list[bool]
) -> list[Outcome]:
    func, pass_seed = _WORKER["func"], _WORKER["pass_seed"]
    return [
        run_trial(func, pass_seed, p, s, metric, k)
        for p, s, k in zip(params, seeds, keep, strict=True)
    ]


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for lo in range(0, n, size):
        yield lo, min(n, lo + size)


def run_trials(
    evaluator: Any,
    params: Sequence[dict[str, Any]],
    seeds: Sequence[int],
    keep: Sequence[bool],
    *,
    metric: str,
    n_jobs: int = 1,
    on_done: Callable[[int], None] | None = None,
) -> list[Outcome]:
    """One :class:`Outcome` per parameter set, in order.

    Args:
        evaluator: A callable or an import path (``"module:function"``).
        params: One dict per trial.
        seeds: One seed per trial.
        keep: Whether to keep each trial's return series (when it gives one).
        metric: The metric that must be present and finite for a trial to succeed.
        n_jobs: Worker processes; 1 runs in this process.
        on_done: Called with the number of trials just finished (progress).
    """
    n = len(params)
    if n_jobs <= 1 or n <= 1:
        func = resolve_callable(evaluator)
        pass_seed = accepts_seed(func)
        out = []
        for i in range(n):
            out.append(run_trial(func, pass_seed, params[i], int(seeds[i]), metric, keep[i]))
            if on_done is not None:
                on_done(1)
        return out
    resolve_callable(evaluator)  # fail early, in this process, on a bad import path
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    size = max(1, min(256, n // (8 * n_jobs)))
    results: list[Outcome] = []
    with ProcessPoolExecutor(
        max_workers=n_jobs,
        mp_context=mp.get_context(method),
        initializer=_init_worker,
        initargs=(evaluator,),
    ) as pool:
        futures = [
            pool.submit(
                _run_chunk,
                list(params[lo:hi]),
                [int(s) for s in seeds[lo:hi]],
                metric,
                list(keep[lo:hi]),
            )
            for lo, hi in _chunks(n, size)
        ]
        try:
            for future in futures:
                chunk = future.result()
                results.extend(chunk)
                if on_done is not None:
                    on_done(len(chunk))
        except BrokenProcessPool as exc:
            raise BacktestError(
                "a search worker process died abruptly (killed, out of memory, or numba "
                "parallel code run in a process forked after OpenMP threads started: set "
                "NUMBA_THREADING_LAYER=tbb or workqueue, or use n_jobs=1)"
            ) from exc
    return results
