"""Stop trades against the peers: vectorbt's from_signals and backtesting.py's sl=/tp= orders.

Aligned conventions (both peers): fills at the signal bar's close (vectorbt's default;
backtesting.py with ``trade_on_close=True``); stops active from the next bar; triggered
by the bar's low/high; filled at the level, or at the open when the bar opens through it;
a bar reaching both a stop-loss and a take-profit takes the stop-loss; no costs.

Where they differ (not compared):

* vectorbt (this version) has one stop-loss per column, fixed or trailing; a fixed and a
  trailing stop together need ``adjust_sl_func_nb`` (done here as in benchmarks/stops.py).
  Its stop exit replaces that bar's signals, which is our ``stop_reentry = next_bar`` for
  level signals (``entries = fast > slow``) and our ``signal_change`` for crossover events.
* backtesting.py sizes in whole shares of 99.99% of equity, so its returns differ from
  ours (fractions of equity); entry/exit times, prices and the kind of exit agree. It
  keeps the last trade open (ours is marked to the last close with reason ``end``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from backtest.config import DataConfig, DataSource
from backtest.data import Bars, load_bars
from backtest.engine import simulate
from backtest.strategies import SmaCross
from tests.peer_trades import Fixed, assert_same_trades, goog_sample

pytestmark = pytest.mark.slow  # vectorbt compiles per signature: seconds per test


def _vbt():  # type: ignore[no-untyped-def]
    """vectorbt, imported by the tests that call it (the others' processes skip its import)."""
    return pytest.importorskip("vectorbt")


@pytest.fixture(scope="module")
def sample() -> Bars:
    return load_bars(DataConfig(source=DataSource.sample))


def _one(bars: Bars, symbol: str) -> Bars:
    def pick(frame: pd.DataFrame | None) -> pd.DataFrame | None:
        return None if frame is None else frame[[symbol]]

    return Bars(
        close=bars.close[[symbol]],
        open=pick(bars.open),
        high=pick(bars.high),
        low=pick(bars.low),
    )


def _vbt_trades(bars: Bars, entries, exits, short: bool = False, **stops) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    col = bars.symbols[0]
    # Long and short signals (vectorbt's "LS mode"), never entries + direction: vectorbt maps
    # direction="longonly" to long entries/exits and "shortonly" to short ones (its
    # simulate_from_signals_nb), and every call here then passes the same argument types,
    # so numba compiles that function once per process, not once per form (5 s each).
    none = pd.Series(False, index=entries.index)
    long, short_ = ((none, none), (entries, exits)) if short else ((entries, exits), (none, none))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = _vbt().Portfolio.from_signals(
            bars.close[col],
            *long,
            short_entries=short_[0],
            short_exits=short_[1],
            open=bars.open[col],
            high=bars.high[col],
            low=bars.low[col],
            freq="1D",
            **stops,
        )
        rec = pf.trades.records_readable
    return pd.DataFrame(
        {
            "entry_time": pd.to_datetime(rec["Entry Timestamp"]).to_numpy(),
            "exit_time": pd.to_datetime(rec["Exit Timestamp"]).to_numpy(),
            "entry_price": rec["Avg Entry Price"].to_numpy(),
            "exit_price": rec["Avg Exit Price"].to_numpy(),
            "is_open": (rec["Status"] == "Open").to_numpy(),
        }
    ), pf


def _ours(res) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    t = res.trades.reset_index(drop=True)
    return t[["entry_time", "exit_time", "entry_price", "exit_price", "is_open", "exit_reason"]]


def _compare(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    assert len(ours) == len(theirs) > 5
    for col in ("entry_time", "exit_time"):
        assert (ours[col].to_numpy() == theirs[col].to_numpy()).all(), col
    for col in ("entry_price", "exit_price"):
        np.testing.assert_allclose(ours[col], theirs[col], rtol=1e-12, err_msg=col)


STOP_CASES = [
    pytest.param({"stop_loss": 0.03}, {"sl_stop": 0.03}, id="sl"),
    pytest.param({"take_profit": 0.04}, {"tp_stop": 0.04}, id="tp"),
    pytest.param({"trailing_stop": 0.05}, {"sl_stop": 0.05, "sl_trail": True}, id="tsl"),
    pytest.param(
        {"stop_loss": 0.02, "take_profit": 0.05},
        {"sl_stop": 0.02, "tp_stop": 0.05},
        id="sl-tp",
    ),
    pytest.param(
        {"trailing_stop": 0.04, "take_profit": 0.08},
        {"sl_stop": 0.04, "sl_trail": True, "tp_stop": 0.08},
        id="tsl-tp",
    ),
]


@pytest.mark.parametrize(("ours_stops", "vbt_stops"), STOP_CASES)
@pytest.mark.parametrize("symbol", ["NASDAQ", "SP500"])
def test_level_signals_with_stops_equal_vectorbt(
    sample: Bars, symbol: str, ours_stops: dict, vbt_stops: dict
) -> None:
    """Long while fast > slow; vectorbt re-enters the bar after a stop = our next_bar."""
    bars = _one(sample, symbol)
    strategy = SmaCross(10, 40)
    res = simulate(bars, strategy, stop_reentry="next_bar", **ours_stops)
    entries = strategy.positions(bars.close)[symbol] > 0
    theirs, pf = _vbt_trades(bars, entries, ~entries, **vbt_stops)
    ours = _ours(res)
    _compare(ours, theirs)
    # stops were exercised; every other exit is at that bar's close
    stopped = ours["exit_reason"].isin(["stop_loss", "take_profit", "trailing_stop"]).to_numpy()
    assert stopped.sum() > 3
    close = bars.close[symbol].loc[ours["exit_time"]].to_numpy()
    assert (ours["exit_price"].to_numpy()[~stopped] == close[~stopped]).all()
    # no costs: same equity
    np.testing.assert_allclose(res.equity.iloc[-1], pf.value().iloc[-1] / pf.init_cash, rtol=1e-9)


@pytest.mark.parametrize("symbol", ["NASDAQ", "SP500"])
def test_crossover_events_equal_vectorbt_signal_change(sample: Bars, symbol: str) -> None:
    """Entries only at the cross: after a stop, flat until the next cross = signal_change."""
    bars = _one(sample, symbol)
    strategy = SmaCross(10, 40)
    res = simulate(bars, strategy, stop_loss=0.03, take_profit=0.06)
    above = strategy.positions(bars.close)[symbol] > 0
    cross_up = above & ~above.shift(1, fill_value=False)
    cross_down = ~above & above.shift(1, fill_value=False)
    theirs, _ = _vbt_trades(bars, cross_up, cross_down, sl_stop=0.03, tp_stop=0.06)
    _compare(_ours(res), theirs)


@pytest.mark.parametrize("symbol", ["NASDAQ", "SP500"])
def test_short_stops_equal_vectorbt(sample: Bars, symbol: str) -> None:
    bars = _one(sample, symbol)
    below = SmaCross(10, 40, long_short=True).positions(bars.close)[symbol] < 0
    target = pd.DataFrame({symbol: -below.astype(float)})
    res = simulate(bars, Fixed(target), stop_loss=0.03, take_profit=0.05, stop_reentry="next_bar")
    theirs, _ = _vbt_trades(bars, below, ~below, short=True, sl_stop=0.03, tp_stop=0.05)
    _compare(_ours(res), theirs)


def test_stop_loss_and_trailing_stop_together_equal_vectorbt(sample: Bars) -> None:
    from numba import njit

    @njit
    def stop_and_trail(c, sl, tsl):  # type: ignore[no-untyped-def]
        level = max(c.init_price * (1.0 - sl), c.curr_price * (1.0 - tsl))
        return 1.0 - level / c.curr_price, True

    bars = _one(sample, "NASDAQ")
    strategy = SmaCross(10, 40)
    res = simulate(bars, strategy, stop_loss=0.02, trailing_stop=0.04, stop_reentry="next_bar")
    entries = strategy.positions(bars.close)["NASDAQ"] > 0
    theirs, _ = _vbt_trades(
        bars,
        entries,
        ~entries,
        sl_stop=0.02,
        sl_trail=True,
        adjust_sl_func_nb=stop_and_trail,
        adjust_sl_args=(0.02, 0.04),
    )
    ours = _ours(res)
    _compare(ours, theirs)
    assert {"stop_loss", "trailing_stop"} <= set(ours["exit_reason"])


# ------------------------------------------------------------------ backtesting.py


def test_sl_tp_orders_equal_backtesting_py_on_goog() -> None:
    bt = pytest.importorskip("backtesting")
    from backtesting.lib import crossover
    from backtesting.test import GOOG, SMA

    sl, tp = 0.04, 0.08

    class Cross(bt.Strategy):  # type: ignore[misc, name-defined]
        def init(self) -> None:
            self.fast = self.I(SMA, self.data.Close, 10)
            self.slow = self.I(SMA, self.data.Close, 40)

        def next(self) -> None:
            price = self.data.Close[-1]
            if crossover(self.fast, self.slow):
                self.buy(sl=price * (1 - sl), tp=price * (1 + tp))
            elif crossover(self.slow, self.fast):
                self.position.close()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = bt.Backtest(GOOG, Cross, cash=1_000_000, commission=0.0, trade_on_close=True).run()
    theirs = stats["_trades"].sort_values("EntryTime").reset_index(drop=True)

    bars = goog_sample()[1]
    # backtesting.py's crossover() needs a cross: the run already above at warm-up is skipped
    # (the previous bar's averages must exist)
    close = bars.close["GOOG"]
    fast, slow = close.rolling(10).mean(), close.rolling(40).mean()
    above = SmaCross(10, 40).positions(bars.close)["GOOG"] > 0
    crossed = (above & (fast.shift(1) < slow.shift(1))).cumsum() > 0
    target = pd.DataFrame({"GOOG": (above & crossed).astype(float)})
    res = simulate(bars, Fixed(target), stop_loss=sl, take_profit=tp)
    ours = res.trades[~res.trades["is_open"]].reset_index(drop=True)
    assert len(theirs) > 10
    assert_same_trades(ours, theirs)
    reasons = set(ours["exit_reason"])
    assert {"stop_loss", "take_profit", "signal"} <= reasons


@pytest.mark.parametrize("symbol", ["NASDAQ", "SP500"])
def test_a_stop_on_the_bar_the_signal_flips_reverses_here_and_waits_in_vectorbt(
    sample: Bars, symbol: str
) -> None:
    """The documented difference (README, "Checked against the peers"), long and short.

    When a stop closes a trade on the bar whose close flips a crossover signal, the engine
    opens the opposite side at that close (the signal is the signal, the stop only ended
    the old trade); vectorbt places one order per bar, so its stop exit replaces the bar's
    signal and it waits for the next crossover. vectorbt never opens a trade on a bar where
    a stop closed one; the engine does, exactly on those flips, hence its extra trades.
    """
    bars = _one(sample, symbol)
    strategy = SmaCross(fast=5, slow=20, long_short=True)
    res = simulate(bars, strategy, fee_bps=0, slippage_bps=0, stop_loss=0.03)
    ours = res.trades.reset_index(drop=True)
    pos = strategy.positions(bars.close)[symbol]
    before = pos.shift(1).fillna(0.0)
    up, down = (pos > 0) & (before <= 0), (pos < 0) & (before >= 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = _vbt().Portfolio.from_signals(
            bars.close[symbol], up, down, short_entries=down, short_exits=up,
            open=bars.open[symbol], high=bars.high[symbol], low=bars.low[symbol],
            sl_stop=0.03, freq="1D",
        )  # fmt: skip
        rec = pf.trades.records_readable
    theirs_entries = set(pd.to_datetime(rec["Entry Timestamp"]))
    signal = up | down
    exits = pd.to_datetime(rec["Exit Timestamp"])
    theirs_stopped = {t for t in exits if not signal[t]}  # closed on a bar with no signal
    assert not theirs_entries & theirs_stopped  # vectorbt never enters on its stop's bar
    stopped = ours[ours["exit_reason"] == "stop_loss"]
    reversals = ours[ours["entry_time"].isin(stopped["exit_time"])]
    assert len(reversals) > 0 and len(ours) > len(rec)
    for _, trade in reversals.iterrows():
        (old,) = stopped[stopped["exit_time"] == trade["entry_time"]].itertuples()
        assert trade["direction"] == -old.direction  # the opposite side ...
        assert np.sign(pos[trade["entry_time"]]) == trade["direction"]  # ... the flipped signal
