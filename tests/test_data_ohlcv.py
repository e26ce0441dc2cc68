"""OHLCV validated like closes: every defect of open/high/low/close/volume is named or repaired."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest.config import DataConfig, DataSource, RepairMode
from backtest.data import Bars, load_bars, read_prices
from backtest.data._files import read_bars
from backtest.data._validate import validate_bars
from backtest.errors import DataValidationError, describe

DAYS = pd.bdate_range("2024-01-01", periods=8, name="date")
NAN, INF = float("nan"), float("inf")


def _long_table() -> pd.DataFrame:
    """Two symbols of clean bars: open = previous close, high/low 1 above/below."""
    rows = []
    for symbol, base in (("AAA", 10.0), ("BBB", 50.0)):
        for i, day in enumerate(DAYS):
            close = base + i + (0.5 if i % 2 else 0.0)
            opened = base + i - 1 if i else close
            high, low = max(opened, close) + 1.0, min(opened, close) - 1.0
            rows.append((day.strftime("%Y-%m-%d"), symbol, opened, high, low, close, 1000.0 + i))
    return pd.DataFrame(rows, columns=["date", "symbol", "open", "high", "low", "close", "volume"])


def _row(table: pd.DataFrame, symbol: str, day: int) -> int:
    return int(table.index[(table["symbol"] == symbol) & (table["date"] == table["date"][day])][0])


# id, {(symbol, day): {field: value}}, column, symbol, first day, count, message part
DEFECTS = [
    ("open-zero", {("BBB", 3): {"open": 0.0}, ("BBB", 5): {"open": 0.0}}, "open", "BBB", 3, 2,
     "non-positive"),
    ("open-negative", {("AAA", 2): {"open": -1.0}}, "open", "AAA", 2, 1, "non-positive"),
    ("open-nan", {("AAA", 4): {"open": NAN}}, "open", "AAA", 4, 1, r"missing \(NaN\)"),
    ("high-inf", {("BBB", 1): {"high": INF}}, "high", "BBB", 1, 1, "infinite"),
    ("low-negative", {("AAA", 6): {"low": -3.0}}, "low", "AAA", 6, 1, "non-positive"),
    ("close-inf", {("BBB", 2): {"close": INF}}, "BBB", None, 2, 1, "infinite price"),
    ("close-above-high", {("AAA", 3): {"close": 20.0}}, "close", "AAA", 3, 1, "above the high"),
    ("close-below-low", {("BBB", 4): {"close": 40.0}}, "close", "BBB", 4, 1, "below the low"),
    ("high-below-low", {("AAA", 5): {"high": 10.0, "low": 20.0}}, "high", "AAA", 5, 1,
     "high < low"),
    ("volume-negative", {("BBB", 6): {"volume": -5.0}, ("BBB", 7): {"volume": -1.0}}, "volume",
     "BBB", 6, 2, "negative volume"),
]  # fmt: skip


def _defective(tmp_path: Path, changes: dict) -> Path:
    table = _long_table()
    for (symbol, day), values in changes.items():
        for field, value in values.items():
            table.loc[_row(table, symbol, day), field] = value
    path = tmp_path / "prices.csv"
    table.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("changes", "column", "symbol", "day", "count", "message"),
    [case[1:] for case in DEFECTS],
    ids=[case[0] for case in DEFECTS],
)
def test_each_ohlcv_defect_is_a_named_error(
    tmp_path, changes, column, symbol, day, count, message
) -> None:
    path = _defective(tmp_path, changes)
    with pytest.raises(DataValidationError, match=message) as info:
        read_prices(path)
    error = info.value
    assert (error.column, error.symbol, error.timestamp, error.count) == (
        column,
        symbol,
        DAYS[day],
        count,
    )
    text = describe(error)
    assert str(DAYS[day]) in text and repr(symbol or column) in text
    assert "data.repair=ffill" in text and "data.repair=drop" in text  # the fix is named


def test_the_clean_table_passes_untouched(tmp_path, caplog) -> None:
    path = _defective(tmp_path, {})
    with caplog.at_level(logging.DEBUG, logger="backtest.data"):
        bars = read_bars(path)
    assert [r for r in caplog.records if r.name == "backtest.data"] == []
    table = _long_table()
    for field in ("open", "high", "low", "close", "volume"):
        expected = table.pivot(index="date", columns="symbol", values=field)  # noqa: PD010
        np.testing.assert_array_equal(getattr(bars, field).to_numpy(), expected.to_numpy())


def _ffill_reference(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The documented ffill repairs, bar by bar, symbol by symbol (a plain loop)."""

    def bad(x: float) -> bool:
        return not math.isfinite(x) or x <= 0.0

    out: dict[str, dict[str, list[float]]] = {f: {} for f in ("open", "high", "low", "volume")}
    for symbol, rows in table.groupby("symbol", sort=True):
        rows = rows.sort_values("date")
        prev_close, prev_volume = None, 0.0
        for _, r in rows.iterrows():
            c, o, h, lo, v = r["close"], r["open"], r["high"], r["low"], r["volume"]
            if bad(o):
                o = prev_close if prev_close is not None else c
            if not bad(h) and not bad(lo) and h < lo:
                h, lo = max(o, c), min(o, c)
            if bad(h):
                h = max(o, c)
            if bad(lo):
                lo = min(o, c)
            h, lo = max(h, c), min(lo, c)
            if not math.isfinite(v) or v < 0:
                v = prev_volume
            for field, value in (("open", o), ("high", h), ("low", lo), ("volume", v)):
                out[field].setdefault(symbol, []).append(value)
            prev_close, prev_volume = c, v
    return {f: pd.DataFrame(cols, index=DAYS) for f, cols in out.items()}


ALL_BAR_DEFECTS = {
    ("AAA", 1): {"open": 0.0, "volume": NAN},
    ("AAA", 3): {"close": 20.0},
    ("AAA", 5): {"high": 10.0, "low": 20.0},
    ("BBB", 0): {"open": NAN},
    ("BBB", 2): {"low": -1.0, "volume": -4.0},
    ("BBB", 4): {"close": 40.0},
    ("BBB", 6): {"high": INF},
}


def test_ffill_repairs_every_defect_as_documented(tmp_path, caplog) -> None:
    path = _defective(tmp_path, ALL_BAR_DEFECTS)
    with caplog.at_level(logging.WARNING, logger="backtest.data"):
        bars = read_bars(path, repair=RepairMode.ffill)
    table = pd.read_csv(path)
    expected = _ffill_reference(table)
    for field, frame in expected.items():
        np.testing.assert_allclose(getattr(bars, field).to_numpy(), frame.to_numpy(), err_msg=field)
    assert len(bars) == len(DAYS)  # nothing dropped
    logs = [r.getMessage() for r in caplog.records if r.name == "backtest.data"]
    for field, symbol in (("open", "AAA"), ("close", "AAA"), ("low", "BBB"), ("volume", "BBB")):
        assert any(f"column {field!r} of symbol {symbol!r}" in m for m in logs), (field, logs)


def test_drop_removes_every_bar_with_a_defect(tmp_path, caplog) -> None:
    path = _defective(tmp_path, ALL_BAR_DEFECTS)
    with caplog.at_level(logging.WARNING, logger="backtest.data"):
        bars = read_bars(path, repair="drop")
    assert list(bars.index) == [DAYS[7]]  # every other day has a defect in one symbol
    assert bars.open is not None and bars.volume is not None
    assert all("dropped" in r.getMessage() for r in caplog.records if r.name == "backtest.data")


def test_a_filled_close_makes_a_flat_bar(tmp_path, caplog) -> None:
    path = _defective(tmp_path, {("AAA", 3): {"close": NAN}})
    with caplog.at_level(logging.WARNING, logger="backtest.data"):
        bars = read_bars(path, repair="ffill")
    day = DAYS[3]
    close = bars.close.loc[day, "AAA"]
    assert close == _long_table()["close"][2]  # the previous close
    assert bars.open.loc[day, "AAA"] == bars.high.loc[day, "AAA"] == bars.low.loc[day, "AAA"]
    assert bars.open.loc[day, "AAA"] == close and bars.volume.loc[day, "AAA"] == 0.0
    assert any("flat bar" in r.getMessage() for r in caplog.records)


def test_validate_bars_checks_python_bars_too() -> None:
    idx = pd.DatetimeIndex(DAYS[:3])
    close = pd.DataFrame({"X": [10.0, 11.0, 12.0]}, index=idx)
    volume = pd.DataFrame({"X": [1.0, -2.0, 3.0]}, index=idx)
    with pytest.raises(DataValidationError, match="negative volume") as info:
        validate_bars(Bars(close, volume=volume))
    assert (info.value.column, info.value.symbol, info.value.count) == ("volume", "X", 1)
    repaired = validate_bars(Bars(close, volume=volume), repair="ffill")
    assert repaired.volume is not None
    assert repaired.volume["X"].tolist() == [1.0, 1.0, 3.0]


def _config(path: Path) -> dict:
    from dataclasses import asdict

    from backtest.config import EngineConfig, QueueConfig, SearchConfig, TrackingConfig

    engine = asdict(EngineConfig())
    engine["execution"] = "next_open"
    return {
        "name": "ohlcv",
        "seed": 0,
        "summary": False,
        "figures": False,
        "report": False,
        "data": {**asdict(DataConfig(source=DataSource.csv, path=str(path))), "source": "csv"},
        "strategy": {"_target_": "backtest.strategies.BuyAndHold"},
        "engine": engine,
        "search": asdict(SearchConfig()),
        "tracking": asdict(TrackingConfig(enabled=False)),
        "queue": asdict(QueueConfig()),
    }


def _json_safe(config: dict) -> dict:
    import json

    return json.loads(json.dumps(config, default=lambda v: getattr(v, "name", str(v))))


def test_a_zero_open_with_next_open_fills_is_refused_before_anything_runs(tmp_path) -> None:
    # Buy and hold enters at the second bar's open: today that open = 0 divides by zero.
    path = _defective(tmp_path, {("AAA", 1): {"open": 0.0}})
    from backtest.tasks import run_backtest
    from backtest.tasks._jobs import BacktestJob

    run_dir = tmp_path / "run"
    job = BacktestJob(config=_json_safe(_config(path)), result_path=str(run_dir))
    with pytest.raises(DataValidationError, match="column 'open' of symbol 'AAA'") as info:
        run_backtest(job)
    assert info.value.timestamp == DAYS[1]
    assert not run_dir.exists()  # refused before anything ran or was written


def test_a_missing_open_with_next_open_fills_is_refused_with_the_fix(tmp_path) -> None:
    # No open column at all (a wide file): next_open fills have no price to fill at.
    wide = _long_table().pivot(index="date", columns="symbol", values="close")  # noqa: PD010
    path = tmp_path / "wide.csv"
    wide.reset_index().to_csv(path, index=False)
    from backtest.tasks import run_backtest
    from backtest.tasks._jobs import BacktestJob

    config = _config(path)
    config["data"]["layout"] = "wide"
    job = BacktestJob(config=_json_safe(config), result_path=str(tmp_path / "run"))
    with pytest.raises(DataValidationError, match="'open'") as info:
        run_backtest(job)
    assert "next_open" in str(info.value) and "long file with open" in str(info.value)
    # and NaN opens in a file that has them are refused too, not filled from the close
    path = _defective(tmp_path, {("BBB", 2): {"open": NAN}})
    job = BacktestJob(config=_json_safe(_config(path)), result_path=str(tmp_path / "run2"))
    with pytest.raises(DataValidationError, match="missing") as info:
        run_backtest(job)
    assert (info.value.column, info.value.symbol) == ("open", "BBB")


def test_load_bars_and_load_prices_agree_after_a_repair(tmp_path) -> None:
    path = _defective(tmp_path, {("AAA", 2): {"open": -1.0}})
    config = DataConfig(source=DataSource.csv, path=str(path), repair=RepairMode.drop)
    bars = load_bars(config)
    from backtest.data import load_prices

    pd.testing.assert_frame_equal(bars.close, load_prices(config))
    assert DAYS[2] not in bars.index
