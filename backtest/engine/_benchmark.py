"""The benchmark a backtest is compared with: a symbol of the data or the equal-weight universe."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from backtest.errors import DataValidationError

EQUAL_WEIGHT = "equal_weight"


def check_benchmark(benchmark: str | None, symbols: Sequence[str]) -> None:
    """Refuse a benchmark symbol that is not in the data (``DataValidationError`` naming it)."""
    if benchmark is None or benchmark == EQUAL_WEIGHT:
        return
    if benchmark not in symbols:
        raise DataValidationError(
            f"engine.benchmark {benchmark!r} is not a symbol of the data "
            f"(symbols: {list(symbols)}); use one of them or 'equal_weight'",
            column=benchmark,
        )


def benchmark_returns(close: pd.DataFrame, benchmark: str) -> pd.Series:
    """Per-bar returns of the benchmark, first bar 0.

    ``equal_weight`` is a buy and hold of the universe: equal capital in every asset at
    the first close, never rebalanced (its value is the mean of ``close / close[0]``).

    Examples:
        >>> idx = pd.bdate_range("2024-01-01", periods=3)
        >>> close = pd.DataFrame({"A": [1.0, 2.0, 2.0], "B": [1.0, 1.0, 2.0]}, index=idx)
        >>> benchmark_returns(close, "equal_weight").round(4).tolist()
        [0.0, 0.5, 0.3333]
    """
    if benchmark == EQUAL_WEIGHT:
        values = close.to_numpy(dtype=np.float64)
        value = (values / values[0]).mean(axis=1)
    else:
        value = close[benchmark].to_numpy(dtype=np.float64)
    ret = np.zeros(len(value))
    ret[1:] = value[1:] / value[:-1] - 1.0
    return pd.Series(ret, index=close.index, name="benchmark")
