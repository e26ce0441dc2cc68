"""The single backtest: one strategy's positions over wide closes -> returns, trades, metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest import metrics as m
from backtest.engine._costs import asset_returns, cost_rate
from backtest.engine._trades import trades_table
from backtest.errors import BacktestError, ConfigError
from backtest.strategies import Strategy


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """One backtest: the portfolio's returns, equity, positions, trades and metrics.

    Attributes:
        returns: Portfolio return per bar after costs (``returns.iloc[0] == 0``).
        equity: Growth of 1 unit of capital: ``(1 + returns).cumprod()``.
        positions: Target position per bar and asset, in [-1, 1].
        trades: One row per trade (see ``TRADE_COLUMNS``); an open trade is marked
            to the last close with ``is_open=True``.
        metrics: Every metric of :func:`backtest.metrics.compute_metrics`.
        params: The strategy's parameters.
        run_dir: The run directory it was written to, when it was.
    """

    returns: pd.Series
    equity: pd.Series
    positions: pd.DataFrame
    trades: pd.DataFrame
    metrics: dict[str, float]
    params: dict[str, Any] = field(default_factory=dict)
    run_dir: str | None = None


def resolve_weights(columns: Sequence[object], weights: Mapping[str, float] | None) -> NDArray:
    """Portfolio weight per column: equal when ``weights`` is empty, else as given.

    Raises:
        ConfigError: a symbol without a weight, a weight for an unknown symbol, or a
            non-finite weight; the message names the symbol.
    """
    names = [str(c) for c in columns]
    if not weights:
        return np.full(len(names), 1.0 / max(len(names), 1))
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ConfigError(
            f"engine.weights names unknown symbol {unknown[0]!r}",
            key=f"engine.weights.{unknown[0]}",
        )
    missing = [n for n in names if n not in weights]
    if missing:
        raise ConfigError(
            f"engine.weights has no weight for symbol {missing[0]!r}",
            key=f"engine.weights.{missing[0]}",
        )
    w = np.array([float(weights[n]) for n in names])
    if not np.all(np.isfinite(w)):
        bad = names[int(np.flatnonzero(~np.isfinite(w))[0])]
        raise ConfigError(f"engine.weights.{bad} is not finite", key=f"engine.weights.{bad}")
    return w


def _checked_positions(raw: pd.DataFrame, prices: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(raw, pd.DataFrame) or raw.shape != prices.shape:
        raise BacktestError(
            f"strategy returned {type(raw).__name__} of shape {getattr(raw, 'shape', None)}; "
            f"expected a DataFrame of shape {prices.shape}"
        )
    values = raw.to_numpy(dtype=np.float64, na_value=np.nan)
    values = np.where(np.isnan(values), 0.0, values)
    bad = np.abs(values) > 1.0 + 1e-12
    if bad.any():
        t, j = np.argwhere(bad)[0]
        raise BacktestError(
            f"strategy position {values[t, j]} for {prices.columns[j]!r} at {prices.index[t]} "
            f"is outside [-1, 1] ({int(bad.sum())} such values)"
        )
    return pd.DataFrame(values, index=prices.index, columns=prices.columns)


def simulate(
    prices: pd.DataFrame,
    strategy: Strategy,
    *,
    fee_bps: float = 0.0,
    slippage_bps: float = 0.0,
    weights: Mapping[str, float] | None = None,
    periods_per_year: int = 252,
) -> BacktestResult:
    """Backtest one strategy on wide closes.

    Args:
        prices: Validated closes: a ``DatetimeIndex`` and one column per asset.
        strategy: Anything with ``positions(prices)``; see :mod:`backtest.strategies`.
        fee_bps: Commission per unit of traded notional, in basis points.
        slippage_bps: Slippage per unit of traded notional, in basis points.
        weights: Symbol -> portfolio weight; equal weights when empty.
        periods_per_year: Bars per year, for annualised metrics.

    Returns:
        The portfolio's returns, equity, positions, trades and metrics.

    Raises:
        ConfigError: a negative cost or bad weights.
        BacktestError: the strategy returned positions outside [-1, 1] or of the wrong shape.
    """
    cost = cost_rate(fee_bps, slippage_bps)
    w = resolve_weights(prices.columns, weights)
    positions = _checked_positions(strategy.positions(prices), prices)
    close = prices.to_numpy(dtype=np.float64)
    per_asset = asset_returns(close, positions.to_numpy(), cost)
    combined = np.zeros(len(prices))
    for j in range(per_asset.shape[1]):  # same summation order as the batched path
        combined += w[j] * per_asset[:, j]
    returns = pd.Series(combined, index=prices.index, name="returns")
    equity = (1.0 + returns).cumprod().rename("equity")
    trades = trades_table(prices, positions, cost)
    metrics = m.compute_metrics(
        returns,
        positions,
        trades,
        weights=dict(zip(map(str, prices.columns), w, strict=True)),
        periods_per_year=periods_per_year,
    )
    params = _strategy_params(strategy)
    return BacktestResult(returns, equity, positions, trades, metrics, params)


def _strategy_params(strategy: object) -> dict[str, Any]:
    from backtest.strategies._params import strategy_params

    return strategy_params(strategy)
