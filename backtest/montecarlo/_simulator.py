"""``MonteCarloSimulator``: picks the method, streams paths in chunks, builds the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from backtest.config import EngineConfig, MonteCarloConfig, MonteCarloMethod
from backtest.errors import ConfigError
from backtest.montecarlo._chunks import (
    _RESAMPLING,
    _TRADE_METHODS,
    allocate,
    chunk_bounds,
    collect,
    fan_size,
    finish,
    observed_scores,
    resample_chunk,
    resolve_seed,
    run_chunks,
)
from backtest.montecarlo._config import check_config
from backtest.montecarlo._inputs import Sample, bar_sample, trade_sample
from backtest.montecarlo._report import MonteCarloReport
from backtest.montecarlo._rng import root_key


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
        check_lookahead: Before the methods that re-run a strategy, check it for
            look-ahead on the data (as the command line and
            :func:`~backtest.engine.simulate` do); ``False`` skips it.

    As the command line: the data the strategy methods get is checked with the same
    named errors, and ``periods_per_year`` is inferred from the index (of ``prices``, or
    of the source's returns) when the engine leaves it unset.

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
    check_lookahead: bool = True

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
            engine: Every engine option; ``periods_per_year`` unset is inferred from the
            index (of ``prices``, else of the source).

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
