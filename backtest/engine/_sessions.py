"""Trading sessions from the index: flat at each session's end, time stops counted in sessions.

A session is a calendar day of the index (as :mod:`._periods` infers bars per session): bar
``t`` ends its session when the next bar falls on a later date. The data's last bar ends
no session (no gap is known to follow it; a trade open there is marked ``end``). The
session ends are the exchange's schedule, known in advance as a calendar would give them,
not a look at later prices.

* ``engine.flat_at_session_end = true``: every position is closed at the session's last
  bar, ``exit_reason = session_end``: with ``execution = close`` decided and filled at that
  bar's close; with ``next_open`` decided one bar earlier, at the close of the bar before
  the session's last bar, and filled at the last bar's open, so nothing is held over the
  gap. That decision also opens nothing and cancels every working entry order (an order
  filled after it would be held overnight). The strategy's target is followed again from
  the next decision (at market, or with a new entry order).
* ``engine.max_bars_unit = sessions``: ``engine.max_bars`` counts session boundaries
  crossed since the entry (1: exit in the session after the entry's) instead of bars.
"""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.errors import ConfigError

MAX_BARS_UNITS = ("bars", "sessions")


def session_arrays(index: pd.DatetimeIndex) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """``(session number, session end)`` per bar: the calendar day's rank, its last bar.

    Examples:
        >>> idx = pd.DatetimeIndex(["2024-01-02 15:58", "2024-01-02 15:59", "2024-01-03 09:30"])
        >>> number, end = session_arrays(idx)
        >>> number.tolist(), end.tolist()
        ([0, 0, 1], [False, True, False])
    """
    n = len(index)
    day = index.normalize().as_unit("ns").asi8
    end = np.zeros(n, dtype=np.bool_)
    if n > 1:
        end[:-1] = day[1:] != day[:-1]
    number = np.zeros(n, dtype=np.int64)
    if n > 1:
        number[1:] = np.cumsum(day[1:] != day[:-1])
    return number, end


def check_sessions(index: pd.DatetimeIndex, params: object) -> None:
    """Refuse session options that cannot act on these bars, naming the key.

    Raises:
        ConfigError: ``flat_at_session_end`` or ``max_bars_unit = sessions`` on bars with
            one bar per calendar day (daily or slower: every bar would end a session).
    """
    wants = [
        key
        for key, on in (
            ("flat_at_session_end", getattr(params, "flat_at_session_end", False)),
            ("max_bars_unit", getattr(params, "max_bars_unit", "bars") == "sessions"),
        )
        if on
    ]
    if not wants or len(index) < 2:
        return
    number, _ = session_arrays(index)
    if number[-1] + 1 == len(index):
        raise ConfigError(
            f"engine.{wants[0]} needs intraday bars (several bars per calendar day), but "
            "every bar of this data is on a day of its own, so every bar would end a "
            f"session; remove engine.{wants[0]} or load intraday data",
            key=f"engine.{wants[0]}",
        )


@numba.njit(cache=True, nogil=True, inline="always")
def flat_decision(t: int, next_open: bool, sess_end: NDArray[np.bool_]) -> bool:
    """Whether the decision at bar ``t``'s close must flatten the book (session end)."""
    if next_open:
        return t + 1 < sess_end.shape[0] and sess_end[t + 1]
    return sess_end[t]
