"""Rebalance schedules: on which bars the book trades towards its targets.

``bar`` (and 1): every bar. ``D``, ``W``, ``M``, ``Q``: the first bar of each calendar
day, week (Monday to Sunday), month and quarter, plus the first bar of the data. An int
N: bars 0, N, 2N, ... Decided from timestamps up to t only (the first bar of a new
period is known when it arrives), so a schedule never looks ahead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray


def rebalance_flags(index: pd.DatetimeIndex, rebalance: str | int) -> NDArray[np.bool_]:
    """``(n,)`` bool: whether bar t is a rebalance bar.

    Examples:
        >>> idx = pd.DatetimeIndex(["2024-01-30", "2024-01-31", "2024-02-01", "2024-02-02"])
        >>> rebalance_flags(idx, "M").tolist(), rebalance_flags(idx, 3).tolist()
        ([True, False, True, False], [True, False, False, True])
    """
    n = len(index)
    if rebalance in ("bar", 1):
        return np.ones(n, dtype=bool)
    if isinstance(rebalance, int):
        return np.arange(n) % rebalance == 0
    if rebalance == "D":
        key = index.normalize().as_unit("ns").asi8
    elif rebalance == "W":
        key = (index.normalize() - pd.to_timedelta(index.day_of_week, unit="D")).as_unit("ns").asi8
    elif rebalance == "M":
        key = (index.year * 12 + index.month).to_numpy()
    elif rebalance == "Q":
        key = (index.year * 4 + index.quarter).to_numpy()
    else:  # validated by _params.parse_rebalance
        raise ValueError(f"unknown rebalance code {rebalance!r}")
    flags = np.ones(n, dtype=bool)
    flags[1:] = np.asarray(key[1:]) != np.asarray(key[:-1])
    return flags
