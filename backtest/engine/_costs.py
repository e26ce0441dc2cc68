"""Costs and bar returns: what one unit of traded notional costs, and close-to-close returns."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from backtest.errors import ConfigError


def cost_rate(fee_bps: float, slippage_bps: float) -> float:
    """Cost per unit of traded notional as a fraction (``(fee + slippage) / 1e4``)."""
    for name, value in (("fee_bps", fee_bps), ("slippage_bps", slippage_bps)):
        if not np.isfinite(value) or value < 0:
            raise ConfigError(
                f"engine.{name} must be a finite number >= 0, got {value}", key=f"engine.{name}"
            )
    return (fee_bps + slippage_bps) / 1e4


def bar_returns(close: NDArray[np.float64], axis: int = 0) -> NDArray[np.float64]:
    """Close-to-close returns with a leading 0, along ``axis`` (the bars).

    ``axis=1`` for asset-major closes ``(n_assets, n_bars)``, as the batched kernels read them.
    """
    r = np.zeros_like(close, dtype=np.float64)
    out = np.moveaxis(r, axis, 0)
    bars = np.moveaxis(np.asarray(close), axis, 0)
    out[1:] = bars[1:] / bars[:-1] - 1.0
    return r


def asset_returns(
    close: NDArray[np.float64], positions: NDArray[np.float64], cost: float
) -> NDArray[np.float64]:
    """Per-asset (or per-set) strategy returns after costs; arrays of the same shape."""
    r = bar_returns(close)
    if positions.ndim == 2 and r.ndim == 1:
        r = r[:, np.newaxis]
    prev = np.zeros_like(positions)
    prev[1:] = positions[:-1]
    # r[0] = 0 and pos[-1] = 0, so ret[0] is 0 unless a position is opened at the first
    # close; then its cost is charged there (a cost is never dropped).
    return (1.0 + prev * r) * (1.0 - cost * np.abs(positions - prev)) - 1.0
