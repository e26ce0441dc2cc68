"""The per-bar kernel path's chunks and lanes change nothing: a set's numbers are its own.

``simulate_batch`` cuts the sets into chunks (``chunk_size``; by default about 8 MB of
targets) and each chunk into groups on the lanes, each group computing its books and
its return metrics. Whatever the cut, every set's metrics and returns are the same, bit
for bit, as one set run alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.data import Bars
from backtest.engine import simulate_batch
from backtest.strategies import SmaCross


def _bars(n: int = 700, seed: int = 3) -> Bars:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.012, (n, 2)), axis=0))
    prev = np.vstack([close[:1], close[:-1]])
    open_ = prev * np.exp(rng.normal(0.0, 0.004, (n, 2)))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.004, (n, 2))))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.004, (n, 2))))
    index = pd.bdate_range("2015-01-01", periods=n)
    frames = {
        name: pd.DataFrame(values, index=index, columns=["A", "B"])
        for name, values in (("open", open_), ("high", high), ("low", low), ("close", close))
    }
    return Bars(**frames)


SETS = pd.DataFrame(
    [
        (fast, slow, offset, valid)
        for fast, slow in ((5, 20), (10, 40), (20, 60))
        for offset in (0.0, 0.01)
        for valid in (2, 5)
    ],
    columns=["fast", "slow", "engine.entry_offset", "engine.entry_valid_bars"],
)


@pytest.mark.parametrize("execution", ["close", "next_open"])
def test_any_chunking_gives_each_set_the_numbers_it_has_alone(execution: str) -> None:
    bars = _bars()
    options = dict(
        entry_order="stop", sizing="risk", risk_per_trade=0.01, stop_loss=0.04,
        max_weight=0.6, execution=execution, fee_bps=3.0, check_lookahead=False,
    )  # fmt: skip
    whole = simulate_batch(bars, SmaCross, SETS, keep_returns=True, **options)
    assert whole.returns is not None and (whole.metrics["n_trades"] > 0).all()
    for chunk in (1, 5):
        cut = simulate_batch(bars, SmaCross, SETS, keep_returns=True, chunk_size=chunk, **options)
        pd.testing.assert_frame_equal(cut.metrics, whole.metrics, check_exact=True)
        assert np.array_equal(cut.returns, whole.returns)
    for i in (0, 7, len(SETS) - 1):  # one set alone: a chunk of one, a single lane
        alone = simulate_batch(bars, SmaCross, SETS.iloc[[i]], keep_returns=True, **options)
        row = alone.metrics.iloc[0]
        expected = whole.metrics.iloc[i]
        assert np.array_equal(row.to_numpy(dtype=float), expected.to_numpy(dtype=float),
                              equal_nan=True)  # fmt: skip
        assert np.array_equal(alone.returns[:, 0], whole.returns[:, i])
