"""Sessions: flat at each session's end and time stops counted in sessions, on 1-minute bars.

The engine against the plain loop of ``tests/reference_orders.py`` (which derives sessions
from the calendar day of each bar itself), single and batched, and the property the option
exists for: with ``flat_at_session_end`` no position is held over any overnight gap, with
either execution.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.data import Bars
from backtest.engine import simulate, simulate_batch
from backtest.errors import ConfigError
from backtest.strategies import SmaCross
from tests.engine_reference import schedule
from tests.reference_exits import Rules
from tests.reference_orders import Orders, units_with_orders
from tests.test_orders import _compare


def minutes(days: int = 12, per_day: int = 60, assets: int = 2, seed: int = 4) -> Bars:
    """1-minute bars from 09:30, ``per_day`` a session, business days, gaps overnight."""
    rng = np.random.default_rng(seed)
    index = pd.DatetimeIndex(
        np.concatenate(
            [
                pd.date_range(day + pd.Timedelta("09:30:00"), periods=per_day, freq="min")
                for day in pd.bdate_range("2024-03-04", periods=days)
            ]
        )
    )
    n = len(index)
    step = rng.normal(0.0, 0.002, (n, assets))
    first = np.r_[True, index.normalize()[1:] != index.normalize()[:-1]]
    step[first] += rng.normal(0.0, 0.01, (first.sum(), assets))  # the overnight gaps
    close = 100 * np.exp(np.cumsum(step, axis=0))
    prev = np.vstack([close[:1], close[:-1]])
    open_ = prev * np.exp(np.where(first[:, None], step * 0.8, rng.normal(0, 0.0005, close.shape)))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.001, close.shape)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.001, close.shape)))
    cols = [f"S{j}" for j in range(assets)]

    def frame(v: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(v, index=index, columns=cols)

    return Bars(close=frame(close), open=frame(open_), high=frame(high), low=frame(low))


def _held_overnight(res, bars: Bars) -> int:  # type: ignore[no-untyped-def]
    """Positions held at the close of a session's last bar (before a gap), over assets."""
    day = bars.index.normalize()
    last = np.r_[day[1:] != day[:-1], False]
    assert res.weights is not None
    return int((res.weights.to_numpy()[last] != 0).sum())


@pytest.mark.parametrize("execution", ["close", "next_open"])
@pytest.mark.parametrize("kind", ["market", "stop"])
def test_flat_at_session_end_holds_nothing_over_a_gap(execution: str, kind: str) -> None:
    bars = minutes()
    strategy = SmaCross(3, 12, long_short=True)
    orders = {} if kind == "market" else {"entry_offset": 0.0005, "entry_valid_bars": 5}
    common = dict(execution=execution, entry_order=kind, fee_bps=1.0, **orders)
    held = simulate(bars, strategy, **common)
    assert _held_overnight(held, bars) > 5  # without the option, positions cross the gaps
    flat = simulate(bars, strategy, flat_at_session_end=True, **common)
    assert _held_overnight(flat, bars) == 0
    closed = flat.trades[~flat.trades["is_open"]]
    same_day = closed["entry_time"].dt.normalize() == closed["exit_time"].dt.normalize()
    assert same_day.all()
    ends = closed[closed["exit_reason"] == "session_end"]
    assert len(ends) >= 5
    day = bars.index.normalize()
    last = pd.Series(bars.index).groupby(day).max()
    before_last = pd.Series(bars.index).groupby(day).apply(lambda s: s.iloc[-2])
    want = (last if execution == "close" else before_last).to_numpy()
    # decided at the session's last close, or one bar before it with next_open
    decided = (
        ends["exit_time"]
        if execution == "close"
        else ends["exit_time"].map(lambda t: bars.index[bars.index.get_loc(t) - 1])
    )
    assert np.isin(decided.to_numpy(), want).all()


CASES = {
    "close-market": ("close", "market", 0.0, None, 0, "bars"),
    "next_open-limit": ("next_open", "limit", 0.001, 4, 0, "bars"),
    "close-stop-max2sessions": ("close", "stop", 0.0005, 6, 2, "sessions"),
    "next_open-market-max1session": ("next_open", "market", 0.0, None, 1, "sessions"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_sessions_equal_reference_loop(case: str) -> None:
    execution, kind, offset, valid, max_bars, unit = CASES[case]
    flat = max_bars == 0
    bars = minutes(days=8, per_day=45, seed=9)
    strategy = SmaCross(8, 60, long_short=True) if max_bars else SmaCross(3, 10, long_short=True)
    stop = 0.03 if max_bars else 0.004
    extra = {} if kind == "market" else {"entry_offset": offset, "entry_valid_bars": valid}
    if max_bars:
        extra.update(max_bars=max_bars, max_bars_unit=unit)
    res = simulate(
        bars, strategy, fee_bps=4.0, slippage_bps=2.0, execution=execution, entry_order=kind,
        flat_at_session_end=flat, stop_loss=stop, **extra,
    )  # fmt: skip
    close = bars.close
    signal = strategy.positions(close).to_numpy()
    arrays = [getattr(bars, k).to_numpy() for k in ("open", "high", "low", "close")]
    returns, trades = units_with_orders(
        *arrays, signal / 2, signal, schedule(close.index, "bar"), 0.0006,
        Rules(stop_loss=stop, max_bars=max_bars), Orders(kind, offset, valid,
        flat_at_session_end=flat, max_bars_unit=unit), execution == "next_open",
        days=list(close.index.normalize()),
    )  # fmt: skip
    _compare(res, returns, trades, close.index)
    reasons = set(res.trades["exit_reason"])
    assert ("session_end" in reasons) == flat
    assert ("max_bars" in reasons) == bool(max_bars)


def test_batched_equals_single_with_session_columns() -> None:
    bars = minutes(days=6, per_day=40, seed=2)
    sets = pd.DataFrame(
        {
            "fast": [3, 4, 3],
            "slow": [10, 12, 10],
            "long_short": [True, True, False],
            "engine.flat_at_session_end": [True, False, True],
            "engine.entry_order": ["market", "limit", "stop"],
            "engine.entry_offset": [0.0, 0.001, 0.0005],
        }
    )
    batch = simulate_batch(bars, SmaCross, sets, fee_bps=2.0, execution="next_open",
                           keep_returns=True)  # fmt: skip
    assert batch.returns is not None
    for i, row in sets.iterrows():
        opts = {"flat_at_session_end": bool(row["engine.flat_at_session_end"]),
                "entry_order": row["engine.entry_order"]}  # fmt: skip
        if row["engine.entry_order"] != "market":
            opts["entry_offset"] = row["engine.entry_offset"]
        one = simulate(
            bars, SmaCross(int(row["fast"]), int(row["slow"]), long_short=bool(row["long_short"])),
            fee_bps=2.0, execution="next_open", **opts,
        )  # fmt: skip
        np.testing.assert_allclose(batch.returns[:, i], one.returns.to_numpy(), atol=1e-9, rtol=0)


def test_session_options_refused_where_they_cannot_act() -> None:
    daily = Bars(close=pd.DataFrame({"A": np.linspace(100, 110, 40)},
                                    index=pd.bdate_range("2024-01-01", periods=40)))  # fmt: skip
    with pytest.raises(ConfigError, match="intraday") as info:
        simulate(daily, SmaCross(3, 10), flat_at_session_end=True, check_lookahead=False)
    assert info.value.key == "engine.flat_at_session_end"
    with pytest.raises(ConfigError, match="max_bars") as info:
        simulate(minutes(days=2), SmaCross(3, 10), max_bars_unit="sessions",
                 check_lookahead=False)  # fmt: skip
    assert info.value.key == "engine.max_bars_unit"
    with pytest.raises(ConfigError) as info:
        simulate(minutes(days=2), SmaCross(3, 10), max_bars_unit="days", check_lookahead=False)
    assert info.value.key == "engine.max_bars_unit"
