"""``MonteCarloSimulator``: picks the method, streams paths in chunks, builds the report."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.config import EngineConfig, MonteCarloConfig, MonteCarloMethod
from backtest.errors import ConfigError
from backtest.montecarlo import _kernels as k
from backtest.montecarlo._config import check_config
from backtest.montecarlo._inputs import Sample, bar_sample, trade_sample
from backtest.montecarlo._report import MonteCarloReport, build_report
from backtest.montecarlo._rng import root_key

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
    from tqdm.auto import tqdm

    total = bounds[-1][1] if bounds else 0
    bar = tqdm(
        total=total,
        desc=desc,
        unit="path",
        disable=None if progress is None else not progress,
        leave=False,
        dynamic_ncols=True,
    )
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
    k.score_columns(
        np.ascontiguousarray(values, dtype=np.float64)[:, None], periods_per_year, out, equity
    )
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


@dataclass(frozen=True, slots=True)
class MonteCarloSimulator:
    """Robustness of a backtest by simulation, with every method selected by config.

    Methods (``config.method``):

    * ``iid_bootstrap``: draw bars' returns with replacement;
    * ``stationary_bootstrap``: Politis-Romano blocks of geometric length with mean
      ``block_size``, wrapping around the end (keeps volatility clustering);
    * ``circular_block_bootstrap``: blocks of ``round(block_size)`` bars, wrapping;
    * ``trade_reshuffle``: the same trades in a random order (terminal wealth is
      unchanged, the path and its drawdowns change);
    * ``trade_bootstrap``: trades drawn with replacement;
    * ``synthetic_prices``: prices with the data's fitted drift and covariance of
      log returns (correlated geometric Brownian motion), the strategy re-run on each;
    * ``parameter_jitter``: the strategy re-run with parameters perturbed within
      ``jitter`` (robustness of the optimum);
    * ``random_entries``: random strategies with the observed trades' number, lengths,
      directions and exposure; the p-value of the observed Sharpe tests timing skill.

    Every path compounds fractional returns, so equity never goes below 0 and a
    drawdown never exceeds 100%. Paths are streamed ``chunk_size`` at a time; each
    path draws from its own random stream keyed by its number and the root seed, so
    the report is identical whatever ``n_jobs`` and ``chunk_size`` are.

    The equity fan (per-bar quantiles) is computed from the first ``fan_paths``
    paths (500 by default; fewer on long horizons, so that at most about 10 million
    equity values are kept: 396 paths at 25,200 bars). They are a random sample of
    all paths, so memory stays bounded whatever ``n_paths`` is.

    Args:
        config: The settings (defaults: 10,000 stationary-bootstrap paths).
        progress: Show a progress bar: ``None`` only on a terminal.
        fan_paths: Most paths feeding the fan quantiles.

    Examples:
        >>> import numpy as np, pandas as pd
        >>> from backtest.config import MonteCarloConfig
        >>> returns = pd.Series(np.random.default_rng(0).normal(5e-4, 0.01, 500))
        >>> cfg = MonteCarloConfig(method="iid_bootstrap", n_paths=200, seed=7)
        >>> report = MonteCarloSimulator(cfg, progress=False).run(returns)
        >>> report.paths.shape
        (200, 8)
        >>> bool(report.paths["max_drawdown"].between(0, 1).all())
        True
    """

    config: MonteCarloConfig = field(default_factory=MonteCarloConfig)
    progress: bool | None = None
    fan_paths: int = 500

    def run(
        self,
        source: Any = None,
        *,
        prices: pd.DataFrame | Any = None,
        strategy: Any = None,
        engine: EngineConfig | None = None,
    ) -> MonteCarloReport:
        """Simulate ``config.n_paths`` paths and summarise them.

        Args:
            source: The observed backtest: a ``BacktestResult``, a return series
                (fractional returns per bar) or a trades table (``return`` column).
                The strategy methods may leave it out: the strategy is then run on
                ``prices`` to get it.
            prices: Wide closes (or :class:`~backtest.data.Bars`, whose highs and lows
                ``parameter_jitter`` needs when the engine has stop levels); needed by
                ``synthetic_prices``, ``parameter_jitter`` and ``random_entries``.
            strategy: The strategy instance; needed by ``synthetic_prices`` and
                ``parameter_jitter``.
            engine: Costs, weights and ``periods_per_year`` (252 when omitted).

        Returns:
            The :class:`MonteCarloReport`.

        Raises:
            ConfigError: a bad config value (named, e.g. ``montecarlo.block_size``), or
                a method given a source or arguments it cannot use.
            DataValidationError: missing, infinite or below -100% returns.
        """
        cfg = check_config(self.config)
        if not isinstance(self.fan_paths, int) or self.fan_paths < 1:
            raise ConfigError(
                f"fan_paths must be an integer >= 1, got {self.fan_paths!r}", key="fan_paths"
            )
        engine = engine or EngineConfig()
        seed = resolve_seed(cfg.seed)
        method = cfg.method
        if method in _RESAMPLING:
            if source is None:
                raise ConfigError(
                    f"montecarlo.method={method.value} needs a source: a "
                    "BacktestResult, a return series or a trades table",
                    key="montecarlo.method",
                )
            return self._resample(cfg, seed, source, engine)
        from backtest.montecarlo._strategy import run_strategy_method

        return run_strategy_method(self, cfg, seed, source, prices, strategy, engine)

    def _resample(
        self, cfg: MonteCarloConfig, seed: int, source: Any, engine: EngineConfig
    ) -> MonteCarloReport:
        method = cfg.method
        sample: Sample
        ppy = _periods_per_year(engine, source)
        if method in _TRADE_METHODS:
            sample = trade_sample(source, method.value, ppy)
        else:
            sample = bar_sample(source, method.value, ppy)
        n = sample.returns.size
        if n >= 2**32:  # the kernels draw indices from 32 random bits
            raise ConfigError(
                f"Monte Carlo resamples at most 2**32 - 1 values, got {n}", key="montecarlo.method"
            )
        horizon = cfg.horizon_bars or n
        if method is MonteCarloMethod.trade_reshuffle and horizon > n:
            raise ConfigError(
                f"montecarlo.horizon_bars={horizon} exceeds the {n} trades that "
                "trade_reshuffle permutes; leave it unset or use trade_bootstrap",
                key="montecarlo.horizon_bars",
            )
        metrics, fan = allocate(
            cfg.n_paths, horizon, fan_size(cfg.n_paths, horizon, self.fan_paths)
        )
        args = (
            sample.returns,
            _RESAMPLING[method],
            cfg.block_size,
            horizon,
            root_key(seed),
            sample.periods_per_year,
            metrics,
            fan,
        )
        chunks = run_chunks(
            resample_chunk,
            args,
            chunk_bounds(cfg.n_paths, cfg.chunk_size),
            n_jobs=cfg.n_jobs,
            processes=False,
            progress=self.progress,
            desc=f"Monte Carlo ({method.value})",
        )
        collect(chunks, metrics, fan)
        observed, observed_equity = observed_scores(sample.returns, sample.periods_per_year)
        details: dict[str, Any] = {"n_observed": n}
        if method in (
            MonteCarloMethod.stationary_bootstrap,
            MonteCarloMethod.circular_block_bootstrap,
        ):
            details["block_size"] = cfg.block_size
        return finish(
            cfg,
            seed,
            sample.unit,
            sample.periods_per_year,
            metrics,
            {},
            fan,
            observed,
            observed_equity,
            details,
        )


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


def _periods_per_year(engine: EngineConfig, source: Any) -> float:
    """Bars per year: the engine's; else the source's (inferred from its index); else 252."""
    if engine.periods_per_year is not None:
        return float(engine.periods_per_year)
    if getattr(source, "periods_per_year", None) is not None:
        return float(source.periods_per_year)
    index = getattr(getattr(source, "returns", source), "index", None)
    if isinstance(index, pd.DatetimeIndex) and len(index) > 1:
        from backtest.engine import infer_periods_per_year

        return infer_periods_per_year(index)[0]
    return 252.0
