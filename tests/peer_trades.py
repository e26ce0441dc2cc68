"""What the tests against backtesting.py share: given targets, its GOOG sample, its trades.

backtesting.py is imported inside the functions: a test module that needs it skips
itself with ``pytest.importorskip("backtesting")`` first.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from backtest.data import Bars


@dataclasses.dataclass(frozen=True, eq=False)
class Fixed:
    """A strategy whose targets are given (one column per asset)."""

    target: pd.DataFrame

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        return self.target.loc[prices.index, prices.columns]


def goog_sample() -> tuple[pd.DataFrame, Bars]:
    """backtesting.py's ``GOOG`` sample, as it is and as our bars (one asset, ``GOOG``)."""
    from backtesting.test import GOOG

    index = pd.DatetimeIndex(GOOG.index)
    frames = {
        k: pd.DataFrame({"GOOG": GOOG[k.capitalize()].to_numpy(float)}, index=index)
        for k in ("open", "high", "low", "close")
    }
    return GOOG, Bars(
        close=frames["close"], open=frames["open"], high=frames["high"], low=frames["low"]
    )


def assert_same_trades(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    """Our closed trades are backtesting.py's ``_trades``: entry and exit bars and prices."""
    assert len(ours) == len(theirs)
    assert (ours["entry_time"].to_numpy() == pd.DatetimeIndex(theirs["EntryTime"]).to_numpy()).all()
    assert (ours["exit_time"].to_numpy() == pd.DatetimeIndex(theirs["ExitTime"]).to_numpy()).all()
    np.testing.assert_allclose(ours["entry_price"], theirs["EntryPrice"], rtol=1e-12)
    np.testing.assert_allclose(ours["exit_price"], theirs["ExitPrice"], rtol=1e-12)
