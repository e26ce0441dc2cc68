"""Cross-sectional momentum: rank the assets by past return, hold the winners."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numba
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.data._bars import Bars, as_bars
from backtest.errors import ConfigError
from backtest.strategies._base import batch_params, check_int, n_sets


def trailing_returns(close: NDArray[np.float64], lookback: int, skip: int) -> NDArray[np.float64]:
    """``close[t-skip] / close[t-skip-lookback] - 1`` per asset, ``(n, a)``; NaN while short."""
    n = close.shape[0]
    out = np.full(close.shape, np.nan)
    start = lookback + skip
    if start < n:
        out[start:] = close[start - skip : n - skip] / close[: n - start] - 1.0
    return out


def ranked_scores(
    close: NDArray[np.float64], tradable: NDArray[np.bool_] | None, lookback: int, skip: int
) -> NDArray[np.float64]:
    """:func:`trailing_returns`, NaN where an asset is not tradable (``None``: all are).

    A score needs prices at both ends of its window, so an asset listed for less than
    ``lookback + skip`` bars, or delisted, has none.
    """
    score = trailing_returns(close, lookback, skip)
    if tradable is not None:
        score[~tradable] = np.nan
    return score


def _close_and_mask(
    data: Bars | pd.DataFrame | NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.bool_] | None]:
    """Closes as floats and the tradable mask (``None`` on a panel where all are)."""
    if isinstance(data, Bars):
        close = data.close.to_numpy(dtype=np.float64)
        if data.tradable is None and not np.isnan(close).any():
            return close, None
        return close, data.tradable_mask()
    close = np.asarray(data, dtype=np.float64)
    finite = np.isfinite(close)
    return close, None if finite.all() else finite


def rank_weights(score: NDArray[np.float64], top_n: int, long_short: bool) -> NDArray[np.float64]:
    """Equal weights on the ``top_n`` best scores (and short the ``top_n`` worst), per row.

    Long only: each winner ``1 / top_n`` (the book sums to 1). Long/short: winners
    ``+0.5 / top_n``, losers ``-0.5 / top_n`` (gross 1, net 0). A row with fewer scored
    assets than it needs is flat. Ties go to the earlier column.
    """
    n, a = score.shape
    out = np.zeros((n, a))
    valid = ~np.isnan(score)
    need = 2 * top_n if long_short else top_n
    ok = valid.sum(axis=1) >= need
    if not ok.any():
        return out
    rows = np.flatnonzero(ok)
    s = score[rows]
    best = np.argsort(np.where(np.isnan(s), np.inf, -s), axis=1, kind="stable")[:, :top_n]
    size = 0.5 / top_n if long_short else 1.0 / top_n
    block = out[rows]
    np.put_along_axis(block, best, size, axis=1)
    if long_short:
        worst = np.argsort(np.where(np.isnan(s), np.inf, s), axis=1, kind="stable")[:, :top_n]
        np.put_along_axis(block, worst, -size, axis=1)
    out[rows] = block
    return out


@dataclass(frozen=True, slots=True)
class CrossSectionalMomentum:
    """Cross-sectional momentum: hold the ``top_n`` assets with the best past return.

    At the close of bar t every asset is scored by its return from ``t-skip-lookback``
    to ``t-skip``; the ``top_n`` best get equal weights summing to 1 (long only), or
    with ``long_short`` the best ``+0.5/top_n`` each and the ``top_n`` worst
    ``-0.5/top_n`` each (gross 1, dollar neutral). Flat until ``lookback + skip`` bars
    exist. A weights strategy (``output = "weights"``): ``engine.weights`` is not applied;
    combine it with ``engine.rebalance: M`` for the classic monthly book.

    On a changing universe only assets that are **tradable at t** (listed, and members
    when ``data.universe`` narrows it: ``bars.tradable_mask()``) **with a full
    lookback** (a price at ``t-skip-lookback``, i.e. listed for the whole window) are
    ranked; a row with fewer of them than it needs is flat. It reads :class:`Bars`
    (``inputs = "bars"``); handed wide closes, it ranks the assets with prices.

    Args:
        lookback: Bars over which the past return is measured (>= 1).
        skip: Most recent bars left out (>= 0; 21 skips the last month on daily bars).
        top_n: Assets held long (and short) (>= 1).
        long_short: Also short the ``top_n`` worst.

    Raises:
        ConfigError: a bad parameter, or more assets needed than the data has (named).
    """

    lookback: int = 252
    skip: int = 21
    top_n: int = 2
    long_short: bool = False

    param_names: ClassVar[tuple[str, ...]] = ("lookback", "skip", "top_n", "long_short")
    output: ClassVar[str] = "weights"
    inputs: ClassVar[str] = "bars"

    def __post_init__(self) -> None:
        object.__setattr__(self, "lookback", check_int("lookback", self.lookback, 1))
        object.__setattr__(self, "skip", check_int("skip", self.skip, 0))
        object.__setattr__(self, "top_n", check_int("top_n", self.top_n, 1))

    def positions(self, prices: Bars | pd.DataFrame) -> pd.DataFrame:
        """Target weights: see the class docstring."""
        close, tradable = _close_and_mask(prices)
        frame = as_bars(prices).close
        _check_universe(self.top_n, self.long_short, close.shape[1])
        score = ranked_scores(close, tradable, self.lookback, self.skip)
        w = rank_weights(score, self.top_n, self.long_short)
        return pd.DataFrame(w, index=frame.index, columns=frame.columns)

    @classmethod
    def batch_weights(
        cls, data: Bars | NDArray[np.float64], params: Mapping[str, NDArray]
    ) -> NDArray[np.float64]:
        """Target weights of ``k`` parameter sets, ``(n_bars, n_assets, k)``.

        ``data``: the bars (their tradable mask is read), or closes as an ``(n, a)``
        array (assets with a price are tradable). Scores are computed once per distinct
        (lookback, skip), weights once per distinct set.
        """
        close, tradable = _close_and_mask(data)
        k = n_sets(params)
        names = ("lookback", "skip", "top_n", "long_short")
        lookback, skip, top_n, long_short = batch_params(cls, params, *names)
        n, a = close.shape
        for i in np.unique(np.column_stack([lookback, skip, top_n, long_short]), axis=0):
            cls(int(i[0]), int(i[1]), int(i[2]), bool(i[3]))  # the constructor names a bad one
            _check_universe(int(i[2]), bool(i[3]), a)
        pairs, inverse = np.unique(np.column_stack([lookback, skip]), axis=0, return_inverse=True)
        best = np.empty((len(pairs), n, a), dtype=np.int64)
        worst = np.empty((len(pairs), n, a), dtype=np.int64)
        n_valid = np.empty((len(pairs), n), dtype=np.int64)
        for u, (lb, sk) in enumerate(pairs):
            score = ranked_scores(close, tradable, int(lb), int(sk))
            nan = np.isnan(score)
            best[u] = np.argsort(np.where(nan, np.inf, -score), axis=1, kind="stable")
            if long_short.any():
                worst[u] = np.argsort(np.where(nan, np.inf, score), axis=1, kind="stable")
            n_valid[u] = (~nan).sum(axis=1)
        out = np.zeros((n, a, k))
        _fill(best, worst, n_valid, inverse.ravel().astype(np.int64), top_n, long_short, out)
        return out


@numba.njit(cache=True, nogil=True)
def _fill(
    best: NDArray[np.int64],
    worst: NDArray[np.int64],
    n_valid: NDArray[np.int64],
    pair_of: NDArray[np.int64],
    top_n: NDArray[np.int64],
    long_short: NDArray[np.bool_],
    out: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled; equal to rank_weights in the tests
    """``out[:, :, i]``: the weights of :func:`rank_weights` from precomputed orders."""
    n, _, k = out.shape
    for i in range(k):
        u = pair_of[i]
        m = top_n[i]
        ls = long_short[i]
        need = 2 * m if ls else m
        size = 0.5 / m if ls else 1.0 / m
        for t in range(n):
            if n_valid[u, t] < need:
                continue
            for r in range(m):
                out[t, best[u, t, r], i] = size
            if ls:
                for r in range(m):
                    out[t, worst[u, t, r], i] = -size


def _check_universe(top_n: int, long_short: bool, n_assets: int) -> None:
    need = 2 * top_n if long_short else top_n
    if need > n_assets:
        raise ConfigError(
            f"strategy parameter 'top_n' ({top_n}) needs {need} assets"
            f"{' (long and short)' if long_short else ''}, the data has {n_assets}",
            key="top_n",
        )
