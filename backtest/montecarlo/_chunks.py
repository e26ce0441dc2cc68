"""The chunked machinery every Monte Carlo method shares.

Chunk bounds, worker pools, the per-chunk results, their collection, and the report
built from them.

:mod:`backtest.montecarlo._simulator` (resampling methods) and
:mod:`backtest.montecarlo._strategy` (methods that re-run a strategy) both use it; neither
imports the other at run time.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from backtest.config import MonteCarloConfig, MonteCarloMethod
from backtest.montecarlo import _kernels as k
from backtest.montecarlo._report import MonteCarloReport, build_report

#: Equity values kept for the fan chart: about 40 MB of float32 at most.
FAN_CELLS = 10_000_000

_RESAMPLING: dict[MonteCarloMethod, int] = {
    MonteCarloMethod.iid_bootstrap: k.IID,
    MonteCarloMethod.stationary_bootstrap: k.STATIONARY,
    MonteCarloMethod.circular_block_bootstrap: k.CIRCULAR,
    MonteCarloMethod.trade_reshuffle: k.PERMUTE,
    MonteCarloMethod.trade_bootstrap: k.IID,
}
_TRADE_METHODS = (MonteCarloMethod.trade_reshuffle, MonteCarloMethod.trade_bootstrap)


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """Scores of paths ``start .. start + len(metrics) - 1``.

    Attributes:
        start: Number of the chunk's first path.
        metrics: ``(paths, len(METRICS))`` rows.
        fan: Equity curves of the chunk's paths that belong to the fan sample.
        extra: Extra per-path columns (jittered parameters).
    """

    start: int
    metrics: NDArray[np.float64]
    fan: NDArray[np.float32]
    extra: dict[str, NDArray[Any]] = field(default_factory=dict)


def fan_size(n_paths: int, horizon: int, fan_paths: int) -> int:
    """Paths whose equity feeds the per-bar fan quantiles (the first ones by number)."""
    return max(1, min(n_paths, fan_paths, max(100, FAN_CELLS // (horizon + 1))))


def chunk_bounds(n_paths: int, chunk_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering paths ``0 .. n_paths - 1``."""
    return [(lo, min(n_paths, lo + chunk_size)) for lo in range(0, n_paths, chunk_size)]


def resolve_seed(seed: int | None) -> int:
    """The root seed, drawing (and so recording) fresh entropy when ``seed`` is None."""
    return int(np.random.SeedSequence(seed).entropy)  # type: ignore[arg-type]


def _n_workers(n_jobs: int, n_chunks: int) -> int:
    cores = os.cpu_count() or 1
    return max(1, min(n_chunks, cores if n_jobs == -1 else n_jobs))


def _process_context() -> multiprocessing.context.BaseContext:
    """Worker processes that are safe to start from any parent.

    Not ``fork``: numba ``parallel=True`` code (a strategy's own, numba's threading-layer
    probe) runs on OpenMP threads, and forking a process that has used OpenMP aborts the
    child. A fork server (started once, before any such loop, with our modules preloaded)
    forks cheap clean workers; ``spawn`` where there is no fork server.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["backtest.montecarlo._strategy"])
    return ctx


def run_chunks(
    fn: Callable[..., ChunkResult],
    args: tuple[Any, ...],
    bounds: list[tuple[int, int]],
    *,
    n_jobs: int,
    processes: bool,
    progress: bool | None,
    desc: str,
) -> Iterator[ChunkResult]:
    """Run ``fn(*args, start, stop)`` for each chunk, yielding results as they finish.

    Threads suffice for the compiled kernels (they release the GIL); strategy
    re-runs spend time in Python and use processes (see :func:`_process_context`).
    The result of a chunk depends only on its paths' numbers, never on which
    worker ran it or in which order.
    """
    from backtest.report._progress import progress as progress_bar

    total = bounds[-1][1] if bounds else 0
    bar = progress_bar(total=total, desc=desc, unit="path", enabled=progress)
    workers = _n_workers(n_jobs, len(bounds))
    try:
        if workers == 1:
            for lo, hi in bounds:
                res = fn(*args, lo, hi)
                bar.update(hi - lo)
                yield res
            return
        pool: Executor
        if processes:
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=_process_context())
        else:
            pool = ThreadPoolExecutor(max_workers=workers)
        with pool:
            futures = {pool.submit(fn, *args, lo, hi): hi - lo for lo, hi in bounds}
            for fut in as_completed(futures):
                res = fut.result()
                bar.update(futures[fut])
                yield res
    finally:
        bar.close()


def resample_chunk(
    src: NDArray[np.float64],
    code: int,
    block_size: float,
    horizon: int,
    key: NDArray[np.uint64],
    periods_per_year: float,
    metrics: NDArray[np.float64],
    fan: NDArray[np.float32],
    start: int,
    stop: int,
) -> ChunkResult:
    """Resample and score paths ``start .. stop - 1`` straight into the shared arrays.

    Worker threads write disjoint rows of ``metrics`` and ``fan`` (rows of the paths
    in the fan sample), so nothing is copied.
    """
    out = metrics[start:stop]
    rows = fan[start : max(start, min(stop, fan.shape[0]))]
    mean = float(src.mean())
    k.resample_chunk(src, code, block_size, horizon, start, key, periods_per_year, mean, out, rows)
    return ChunkResult(start, out, rows)


def observed_scores(
    values: NDArray[np.float64], periods_per_year: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Metrics and equity curve of the observed returns, computed like every path's."""
    out = np.empty((1, len(k.METRICS)))
    equity = np.empty((1, values.size + 1), np.float32)
    # a writable copy: the paths' returns are writable, and a read-only array (pandas')
    # would compile score_columns a second time
    column = np.array(values, dtype=np.float64).reshape(-1, 1)
    k.score_columns(column, periods_per_year, out, equity)
    full = np.concatenate(([1.0], np.cumprod(1.0 + values)))
    return out[0], full


def collect(
    results: Iterator[ChunkResult],
    metrics: NDArray[np.float64],
    fan: NDArray[np.float32],
) -> dict[str, NDArray[Any]]:
    """Place every chunk's rows by path number (order of arrival does not matter).

    Returns:
        The extra per-path columns (jittered parameters), by name.
    """
    n_paths = metrics.shape[0]
    extra: dict[str, NDArray[Any]] = {}
    for res in results:
        n = res.metrics.shape[0]
        for dst, src in (
            (metrics[res.start : res.start + n], res.metrics),
            (fan[res.start : res.start + res.fan.shape[0]], res.fan),
        ):
            if not np.shares_memory(dst, src):  # rows computed in another process
                dst[...] = src
        for name, values in res.extra.items():
            if name not in extra:
                extra[name] = np.empty(n_paths, dtype=values.dtype)
            extra[name][res.start : res.start + n] = values
    return extra


def allocate(
    n_paths: int, horizon: int, n_fan: int
) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
    """The per-path metric rows and the fan sample's equity rows of a run."""
    return np.empty((n_paths, len(k.METRICS))), np.empty((n_fan, horizon + 1), np.float32)


def finish(
    cfg: MonteCarloConfig,
    seed: int,
    unit: str,
    periods_per_year: float,
    metrics: NDArray[np.float64],
    extra: Mapping[str, NDArray[Any]],
    fan: NDArray[np.float32],
    observed: NDArray[np.float64],
    observed_equity: NDArray[np.float64] | None,
    details: Mapping[str, Any],
) -> MonteCarloReport:
    """Fan quantiles, then the report."""
    levels = np.asarray(cfg.confidence, dtype=np.float64) / 100.0
    quantiles = k.fan_quantiles(fan, levels)
    return build_report(
        method=cfg.method.value,
        unit=unit,
        periods_per_year=periods_per_year,
        seed=seed,
        confidence=cfg.confidence,
        ruin_drawdown=cfg.ruin_drawdown,
        metrics=metrics,
        extra=extra,
        fan_quantiles=quantiles,
        fan_paths=fan.shape[0],
        observed=observed,
        observed_equity=observed_equity,
        details=details,
    )
