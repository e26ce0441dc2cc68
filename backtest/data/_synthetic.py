"""Seeded synthetic closes: geometric Brownian motion, optionally with regimes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from backtest.errors import ConfigError

_TREND_PER_VOL = 0.25  # trending regime: extra drift per bar, in units of volatility
_REVERSION_SPEED = 0.3  # mean-reverting regime: fraction of the gap to the level closed per bar
_REGIME_BARS = (60, 253)  # regime lengths are drawn uniformly from [60, 252] bars


def synthetic_prices(
    n_bars: int = 2520,
    n_assets: int = 4,
    *,
    drift: float = 0.0002,
    volatility: float = 0.01,
    start_price: float = 100.0,
    regimes: bool = True,
    start_date: str = "2010-01-04",
    seed: int | np.random.Generator | None = None,
) -> pd.DataFrame:
    """Seeded synthetic daily closes.

    With ``regimes=False`` this is plain geometric Brownian motion: the log returns
    ``log(close[t] / close[t-1])`` for ``t >= 1`` are drawn iid
    ``N(drift, volatility)`` in one call ``rng.normal(drift, volatility,
    (n_bars - 1, n_assets))`` and every asset starts at ``start_price``.

    With ``regimes=True`` each asset alternates stretches of 60-252 bars of two
    kinds, so that both momentum and mean-reversion strategies have something to
    find: *trending* (the drift plus a persistent ``±0.25 × volatility`` per bar,
    sign drawn per stretch) and *mean-reverting* (an Ornstein-Uhlenbeck pull of the
    log price toward its level at the start of the stretch, closing 30% of the gap
    per bar). The noise is the same ``N(0, volatility)`` in both.

    Args:
        n_bars: Number of daily bars (business days from ``start_date``).
        n_assets: Number of assets, named ``SYN0``, ``SYN1``, ...
        drift: Mean log return per bar.
        volatility: Standard deviation of the log return per bar.
        start_price: First close of every asset.
        regimes: Add trending and mean-reverting regimes (see above).
        start_date: Date of the first bar.
        seed: Seed or generator; the same seed gives the same prices in any process.

    Returns:
        Wide closes, float64, index of business days named ``date``.

    Raises:
        ConfigError: A non-positive size, volatility or start price.

    Examples:
        >>> prices = synthetic_prices(5, 2, seed=1)
        >>> prices.shape, list(prices.columns), float(prices.iloc[0, 0])
        ((5, 2), ['SYN0', 'SYN1'], 100.0)
    """
    for key, value in (("n_bars", n_bars), ("n_assets", n_assets)):
        if value < 1:
            raise ConfigError(f"{key} must be at least 1, got {value}", key=key)
    if volatility < 0 or start_price <= 0:
        key = "volatility" if volatility < 0 else "start_price"
        raise ConfigError(f"{key} must be positive", key=key)
    rng = np.random.default_rng(seed)
    days = pd.bdate_range(start=start_date, periods=n_bars).as_unit("ns")
    index = pd.DatetimeIndex(days.to_numpy(), name="date")
    columns = [f"SYN{i}" for i in range(n_assets)]
    if regimes:
        log_price = _regime_log_prices(rng, n_bars, n_assets, drift, volatility)
    else:
        steps = rng.normal(drift, volatility, size=(n_bars - 1, n_assets))
        log_price = np.vstack([np.zeros((1, n_assets)), np.cumsum(steps, axis=0)])
    closes = start_price * np.exp(log_price)
    return pd.DataFrame(closes, index=index, columns=columns, dtype=np.float64)


def _regime_log_prices(
    rng: np.random.Generator, n_bars: int, n_assets: int, drift: float, volatility: float
) -> np.ndarray:
    """Log prices (starting at 0) with alternating trending / mean-reverting stretches."""
    trend = np.zeros((n_bars, n_assets))  # extra drift per bar
    speed = np.zeros((n_bars, n_assets))  # OU speed (0 while trending)
    starts = np.zeros((n_bars, n_assets), dtype=bool)  # first bar of a stretch
    for a in range(n_assets):
        t, trending = 1, bool(rng.integers(2))
        while t < n_bars:
            end = min(n_bars, t + int(rng.integers(*_REGIME_BARS)))
            starts[t, a] = True
            if trending:
                trend[t:end, a] = rng.choice([-1.0, 1.0]) * _TREND_PER_VOL * volatility
            else:
                speed[t:end, a] = _REVERSION_SPEED
            t, trending = end, not trending
    noise = rng.normal(0.0, volatility, size=(n_bars, n_assets))
    log_price = np.zeros((n_bars, n_assets))
    level = np.zeros(n_assets)
    for t in range(1, n_bars):
        prev = log_price[t - 1]
        level = np.where(starts[t], prev, level)
        log_price[t] = prev + drift + trend[t] + speed[t] * (level - prev) + noise[t]
    return log_price
