"""Turns what the user hands to ``run`` into the numbers a method resamples.

A source is a :class:`~backtest.engine.BacktestResult`, a return series
(``pd.Series`` or 1-D array of fractional returns per bar) or a trades table
(a ``DataFrame`` with a ``return`` column of fractional returns per trade).
Bad numbers raise :class:`~backtest.errors.DataValidationError` naming the
column, the first bad timestamp (or row) and how many values are bad.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.engine import BacktestResult
from backtest.errors import ConfigError, DataValidationError

Source = BacktestResult | pd.Series | pd.DataFrame | NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Sample:
    """The observed returns a resampling method draws from.

    Attributes:
        returns: Fractional returns, one per bar (or per trade), each >= -1.
        periods_per_year: Bars (or trades) per year, for annualising.
        unit: ``"bar"`` or ``"trade"``: what one step of a path is.
        index: Timestamps (or row labels) of ``returns``, for error messages and plots.
    """

    returns: NDArray[np.float64]
    periods_per_year: float
    unit: str
    index: pd.Index


def check_returns(values: NDArray[np.float64], index: pd.Index, column: str) -> None:
    """Refuse missing, infinite or below -100% returns, and series shorter than 2.

    Raises:
        DataValidationError: naming ``column``, the first bad label and the count.
    """
    if values.size < 2:
        raise DataValidationError(
            f"Monte Carlo needs at least 2 values in {column!r}, got {values.size}",
            column=column,
            count=int(values.size),
        )
    for bad, what in (
        (~np.isfinite(values), "missing or infinite"),
        (np.isfinite(values) & (values < -1.0), "below -100% (a loss larger than the capital)"),
    ):
        if bad.any():
            first = index[int(np.flatnonzero(bad)[0])]
            raise DataValidationError(
                f"{int(bad.sum())} {what} value(s) in {column!r}, first at {first}: returns "
                "must be fractional (0.01 = +1%) and >= -1",
                column=column,
                timestamp=first,
                count=int(bad.sum()),
            )


def _wrong_kind(method: str, needs: str, got: str) -> ConfigError:
    return ConfigError(
        f"montecarlo.method={method} resamples {needs}, but the source is {got}",
        key="montecarlo.method",
    )


def bar_sample(source: Any, method: str, periods_per_year: float) -> Sample:
    """Bar returns of ``source`` (a result, a return series or a 1-D array).

    Raises:
        ConfigError: ``source`` is a trades table (use a trade method).
        DataValidationError: missing, infinite or below -100% returns.
    """
    if isinstance(source, BacktestResult):
        series = source.returns
    elif isinstance(source, pd.Series):
        series = source
    elif isinstance(source, np.ndarray) and source.ndim == 1:
        series = pd.Series(source)
    elif isinstance(source, pd.DataFrame):
        raise _wrong_kind(
            method,
            "bar returns",
            "a trades table; use trade_reshuffle or trade_bootstrap, or pass the return series",
        )
    else:
        raise TypeError(
            f"source must be a BacktestResult, a return Series or a trades DataFrame, "
            f"got {type(source).__name__}"
        )
    values = np.ascontiguousarray(series.to_numpy(dtype=np.float64, na_value=np.nan))
    check_returns(values, series.index, str(series.name or "returns"))
    return Sample(values, float(periods_per_year), "bar", series.index)


def _trades_per_year(trades: pd.DataFrame, n_bars: int | None, periods_per_year: float) -> float:
    n = len(trades)
    if n_bars:
        return n * periods_per_year / n_bars
    if {"entry_time", "exit_time"} <= set(trades.columns):
        start = pd.to_datetime(trades["entry_time"]).min()
        end = pd.to_datetime(trades["exit_time"]).max()
        years = (end - start) / pd.Timedelta(days=365.25)
        if pd.notna(years) and years > 0:
            return n / float(years)
    return float(periods_per_year)


def portfolio_steps(returns: pd.Series, trades: pd.DataFrame) -> NDArray[np.float64]:
    """The portfolio's growth from one trade exit to the next, one value per exit time.

    The bars are cut after every bar on which a trade closes (the last stretch runs to
    the final bar, so open trades are included); each step is the compounded portfolio
    return of its bars. The steps compound exactly to the backtest's total return,
    whatever the number of assets and however their trades overlap: a one-asset book's
    steps are its trades (with the flat bars before each, which earn nothing).

    Raises:
        DataValidationError: An exit time outside the returns' index.
    """
    index = pd.DatetimeIndex(returns.index) if len(returns) else returns.index
    exits = index.get_indexer(pd.to_datetime(trades["exit_time"]))
    if (exits < 0).any():
        bad = trades["exit_time"].iloc[int(np.flatnonzero(exits < 0)[0])]
        raise DataValidationError(
            f"{int((exits < 0).sum())} trade exit time(s) are not bars of the returns, "
            f"first {bad}: pass the result's own trades table",
            column="exit_time",
            timestamp=bad,
            count=int((exits < 0).sum()),
        )
    cuts = np.unique(exits)
    cuts = cuts[cuts < len(returns) - 1]
    starts = np.concatenate(([0], cuts + 1))
    growth = 1.0 + returns.to_numpy(dtype=np.float64)
    return np.multiply.reduceat(growth, starts) - 1.0


def trade_sample(source: Any, method: str, periods_per_year: float) -> Sample:
    """Per-trade returns of ``source`` (a result or a trades table), in order of exit.

    For a :class:`~backtest.engine.BacktestResult` a "trade" is the portfolio's step
    from one trade exit to the next (:func:`portfolio_steps`): with several assets,
    trades overlap in time and move the portfolio by their weight, so their own
    returns do not compound to the portfolio's; the steps do, so the observed total
    return and CAGR are the backtest's own. A bare trades table is used as given.

    Annualising uses trades per year: the result's step count over its bars (which
    makes the CAGR the backtest's), or the trades' calendar span (entry of the first
    to exit of the last); failing both, ``periods_per_year`` (one trade per bar).

    Raises:
        ConfigError: ``source`` is a return series (use a bar method).
        DataValidationError: no ``return`` column, or bad per-trade returns.
    """
    n_bars: int | None = None
    if isinstance(source, BacktestResult):
        trades, n_bars = source.trades, len(source.returns)
    elif isinstance(source, pd.DataFrame):
        trades = source
    elif isinstance(source, pd.Series | np.ndarray):
        raise _wrong_kind(
            method,
            "per-trade returns",
            "a return series; pass the trades table or the BacktestResult",
        )
    else:
        raise TypeError(
            f"source must be a BacktestResult or a trades DataFrame, got {type(source).__name__}"
        )
    if "return" not in trades.columns:
        raise DataValidationError(
            f"the trades table has no 'return' column (columns: {list(trades.columns)})",
            column="return",
        )
    if "exit_time" in trades.columns:
        trades = trades.sort_values("exit_time", kind="stable")
    values = np.ascontiguousarray(trades["return"].to_numpy(dtype=np.float64, na_value=np.nan))
    label = trades["entry_time"] if "entry_time" in trades.columns else trades.index.to_series()
    check_returns(values, pd.Index(label), "return")
    if isinstance(source, BacktestResult) and len(trades) and len(source.returns):
        values = np.ascontiguousarray(portfolio_steps(source.returns, trades))
        check_returns(values, pd.RangeIndex(values.size), "return")
        tpy = values.size * periods_per_year / len(source.returns)
        return Sample(values, tpy, "trade", pd.RangeIndex(values.size))
    tpy = _trades_per_year(trades, n_bars, periods_per_year)
    return Sample(values, tpy, "trade", pd.RangeIndex(len(values)))
