"""Cross-sectional momentum: rank the assets by past return, hold the winners."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.errors import ConfigError
from backtest.strategies._base import as_param_array, check_int, n_sets


def trailing_returns(close: NDArray[np.float64], lookback: int, skip: int) -> NDArray[np.float64]:
    """``close[t-skip] / close[t-skip-lookback] - 1`` per asset, ``(n, a)``; NaN while short."""
    n = close.shape[0]
    out = np.full(close.shape, np.nan)
    start = lookback + skip
    if start < n:
        out[start:] = close[start - skip : n - skip] / close[: n - start] - 1.0
    return out


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "lookback", check_int("lookback", self.lookback, 1))
        object.__setattr__(self, "skip", check_int("skip", self.skip, 0))
        object.__setattr__(self, "top_n", check_int("top_n", self.top_n, 1))

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        """Target weights: see the class docstring."""
        close = prices.to_numpy(dtype=np.float64)
        _check_universe(self.top_n, self.long_short, close.shape[1])
        score = trailing_returns(close, self.lookback, self.skip)
        w = rank_weights(score, self.top_n, self.long_short)
        return pd.DataFrame(w, index=prices.index, columns=prices.columns)

    @classmethod
    def batch_weights(
        cls, close: NDArray[np.float64], params: Mapping[str, NDArray]
    ) -> NDArray[np.float64]:
        """Target weights of ``k`` parameter sets, ``(n_bars, n_assets, k)``.

        Scores are computed once per distinct (lookback, skip), weights once per distinct
        set.
        """
        k = n_sets(params)
        lookback = as_param_array(params, "lookback", k, 252).astype(np.int64)
        skip = as_param_array(params, "skip", k, 21).astype(np.int64)
        top_n = as_param_array(params, "top_n", k, 2).astype(np.int64)
        long_short = as_param_array(params, "long_short", k, False).astype(bool)
        close = np.asarray(close, dtype=np.float64)
        out = np.empty((*close.shape, k))
        scores: dict[tuple[int, int], NDArray[np.float64]] = {}
        done: dict[tuple[int, int, int, bool], int] = {}
        for i in range(k):
            key = (int(lookback[i]), int(skip[i]), int(top_n[i]), bool(long_short[i]))
            if key in done:
                out[:, :, i] = out[:, :, done[key]]
                continue
            cls(*key)  # the constructor's checks name a bad parameter
            _check_universe(key[2], key[3], close.shape[1])
            if key[:2] not in scores:
                scores[key[:2]] = trailing_returns(close, key[0], key[1])
            out[:, :, i] = rank_weights(scores[key[:2]], key[2], key[3])
            done[key] = i
        return out


def _check_universe(top_n: int, long_short: bool, n_assets: int) -> None:
    need = 2 * top_n if long_short else top_n
    if need > n_assets:
        raise ConfigError(
            f"strategy parameter 'top_n' ({top_n}) needs {need} assets"
            f"{' (long and short)' if long_short else ''}, the data has {n_assets}",
            key="top_n",
        )
