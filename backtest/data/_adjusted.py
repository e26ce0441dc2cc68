"""The adjusted view strategies see: split- and dividend-adjusted, total-return prices.

:meth:`Bars.adjusted() <backtest.data.Bars.adjusted>` calls :func:`adjusted_bars`; the
corporate actions themselves are read by :mod:`backtest.data._actions`. Takes a ``Bars``
and returns a copy (``dataclasses.replace``), so it imports nothing of :mod:`._bars`
at run time.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from backtest.data._bars import Bars

NDArrayLike = np.ndarray | pd.DataFrame


def adjustment_factors(
    close: NDArrayLike, split: NDArrayLike | None, dividend: NDArrayLike | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(price factor, share factor)`` per bar and asset; 1 up to an asset's first action.

    On an ex-date ``e`` a holder of one share at ``e-1`` holds ``s_e`` shares worth
    ``C_e`` each and ``s_e * D_e`` in cash, a total return of ``s_e (C_e + D_e) /
    C_{e-1}``. The adjusted close ``A_t = C_t F_t`` has exactly that return on ``e`` and
    the raw close's return on every other bar: ``F_t = F_{t-1} s_t (C_t + D_t) / C_t``,
    ``F = 1`` before the first action. Anchored at the start, not at the end: ``F_t``
    uses the actions up to ``t`` only, so the adjusted prices up to ``t`` are the same
    whatever comes later (no look-ahead; a back-adjusted series, last price unchanged, is
    this one times a constant per asset that depends on future actions). The share factor
    (for volumes) is the product of the splits up to ``t``. A NaN close keeps the factor;
    an action on a listing's first bar (no earlier price, no holder) adjusts nothing.
    """
    c = np.asarray(close, dtype=np.float64)
    s = np.ones_like(c) if split is None else np.asarray(split, dtype=np.float64)
    d = np.zeros_like(c) if dividend is None else np.asarray(dividend, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        step = s * (c + d) / c
    # an action on a listing's first bar has no earlier price (and no holder) to adjust
    first = np.isnan(np.vstack([np.full((1, c.shape[1]), np.nan), c[:-1]]))
    step = np.where(np.isfinite(step) & ~first, step, 1.0)
    shares = np.where(np.isfinite(s) & ~first, s, 1.0)
    return np.cumprod(step, axis=0), np.cumprod(shares, axis=0)


def adjusted_bars(bars: Bars) -> Bars:
    """The split- and dividend-adjusted view of ``bars`` that strategies see.

    Open, high, low and close times the price factor of :func:`adjustment_factors`: a
    total-return series, each asset's prices equal to the traded ones up to its first
    action and compounding the holder's return (dividends reinvested) after it, so a
    moving average does not jump at a split and a momentum score counts dividends; volume
    in the shares of the asset's start (divided by the splits so far). The tradable mask
    and the delisting returns are kept; there are no action frames (``split`` and
    ``dividend`` are ``None``). Bars without actions are returned as they are.

    What it means for price-level rules: after an asset's first action, a level in the
    adjusted view (a channel, a moving average, a stop distance in price) is not a price
    it trades at; returns, ratios and signals that compare prices with each other (every
    built-in strategy) are the holder's. A rule written against raw price levels (a
    limit at 100) should read ``bars.close`` of the traded data instead.
    """
    if not bars.has_actions:
        if bars.split is None and bars.dividend is None:
            return bars
        return replace(bars, split=None, dividend=None)
    factor, shares = adjustment_factors(bars.close, bars.split, bars.dividend)

    def scaled(frame: pd.DataFrame | None, by: np.ndarray) -> pd.DataFrame | None:
        if frame is None:
            return None
        return pd.DataFrame(
            frame.to_numpy(dtype=np.float64) * by, index=frame.index, columns=frame.columns
        )

    return replace(
        bars,
        close=scaled(bars.close, factor),
        open=scaled(bars.open, factor),
        high=scaled(bars.high, factor),
        low=scaled(bars.low, factor),
        volume=scaled(bars.volume, 1.0 / shares),
        split=None,
        dividend=None,
    )
