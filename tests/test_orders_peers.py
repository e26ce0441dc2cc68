"""Limit and stop entries with sl/tp against backtesting.py 0.6.6 on its GOOG sample.

backtesting.py is driven by the same decisions as the engine (the target of a long/short
``SmaCross`` on GOOG), and its broker does the rest: the limit and stop fills (gaps
included), the sl/tp exits, the fills of the market exits. Times and prices of every
closed trade must agree (its whole-share sizing aside, so returns are not compared).

Its conventions, and how this test aligns them (README "Entry orders and sizing"):

* ``trade_on_close=False``: market orders fill at the next open (ours: ``next_open``); with
  ``trade_on_close=True`` it fills a stop entry at ``max(previous close, stop)``, not at the
  open, so only ``next_open`` is comparable;
* its orders never expire: the strategy cancels one after ``entry_valid_bars`` bars in
  ``next()``, and cancels it when the target leaves the order's side (our one rule);
* ``sl``/``tp`` given to ``buy()`` are levels fixed from the order price, not the fill, and
  (except a take-profit inside a stop entry's bar) not checked on the entry bar: here they
  are set on the trade after its fill (``trade.sl = fill x (1 - sl)``), from the fill, and
  checked from the next bar, as ours;
* a market exit decided at a close fills at the next open before the bar's sl/tp can
  trigger (ours); backtesting.py checks the older sl order first, so the strategy drops a
  trade's sl/tp when it decides to close it;
* after an exit by sl/tp it stays flat until the target changes (our ``signal_change``);
* trades still open at the end are not compared (it closes them at the last bar).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from backtest.engine import simulate
from backtest.strategies import SmaCross
from tests.peer_trades import Fixed, assert_same_trades, goog_sample

bt = pytest.importorskip("backtesting")
pytestmark = pytest.mark.slow


def _theirs(goog: pd.DataFrame, target: np.ndarray, kind: str, offset: float,
            valid: int | None, sl: float, tp: float) -> pd.DataFrame:  # fmt: skip
    """backtesting.py's trades for the decisions ``target`` (one value per bar)."""

    class Orders(bt.Strategy):  # type: ignore[misc, name-defined]
        def init(self) -> None:
            self.working = None  # (order, side, decision bar)
            self.current = None  # the trade we hold
            self.stop_lock = None  # flat after a sl/tp exit while the target is this
            self.expiry_lock = None  # flat after an expiry while the target is this

        def _levels(self, trade) -> None:  # type: ignore[no-untyped-def]
            side = 1 if trade.is_long else -1
            trade.sl = trade.entry_price * (1 - side * sl)
            trade.tp = trade.entry_price * (1 + side * tp)

        def next(self) -> None:
            i = len(self.data) - 1
            sig = float(target[i])
            prev = float(target[i - 1])
            if self.working is not None:
                order, side, dec = self.working
                if order not in self.orders:  # filled in this bar
                    self.current = self.trades[-1]
                    self._levels(self.current)
                    self.working = None
                elif valid is not None and i - dec >= valid:
                    order.cancel()
                    self.working = None
                    self.expiry_lock = prev
            if self.current is not None and self.current not in self.trades:
                self.current = None  # closed by its sl or tp in this bar
                self.stop_lock = prev
            w = sig
            for lock in ("stop_lock", "expiry_lock"):
                value = getattr(self, lock)
                if value is not None:
                    if sig == value:
                        w = 0.0
                    else:
                        setattr(self, lock, None)
            side = int(np.sign(w))
            held = int(np.sign(self.position.size))
            if self.working is not None and self.working[1] != side:
                self.working[0].cancel()
                self.working = None
            if held != 0 and side != held:
                for trade in self.trades:
                    trade.sl = None
                    trade.tp = None
                self.position.close()
                self.current = None
            if side != 0 and side != held and self.working is None:
                close = self.data.Close[-1]
                if kind == "limit":
                    level = close * (1 - side * offset)
                    args = {"limit": level}
                else:
                    level = close * (1 + side * offset)
                    args = {"stop": level}
                order = self.buy(**args) if side > 0 else self.sell(**args)
                self.working = (order, side, i)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = bt.Backtest(goog, Orders, cash=1_000_000, commission=0.0).run()
    return stats["_trades"].sort_values("EntryTime").reset_index(drop=True)


CASES = {
    "limit-1%-5bars": ("limit", 0.01, 5, 0.04, 0.08),
    "limit-0.5%-gtc": ("limit", 0.005, None, 0.05, 0.06),
    "stop-0.5%-3bars": ("stop", 0.005, 3, 0.04, 0.08),
    "stop-1%-gtc": ("stop", 0.01, None, 0.03, 0.1),
}


@pytest.mark.parametrize("case", list(CASES))
def test_limit_and_stop_entries_equal_backtesting_py_on_goog(case: str) -> None:
    kind, offset, valid, sl, tp = CASES[case]
    goog, bars = goog_sample()
    target = SmaCross(10, 30, long_short=True).positions(bars.close)
    res = simulate(
        bars, Fixed(target), execution="next_open", entry_order=kind, entry_offset=offset,
        entry_valid_bars=valid, stop_loss=sl, take_profit=tp, check_lookahead=False,
    )  # fmt: skip
    theirs = _theirs(goog, target["GOOG"].to_numpy(), kind, offset, valid, sl, tp)
    last = bars.index[-1]
    ours = res.trades[~res.trades["is_open"]].reset_index(drop=True)
    theirs = theirs[pd.DatetimeIndex(theirs["ExitTime"]) < last].reset_index(drop=True)
    assert len(ours) > 20
    assert_same_trades(ours, theirs)
    assert (np.sign(theirs["Size"]).to_numpy() == ours["direction"].to_numpy()).all()
    # the cases exercise what they claim: both sides, stops, gaps through the level
    assert set(ours["direction"]) == {-1, 1}
    assert {"stop_loss", "take_profit", "signal"} <= set(ours["exit_reason"])
    opens = bars.open["GOOG"].loc[ours["entry_time"]].to_numpy()
    assert (ours["entry_price"].to_numpy() == opens).any()  # a gap filled at the open
    assert (ours["entry_price"].to_numpy() != opens).any()  # a touch filled at the level
