"""A :class:`~backtest.config.DataConfig` -> :class:`~backtest.data.Bars`: the one entry point.

Picks the source (synthetic, the shipped sample or universe panel, a file), then attaches
``data.universe`` and ``data.actions`` (:mod:`._panel`). Sits above the readers
(:mod:`._files`, :mod:`._panel`), so none of them imports it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from backtest.config import DataConfig, DataSource
from backtest.data._bars import Bars, synthetic_ohlc
from backtest.data._files import _select, read_bars, sample_bars
from backtest.data._panel import attach_universe, universe_sample_bars
from backtest.data._synthetic import synthetic_prices
from backtest.data._validate import validate_prices
from backtest.errors import ConfigError


def load_prices(config: DataConfig) -> pd.DataFrame:
    """Load the prices a data config describes, validated (and repaired if asked).

    Args:
        config: ``source`` picks synthetic prices, the shipped sample, or a CSV /
            Parquet file at ``path``; ``symbols``, ``start`` and ``end`` select from
            any source; ``repair`` applies to every source.

    Returns:
        Wide closes (see the module docstring).

    Raises:
        ConfigError: No ``path`` for a file source, an unknown symbol, or a bad date.
        DataValidationError: The file is missing (its path is named) or the data is bad.

    Examples:
        >>> from backtest.config import DataConfig
        >>> load_prices(DataConfig(n_bars=3, n_assets=2, seed=7)).shape
        (3, 2)
    """
    source = DataSource(
        config.source.value if isinstance(config.source, DataSource) else config.source
    )
    symbols, start, end = list(config.symbols) or None, config.start, config.end
    if source is DataSource.synthetic:
        prices = synthetic_prices(
            config.n_bars,
            config.n_assets,
            drift=config.drift,
            volatility=config.volatility,
            start_price=config.start_price,
            regimes=config.regimes,
            start_date=config.start_date,
            seed=config.seed,
        )
        prices, _ = _select(prices, None, symbols, start, end)
        return validate_prices(prices, repair=config.repair)
    return file_bars(config).close


def file_bars(config: DataConfig) -> Bars:
    """The bars of the shipped sample or of the file a data config names, validated.

    Raises:
        ConfigError: No ``path`` for a file source, an unknown symbol, or a bad date.
        DataValidationError: The file is missing (its path is named) or the data is bad.
    """
    source = DataSource(
        config.source.value if isinstance(config.source, DataSource) else config.source
    )
    symbols, start, end = list(config.symbols) or None, config.start, config.end
    if source is DataSource.synthetic:
        raise ConfigError("synthetic prices have no file", key="data.source")
    if source is DataSource.sample:
        return sample_bars(symbols, start=start, end=end, repair=config.repair)
    if source is DataSource.universe_sample:
        return universe_sample_bars(symbols, start=start, end=end, repair=config.repair)
    if not config.path:
        raise ConfigError(f"data.path is required for source {source.value!r}", key="data.path")
    return read_bars(
        Path(config.path),
        file_format=source.value,
        layout=config.layout,
        columns=dict(config.columns),
        symbols=symbols,
        start=start,
        end=end,
        repair=config.repair,
        date_format=config.date_format,
        date_unit=config.date_unit,
    )


def load_bars(config: DataConfig) -> Bars:
    """Load the bars a :class:`~backtest.config.DataConfig` describes (closes validated).

    The closes are exactly those of :func:`~backtest.data.load_prices`; synthetic data gets
    :func:`synthetic_ohlc` around them, the sample and long files their own OHLCV (read
    once and validated field by field: :func:`~backtest.data.validate_bars`), wide files
    closes only. Then ``data.universe`` and ``data.actions`` are attached (``tradable``,
    ``split``, ``dividend``) and the universe's one line is logged
    (:func:`backtest.data._panel.attach_universe`).

    Examples:
        >>> from backtest.config import DataConfig
        >>> bars = load_bars(DataConfig(n_bars=3, n_assets=2, seed=7))
        >>> bars.has("open"), bool((bars.high >= bars.close).all().all())
        (True, True)
    """
    source = DataSource(getattr(config.source, "value", config.source))
    if source is DataSource.synthetic:
        close = load_prices(config)
        bars = synthetic_ohlc(close, float(config.volatility), int(config.seed))
    else:
        bars = file_bars(config)
    return attach_universe(bars, config)
