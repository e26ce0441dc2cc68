"""Walk-forward optimisation: splitters and the optimizer."""

from __future__ import annotations

from backtest.walkforward._splitters import (
    Fold,
    Splits,
    calendar_splits,
    cpcv_splits,
    make_splits,
    parse_period,
    rolling_splits,
)

__all__ = [
    "Fold",
    "Splits",
    "calendar_splits",
    "cpcv_splits",
    "make_splits",
    "parse_period",
    "rolling_splits",
]
