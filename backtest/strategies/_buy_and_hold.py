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
    """Fully long every asset from the close of the first bar to the end."""

    param_names: ClassVar[tuple[str, ...]] = ()

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        """A position of 1 on every bar and asset."""
        return pd.DataFrame(1.0, index=prices.index, columns=prices.columns)

    @classmethod
    def batch_positions(
        cls, close: NDArray[np.float64], params: Mapping[str, NDArray]
    ) -> NDArray[np.float64]:
        """Ones for every parameter set (there are no parameters)."""
        return np.ones((close.shape[0], n_sets(params)))
