"""Buy and hold: the benchmark every strategy should beat after costs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.strategies._base import n_sets


@dataclass(frozen=True, slots=True)
class BuyAndHold:
    """Fully long every asset while it is listed (from the close of its first bar).

    On a panel with listings the position is 1 where the asset has a price and 0 where it
    has none (before it lists, after it delists).
    """

    param_names: ClassVar[tuple[str, ...]] = ()

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        """A position of 1 on every bar and asset with a price, 0 elsewhere."""
        listed = np.isfinite(prices.to_numpy(dtype=np.float64))
        return pd.DataFrame(listed.astype(np.float64), index=prices.index, columns=prices.columns)

    @classmethod
    def batch_positions(
        cls, close: NDArray[np.float64], params: Mapping[str, NDArray]
    ) -> NDArray[np.float64]:
        """Ones for every parameter set (there are no parameters), 0 where no price."""
        listed = np.isfinite(np.asarray(close, dtype=np.float64)).astype(np.float64)
        return np.repeat(listed[:, None], n_sets(params), axis=1)
