"""The engine's book against the plain per-bar loops of ``tests/engine_reference.py``,
``tests/reference_exits.py`` and ``tests/reference_orders.py``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
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


def assert_trades_equal_reference(
    result: Any, trades: list[dict[str, Any]], index: pd.Index, *extra: str
) -> None:
    """The engine's trades are the reference loop's trade dicts, to 1e-9, in time order.

    The dicts' ``asset`` (column ``j`` is symbol ``S{j}``), ``entry_bar``, ``exit_bar``
    (as timestamps of ``index``), prices, ``return`` and ``reason``; ``extra`` names more
    columns both have (a ``<name>_time`` column from the dicts' ``<name>_bar``).
    """
    want = pd.DataFrame(
        {
            "asset": [f"S{tr['asset']}" for tr in trades],
            "entry_time": index[[tr["entry_bar"] for tr in trades]],
            "exit_time": index[[tr["exit_bar"] for tr in trades]],
            "entry_price": [tr["entry_price"] for tr in trades],
            "exit_price": [tr["exit_price"] for tr in trades],
            "return": [tr["return"] for tr in trades],
            "exit_reason": [tr["reason"] for tr in trades],
            **{
                name: (
                    index[[tr[name.removesuffix("_time") + "_bar"] for tr in trades]]
                    if name.endswith("_time")
                    else [tr[name] for tr in trades]
                )
                for name in extra
            },
        }
    )
    key = ["entry_time", "asset", "exit_time"]
    want = want.sort_values(key, kind="stable").reset_index(drop=True)
    got = result.trades.sort_values(key, kind="stable").reset_index(drop=True)
    assert len(got) == len(want)
    pd.testing.assert_frame_equal(
        got[list(want.columns)], want, check_dtype=False, rtol=1e-9, atol=1e-9
    )
