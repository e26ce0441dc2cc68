"""Trades: runs of a non-zero position of one sign, with their returns after costs."""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.engine._costs import bar_returns

TRADE_COLUMNS = (
    "asset",
    "direction",
    "entry_time",
    "exit_time",
    "entry_price",
    "exit_price",
    "return",
    "bars_held",
    "is_open",
)


@numba.njit(cache=True, nogil=True, inline="always")
def count_trade(growth: float, trades: float, wins: float) -> tuple[float, float]:
    """A trade ended with ``growth`` (its exit cost included): counted, and a winner if > 1.

    The one rule of the trade counts of every batched kernel.
    """  # pragma: no cover - compiled
    return trades + 1.0, wins + (1.0 if growth > 1.0 else 0.0)


@numba.njit(cache=True, nogil=True)
def _trade_step(
    growth: float, prev: float, cur: float, rt: float, cost: float
) -> tuple[float, bool, float]:  # pragma: no cover - compiled
    """One bar of trade accounting, shared by the single and the batched path.

    ``growth`` is the growth factor of the trade held coming into the bar (position
    ``prev``); the target moves to ``cur`` at this bar's close. Returns the growth of
    the trade held after the bar, whether a trade ended on this bar, and that ended
    trade's final growth (its exit cost included). A sign flip ends one trade and
    starts the next (charged its entry cost); a resize of the same sign is charged to
    the trade held.
    """
    if prev != 0.0:
        growth *= 1.0 + prev * rt
    ended = False
    ended_growth = 0.0
    if np.sign(cur) != np.sign(prev):
        if prev != 0.0:
            ended = True
            ended_growth = growth * (1.0 - cost * abs(prev))
        growth = 1.0 - cost * abs(cur) if cur != 0.0 else 1.0
    elif cur != prev:
        growth *= 1.0 - cost * abs(cur - prev)
    return growth, ended, ended_growth


@numba.njit(cache=True, nogil=True)
def _trades_kernel(
    pos: NDArray[np.float64], r: NDArray[np.float64], cost: float
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """Trades of one asset: entry bar, exit bar, direction, return (costs included).

    A trade is a run of bars with a non-zero position of one sign; a sign flip
    closes one trade and opens the next on the same bar. Its return compounds
    ``1 + pos[t-1] * r[t]`` over the bars it is held, times its own costs: entry,
    resizes and exit (an open trade is marked to the last close, no exit cost).
    """
    n = pos.shape[0]
    entries = np.empty(n, np.int64)
    exits = np.empty(n, np.int64)
    dirs = np.empty(n, np.float64)
    rets = np.empty(n, np.float64)
    k = 0
    growth = 1.0
    prev = 0.0
    for t in range(n):
        cur = pos[t]
        growth, ended, ended_growth = _trade_step(growth, prev, cur, r[t], cost)
        if ended:
            exits[k] = t
            rets[k] = ended_growth - 1.0
            k += 1
        if cur != 0.0 and np.sign(cur) != np.sign(prev):
            entries[k] = t
            dirs[k] = np.sign(cur)
        prev = cur
    if prev != 0.0:
        exits[k] = n - 1
        rets[k] = growth - 1.0
        k += 1
    return entries[:k], exits[:k], dirs[:k], rets[:k]


def trades_table(
    prices: pd.DataFrame, positions: pd.DataFrame, cost: float | NDArray[np.float64]
) -> pd.DataFrame:
    """One row per trade over every asset, in the order of ``TRADE_COLUMNS``.

    ``cost`` is one rate, or one per asset (per-asset fees and slippage).
    """
    rates = np.broadcast_to(np.asarray(cost, dtype=np.float64), (prices.shape[1],))
    close = prices.to_numpy(dtype=np.float64)
    pos = positions.to_numpy(dtype=np.float64)
    index = prices.index
    frames = []
    for j, asset in enumerate(prices.columns):
        c = np.ascontiguousarray(close[:, j])
        entries, exits, dirs, rets = _trades_kernel(
            np.ascontiguousarray(pos[:, j]), bar_returns(c), float(rates[j])
        )
        is_open = np.zeros(len(entries), dtype=bool)
        if len(entries) and pos[-1, j] != 0:
            is_open[-1] = True
        frames.append(
            pd.DataFrame(
                {
                    "asset": pd.Series([str(asset)] * len(entries), dtype=object),
                    "direction": dirs.astype(np.int64),
                    "entry_time": index[entries],
                    "exit_time": index[exits],
                    "entry_price": c[entries],
                    "exit_price": c[exits],
                    "return": rets,
                    "bars_held": exits - entries,
                    "is_open": is_open,
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=list(TRADE_COLUMNS))
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["entry_time", "asset"], kind="stable", ignore_index=True)
