"""Bars per year, inferred from the index when ``engine.periods_per_year`` is unset.

* daily bars on trading days: 252; daily bars that include weekends (24/7 markets): 365;
* weekly: 52; monthly: 12; quarterly: 4;
* intraday on sessions (no weekend bars): bars per session x 252, where bars per session
  is the median number of bars per calendar day;
* intraday round the clock (weekend bars): bars per day x 365.

When the spacing is irregular (more than 10% of the steps, within a day for intraday
data, far from the typical step) a warning is logged on ``backtest.engine``: the figure
is then a guess, set ``engine.periods_per_year`` yourself.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger("backtest.engine")

_DAY = 86_400.0


def infer_periods_per_year(index: pd.DatetimeIndex) -> tuple[float, bool]:
    """``(periods_per_year, irregular)`` of a sorted ``DatetimeIndex``.

    Fewer than two bars: 252 (daily) and not irregular.

    Examples:
        >>> infer_periods_per_year(pd.bdate_range("2024-01-01", periods=300))
        (252.0, False)
        >>> minutes = pd.date_range("2024-01-02 09:30", periods=390, freq="min")
        >>> days = [minutes + pd.Timedelta(days=d) for d in (0, 1, 2, 3, 6)]
        >>> infer_periods_per_year(pd.DatetimeIndex(np.concatenate(days)))
        (98280.0, False)
    """
    if len(index) < 2:
        return 252.0, False
    ns = index.as_unit("ns").asi8.astype(np.float64)
    steps = np.diff(ns) / 1e9
    step = float(np.median(steps))
    weekend = np.isin(index.day_of_week, (5, 6))
    has_weekend = weekend.mean() > 0.05
    if step >= 0.5 * _DAY:
        if step < 4.0 * _DAY:
            ppy, typical = (365.0 if has_weekend else 252.0), _DAY
            ok = (steps >= 0.5 * _DAY) & (steps <= 4.5 * _DAY)
        elif step < 10.0 * _DAY:
            ppy, typical = 52.0, 7.0 * _DAY
            ok = (steps >= 0.5 * typical) & (steps <= 1.5 * typical)
        elif step < 60.0 * _DAY:
            ppy = 12.0
            ok = (steps >= 20.0 * _DAY) & (steps <= 40.0 * _DAY)
        else:
            ppy = 4.0
            ok = (steps >= 80.0 * _DAY) & (steps <= 100.0 * _DAY)
        return ppy, bool((~ok).mean() > 0.1)
    dates = index.normalize()
    per_day = pd.Series(1, index=dates).groupby(level=0).size().to_numpy()
    bars_per_day = float(np.median(per_day))
    same_day = dates[1:] == dates[:-1]
    within = steps[same_day] if same_day.any() else steps
    irregular = bool((np.abs(within - step) > 0.01 * step).mean() > 0.1)
    if has_weekend or bars_per_day * step >= 0.95 * _DAY:
        return round(_DAY / step) * 365.0, irregular
    return bars_per_day * 252.0, irregular


def resolve_periods_per_year(index: pd.DatetimeIndex, given: float | None) -> float:
    """``given`` when set, else the inferred figure (logging a warning if irregular)."""
    if given is not None:
        return float(given)
    ppy, irregular = infer_periods_per_year(index)
    if irregular:
        log.warning(
            "the bars' spacing is irregular; periods_per_year inferred as %g may be wrong: "
            "set engine.periods_per_year",
            ppy,
        )
    return ppy
