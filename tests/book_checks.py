"""The engine's book against the plain per-bar loop of ``tests/engine_reference.py``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from backtest.data import Bars
from tests.engine_reference import COSTS


def assert_book_equals_reference(result: Any, ref: Any, bars: Bars) -> None:
    """Returns to 1e-9 absolute; each cost, turnover and every trade to 1e-9 relative.

    ``result`` is a :func:`~backtest.engine.simulate` result, ``ref`` what
    :func:`~tests.engine_reference.reference_backtest` gave for the same targets.
    """
    np.testing.assert_allclose(result.returns.to_numpy(), ref.returns, rtol=0, atol=1e-9)
    assert result.costs is not None
    for name in COSTS:
        np.testing.assert_allclose(
            result.costs[name].to_numpy(), [c[name] for c in ref.costs], rtol=1e-9, atol=1e-9
        )
    assert result.metrics["turnover"] == pytest.approx(ref.turnover, rel=1e-9, abs=1e-12)
    expected = sorted(ref.trades, key=lambda d: (d["entry_bar"], d["asset"]))
    trades = result.trades
    assert len(trades) == len(expected)
    idx = bars.index
    for (_, row), tr in zip(trades.iterrows(), expected, strict=True):
        assert row["asset"] == bars.symbols[tr["asset"]]
        assert row["direction"] == tr["direction"]
        assert row["entry_time"] == idx[tr["entry_bar"]]
        assert row["exit_time"] == idx[tr["exit_bar"]]
        assert row["entry_price"] == pytest.approx(tr["entry_fill"], rel=1e-12)
        assert row["exit_price"] == pytest.approx(tr["exit_fill"], rel=1e-12)
        assert row["return"] == pytest.approx(tr["ret"], rel=1e-9, abs=1e-12)
        assert row["exit_reason"] == tr["reason"]
