"""Price loading, synthetic prices, validation and repairs, fingerprints."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest.config import DataConfig, DataLayout, DataSource, RepairMode
from backtest.data import (
    data_fingerprint,
    load_prices,
    read_prices,
    sample_prices,
    synthetic_prices,
    validate_prices,
)
from backtest.errors import ConfigError, DataValidationError

DAYS = pd.bdate_range("2024-01-01", periods=6, name="date")
# What every loader returns: ns timestamps named "date", no freq.
NS_DAYS = pd.DatetimeIndex(DAYS.as_unit("ns").to_numpy(), name="date")


def _wide(**overrides: list[float]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"A": [10.0, 10.5, 10.2, 10.8, 11.0, 11.1], "B": [50.0, 49.0, 49.5, 50.5, 51.0, 52.0]},
        index=DAYS,
    )
    for column, values in overrides.items():
        frame[column] = values
    return frame


def _duplicated() -> pd.DataFrame:
    frame = _wide()
    return frame.set_axis(DAYS[[0, 1, 2, 2, 3, 3]], axis=0)


def _unsorted() -> pd.DataFrame:
    return _wide().set_axis(DAYS[[0, 1, 3, 2, 4, 5]], axis=0)


def _high_low() -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    closes = _wide()
    high, low = closes * 1.01, closes * 0.99
    high.iloc[[2, 4], 1] = low.iloc[[2, 4], 1] - 0.5  # B: high below low on two bars
    return closes, {"high": high, "low": low}


NAN = float("nan")
BAD_FRAMES: list[tuple[str, Callable[[], object], str | None, object, int, str]] = [
    # id, builder -> frame or (frame, ohlc), column, first timestamp, count, message part
    ("nan", lambda: _wide(A=[10.0, NAN, 10.2, NAN, 11.0, 11.1]), "A", DAYS[1], 2, "NaN"),
    ("zero-price", lambda: _wide(B=[50.0, 49.0, 0.0, 50.5, -1.0, 52.0]), "B", DAYS[2], 2,
     "non-positive"),
    ("high-below-low", _high_low, "B", DAYS[2], 2, "high < low"),
    ("duplicate-timestamps", _duplicated, "index", DAYS[2], 2, "duplicate"),
    ("unsorted-timestamps", _unsorted, "index", DAYS[2], 1, "unsorted"),
    ("non-numeric", lambda: _wide(A=["10", "10.5", "n/a", "10.8", "x", "11.1"]), "A", DAYS[2], 2,
     "non-numeric"),
    ("empty", lambda: _wide().iloc[:0], None, None, 0, "no prices"),
    ("no-columns", lambda: _wide()[[]], None, None, 0, "no prices"),
    ("integer-index", lambda: _wide().reset_index(drop=True), "index", None, 6, "DatetimeIndex"),
    ("nat-in-index", lambda: _wide().set_axis(pd.DatetimeIndex([*DAYS[:5], pd.NaT]), axis=0),
     "index", None, 1, "NaT"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("builder", "column", "timestamp", "count", "message"),
    [case[1:] for case in BAD_FRAMES],
    ids=[case[0] for case in BAD_FRAMES],
)
def test_bad_data_is_refused(builder, column, timestamp, count, message) -> None:
    built = builder()
    frame, ohlc = built if isinstance(built, tuple) else (built, None)
    with pytest.raises(DataValidationError, match=message) as info:
        validate_prices(frame, ohlc=ohlc)
    error = info.value
    assert (error.column, error.timestamp, error.count) == (column, timestamp, count)
    text = str(error)
    if column is not None:
        assert repr(column) in text or f"{column}:" in text
    if timestamp is not None:
        assert str(timestamp) in text
    if count:
        assert str(count) in text


def _write(path: Path, frame: pd.DataFrame) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def _long_table() -> pd.DataFrame:
    rows = []
    for symbol, base in (("BBB", 50.0), ("AAA", 10.0)):
        for i, day in enumerate(DAYS):
            close = base + i
            rows.append((day.strftime("%Y-%m-%d"), symbol, close, close + 1, close - 1, close, 100))
    return pd.DataFrame(rows, columns=["date", "symbol", "open", "high", "low", "close", "volume"])


BAD_FILES = [
    ("unparseable-date", "date", "2024-13-45", 1, "unparseable"),
    ("missing-close", "close", None, 0, "required column 'close'"),
    ("duplicate-date-symbol", "date", DAYS[3], 1, "duplicate"),
    ("unsorted-within-symbol", "AAA", DAYS[2], 1, "unsorted"),
]


@pytest.mark.parametrize(
    ("defect", "column", "timestamp", "count", "message"),
    BAD_FILES,
    ids=[case[0] for case in BAD_FILES],
)
def test_bad_files_are_refused(tmp_path, defect, column, timestamp, count, message) -> None:
    table = _long_table()
    if defect == "unparseable-date":
        table.loc[8, "date"] = "2024-13-45"
    elif defect == "missing-close":
        table = table.drop(columns=["close"])
    elif defect == "duplicate-date-symbol":
        table = pd.concat([table, table.iloc[[9]]], ignore_index=True)
    else:  # swap two AAA rows
        table.iloc[[8, 9]] = table.iloc[[9, 8]].to_numpy()
    path = _write(tmp_path / "prices.csv", table)
    with pytest.raises(DataValidationError, match=message) as info:
        read_prices(path, layout="long")
    assert (info.value.column, info.value.timestamp, info.value.count) == (column, timestamp, count)
    if timestamp is not None:
        assert str(timestamp) in str(info.value)


def test_high_below_low_in_a_long_file(tmp_path) -> None:
    table = _long_table()
    table.loc[2, "high"] = table.loc[2, "low"] - 1  # BBB on the third day
    path = _write(tmp_path / "prices.parquet", table)
    with pytest.raises(DataValidationError, match="high < low") as info:
        read_prices(path)
    error = info.value
    assert (error.column, error.symbol, error.timestamp, error.count) == ("high", "BBB", DAYS[2], 1)


# --- repairs ------------------------------------------------------------------------------


def _messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "backtest.data"]


def test_ffill_repairs_and_logs(caplog) -> None:
    frame = _wide(A=[NAN, 10.5, NAN, NAN, 11.0, 11.1], B=[50.0, 49.0, 49.5, -2.0, 51.0, 52.0])
    with caplog.at_level(logging.WARNING, logger="backtest.data"):
        out = validate_prices(frame, repair=RepairMode.ffill)
    # issue 25: A's leading NaN means "not listed yet": kept, no row dropped
    assert list(out.index) == list(DAYS)
    assert out["A"].tolist()[1:] == [10.5, 10.5, 10.5, 11.0, 11.1]
    assert np.isnan(out["A"].iloc[0])
    assert out["B"].tolist() == [50.0, 49.0, 49.5, 49.5, 51.0, 52.0]
    logs = _messages(caplog)
    assert any("'A'" in m and "2 NaN" in m and str(DAYS[2]) in m for m in logs), logs
    assert any("'B'" in m and "1 non-positive" in m and str(DAYS[3]) in m for m in logs), logs
    assert not any("leading row" in m for m in logs), logs


def test_drop_repairs_and_logs(caplog) -> None:
    frame = _wide(A=[10.0, NAN, 10.2, 10.8, 11.0, 11.1], B=[50.0, 49.0, 49.5, 0.0, 51.0, 52.0])
    with caplog.at_level(logging.WARNING, logger="backtest.data"):
        out = validate_prices(frame, repair="drop")
    assert list(out.index) == list(DAYS[[0, 2, 4, 5]])
    logs = _messages(caplog)
    assert any("dropped" in m and "'A'" in m and str(DAYS[1]) in m for m in logs), logs
    assert any("dropped" in m and "'B'" in m and str(DAYS[3]) in m for m in logs), logs


def test_repair_drops_high_below_low_bars(caplog) -> None:
    closes, ohlc = _high_low()
    with caplog.at_level(logging.WARNING, logger="backtest.data"):
        out = validate_prices(closes, repair=RepairMode.drop, ohlc=ohlc)
    assert list(out.index) == list(DAYS[[0, 1, 3, 5]])
    assert any("high < low" in m and "'B'" in m for m in _messages(caplog))


@pytest.mark.parametrize("mode", [RepairMode.ffill, RepairMode.drop], ids=["ffill", "drop"])
def test_repair_sorts_and_deduplicates_with_a_log(caplog, mode) -> None:
    frame = _wide().set_axis(DAYS[[0, 2, 1, 2, 3, 4]], axis=0)  # unsorted and a repeat
    with caplog.at_level(logging.WARNING, logger="backtest.data"):
        out = validate_prices(frame, repair=mode)
    assert list(out.index) == list(DAYS[:5])
    # Stable sort, then the first row of the repeated DAYS[2] (10.5, not 10.8) is kept.
    assert out["A"].tolist() == [10.0, 10.2, 10.5, 11.0, 11.1]
    logs = _messages(caplog)
    assert any("sorted" in m and "1 unsorted" in m for m in logs), logs
    assert any("1 duplicate" in m and str(DAYS[2]) in m for m in logs), logs


def test_clean_data_is_not_touched(caplog) -> None:
    frame = _wide()
    with caplog.at_level(logging.DEBUG, logger="backtest.data"):
        out = validate_prices(frame, repair=RepairMode.ffill)
    assert _messages(caplog) == []
    pd.testing.assert_frame_equal(out, frame.set_axis(NS_DAYS, axis=0))


# --- files --------------------------------------------------------------------------------


def _expected_wide() -> pd.DataFrame:
    return pd.DataFrame(
        {"AAA": 10.0 + np.arange(6), "BBB": 50.0 + np.arange(6)},
        index=NS_DAYS,
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet"], ids=["csv", "parquet"])
@pytest.mark.parametrize("layout", ["long", "wide", "auto"])
def test_file_round_trip_with_mapped_columns(tmp_path, suffix, layout) -> None:
    expected = _expected_wide()
    if layout == "wide":
        table = expected.rename_axis("Date").reset_index()
        table["Date"] = table["Date"].dt.strftime("%Y-%m-%d")
    else:
        table = _long_table().rename(
            columns={"date": "Date", "symbol": "Ticker", "close": "Adj Close", "open": "Open"}
        )
        table["close"] = -1.0  # an unmapped raw close column that must not be used
    path = _write(tmp_path / f"prices{suffix}", table)
    columns = {"date": "Date", "close": "Adj Close", "symbol": "Ticker", "open": "Open"}
    out = read_prices(path, layout=layout, columns=columns)
    pd.testing.assert_frame_equal(out, expected)
    assert out.index.name == "date"


def test_parquet_with_a_datetime_index(tmp_path) -> None:
    expected = _expected_wide()
    path = tmp_path / "wide.parquet"
    expected.to_parquet(path)  # the date stays the index in the file
    pd.testing.assert_frame_equal(read_prices(path, layout=DataLayout.wide), expected)


def test_symbol_and_date_filters(tmp_path) -> None:
    path = _write(tmp_path / "p.csv", _long_table())
    out = read_prices(path, symbols=["BBB"], start="2024-01-02", end=str(DAYS[3].date()))
    assert list(out.columns) == ["BBB"]
    assert list(out.index) == list(DAYS[1:4])
    with pytest.raises(ConfigError, match="ZZZ") as info:
        read_prices(path, symbols=["ZZZ"])
    assert info.value.key == "data.symbols"
    with pytest.raises(ConfigError, match="cannot parse") as info:
        read_prices(path, start="not a date")
    assert info.value.key == "data.start"


def test_missing_file_names_the_path(tmp_path) -> None:
    missing = tmp_path / "nowhere" / "prices.csv"
    with pytest.raises(DataValidationError, match="nowhere"):
        read_prices(missing)
    config = DataConfig(source=DataSource.parquet, path=str(missing))
    with pytest.raises(DataValidationError, match=str(missing).replace("\\", "\\\\")):
        load_prices(config)
    with pytest.raises(ConfigError) as info:
        load_prices(DataConfig(source=DataSource.csv))
    assert info.value.key == "data.path"


def test_load_prices_dispatches_on_source(tmp_path) -> None:
    path = _write(tmp_path / "p.csv", _long_table())
    from_file = load_prices(DataConfig(source=DataSource.csv, path=str(path), symbols=["AAA"]))
    assert list(from_file.columns) == ["AAA"]
    synthetic = load_prices(DataConfig(n_bars=50, n_assets=3, seed=5, end="2010-01-29"))
    pd.testing.assert_frame_equal(synthetic, synthetic_prices(50, 3, seed=5).loc[:"2010-01-29"])
    sample = load_prices(DataConfig(source=DataSource.sample, start="2018-01-01"))
    assert list(sample.columns) == ["NASDAQ", "SP500"]
    assert sample.index[0] == pd.Timestamp("2018-01-02")


# --- the shipped sample ---------------------------------------------------------------------


def test_sample_matches_its_source() -> None:
    from arch.data import nasdaq, sp500

    prices = sample_prices()
    assert list(prices.columns) == ["NASDAQ", "SP500"]
    assert prices.index[0] == pd.Timestamp("2008-01-02")
    assert prices.index[-1] == pd.Timestamp("2018-12-31")
    assert prices.index.is_monotonic_increasing
    assert prices.dtypes.eq(np.float64).all()
    for symbol, module in (("SP500", sp500), ("NASDAQ", nasdaq)):
        source = module.load().loc["2008":"2018", "Close"]
        np.testing.assert_allclose(prices[symbol].to_numpy(), source.to_numpy(), atol=0.005)
    size = Path(str(resources.files("backtest.data") / "sample.csv"))
    assert size.stat().st_size < 500_000


def test_sample_has_valid_ohlc() -> None:
    path = Path(str(resources.files("backtest.data") / "sample.csv"))
    raw = pd.read_csv(path)
    assert list(raw.columns) == ["date", "symbol", "open", "high", "low", "close", "volume"]
    assert (raw["high"] >= raw["low"]).all()
    assert (raw["high"] >= raw[["open", "close"]].max(axis=1)).all()


# --- synthetic prices -----------------------------------------------------------------------


@pytest.mark.parametrize("regimes", [True, False], ids=["regimes", "gbm"])
def test_synthetic_is_reproducible_and_seed_dependent(regimes) -> None:
    a = synthetic_prices(300, 3, regimes=regimes, seed=42)
    b = synthetic_prices(300, 3, regimes=regimes, seed=np.random.default_rng(42))
    c = synthetic_prices(300, 3, regimes=regimes, seed=43)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a.to_numpy(), c.to_numpy())
    assert list(a.columns) == ["SYN0", "SYN1", "SYN2"]
    assert a.index.name == "date"
    assert (a.index.day_of_week < 5).all()
    assert a.index[0] == pd.Timestamp("2010-01-04")
    assert (a.iloc[0] == 100.0).all()
    assert (a > 0).all().all()
    validate_prices(a)


def test_gbm_log_returns_have_the_configured_moments() -> None:
    n, k, drift, vol = 20_001, 4, 0.0002, 0.01
    prices = synthetic_prices(n, k, drift=drift, volatility=vol, regimes=False, seed=42)
    log_returns = np.diff(np.log(prices.to_numpy()), axis=0)
    samples = log_returns.size
    assert abs(log_returns.mean() - drift) < 4 * vol / np.sqrt(samples)
    assert abs(log_returns.std(ddof=1) - vol) < 4 * vol / np.sqrt(2 * samples)
    # The documented algorithm exactly, so other code (benchmarks) can rely on it.
    draws = np.random.default_rng(42).normal(drift, vol, size=(n - 1, k))
    np.testing.assert_allclose(log_returns, draws, atol=1e-12)


def _autocorrelation_and_variance_ratio(prices: pd.DataFrame, horizon: int = 60):
    log_prices = np.log(prices.to_numpy())
    r = np.diff(log_prices, axis=0)
    autocorr = np.mean([np.corrcoef(r[1:, a], r[:-1, a])[0, 1] for a in range(r.shape[1])])
    long = log_prices[horizon:] - log_prices[:-horizon]
    ratio = np.mean(long.var(axis=0) / (horizon * r.var(axis=0)))
    return autocorr, ratio


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_regimes_trend_and_revert(seed) -> None:
    # Trending stretches make 60-bar moves larger than iid noise would (variance ratio
    # above 1, what momentum exploits); mean-reverting stretches make consecutive
    # returns negatively correlated (what mean reversion exploits). GBM has neither.
    autocorr, ratio = _autocorrelation_and_variance_ratio(synthetic_prices(seed=seed))
    assert autocorr < -0.03
    assert ratio > 1.25
    autocorr, ratio = _autocorrelation_and_variance_ratio(
        synthetic_prices(regimes=False, seed=seed)
    )
    assert abs(autocorr) < 0.03
    assert 0.75 < ratio < 1.25


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"n_bars": 0}, "n_bars"),
        ({"n_assets": 0}, "n_assets"),
        ({"start_price": 0.0}, "start_price"),
    ],
    ids=["no-bars", "no-assets", "zero-price"],
)
def test_synthetic_rejects_bad_parameters(kwargs, key) -> None:
    with pytest.raises(ConfigError) as info:
        synthetic_prices(**kwargs)
    assert info.value.key == key


# --- fingerprint ----------------------------------------------------------------------------


def test_fingerprint_is_stable_across_processes() -> None:
    prices = synthetic_prices(500, 3, seed=42)
    code = (
        "from backtest.data import synthetic_prices, data_fingerprint;"
        "print(data_fingerprint(synthetic_prices(500, 3, seed=42)))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert other == data_fingerprint(prices) == data_fingerprint(prices.copy())
    assert len(other) == 64
    assert int(other, 16) >= 0


def test_fingerprint_changes_with_any_change() -> None:
    prices = synthetic_prices(200, 2, seed=1)
    base = data_fingerprint(prices)
    value = prices.copy()
    value.iloc[123, 1] = np.nextafter(value.iloc[123, 1], np.inf)
    stamp = prices.set_axis(
        prices.index.where(prices.index != prices.index[50], pd.Timestamp("2011-01-01")), axis=0
    )
    renamed = prices.rename(columns={"SYN1": "OTHER"})
    shorter = prices.iloc[:-1]
    prints = {base} | {data_fingerprint(f) for f in (value, stamp, renamed, shorter)}
    assert len(prints) == 5
