"""A cross-sectional rule: hold the assets with the best trailing return, written as a user would.

Rule: at the close of bar t rank the assets by their return over the last ``lookback``
bars; hold (position 1) the ``top`` best, the rest flat. With the engine's equal
weights (``1 / n_assets`` per asset unless ``engine.weights`` says otherwise) the book
is the top assets, each at its weight. Flat until ``lookback + 1`` closes exist.

The rule needs every asset at once, so it has no ``batch_positions`` (that fast path
sees one asset at a time): searches and walk-forwards run one backtest per parameter
set, and say so once in the log. Its parameters come from the ``__init__`` signature
and are kept as attributes of the same names, so a run records them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


class CrossSectionalRank:
    """Long the ``top`` assets by trailing ``lookback``-bar return.

    Args:
        lookback: Bars of the trailing return (>= 1).
        top: How many assets to hold (>= 1).
    """

    def __init__(self, lookback: int = 63, top: int = 1) -> None:
        if lookback < 1 or top < 1:
            raise ValueError(f"lookback and top must be >= 1, got {lookback}, {top}")
        self.lookback = lookback
        self.top = top

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        """1 for the ``top`` assets by trailing return at each bar, else 0."""
        trailing = prices / prices.shift(self.lookback) - 1.0  # closes up to t only
        rank = trailing.rank(axis=1, ascending=False, method="first")
        held = (rank <= self.top) & trailing.notna()
        return held.astype(np.float64)
