"""Bad dates, round two: numbers, mixed UTC offsets, naive mixed with aware."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from backtest.data import read_prices
from backtest.errors import DataValidationError


def write(tmp_path: Path, dates: list[object], name: str = "px.csv") -> Path:
    path = tmp_path / name
    pd.DataFrame({"Day": dates, "SPY": [100.0 + i for i in range(len(dates))]}).to_csv(
        path, index=False
    )
    return path


def test_integer_dates_are_refused_without_a_format_or_unit(tmp_path: Path) -> None:
    path = write(tmp_path, [20240102, 20240103, 20240104])
    with pytest.raises(DataValidationError, match=r"column 'Day' holds numbers") as info:
        read_prices(path, columns={"date": "Day"})
    assert info.value.column == "Day"
    assert "data.date_format='%Y%m%d'" in str(info.value) and "data.date_unit" in str(info.value)


def test_integer_dates_with_a_format_or_a_unit_are_read_as_such(tmp_path: Path) -> None:
    ymd = read_prices(
        write(tmp_path, [20240102, 20240103]), columns={"date": "Day"}, date_format="%Y%m%d"
    )
    assert list(ymd.index) == [pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03")]
    epoch = [1704153600, 1704240000]  # 2024-01-02 and -03 00:00 UTC, in seconds
    secs = read_prices(write(tmp_path, epoch, "e.csv"), columns={"date": "Day"}, date_unit="s")
    assert list(secs.index) == list(ymd.index)


def test_mixed_utc_offsets_name_the_column_and_the_offsets(tmp_path: Path) -> None:
    path = write(tmp_path, ["2024-01-02T00:00:00+01:00", "2024-07-02T00:00:00+02:00"])
    with pytest.raises(DataValidationError, match=r"column 'Day' mixes UTC offsets") as info:
        read_prices(path, columns={"date": "Day"})
    assert "+01:00, +02:00" in str(info.value) and info.value.column == "Day"


def test_naive_mixed_with_aware_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, ["2024-01-02T00:00:00+01:00", "2024-01-03", "2024-01-04"])
    with pytest.raises(DataValidationError, match=r"mixes timezone-aware dates \(1, first") as info:
        read_prices(path, columns={"date": "Day"})
    assert "naive ones (2, first '2024-01-03')" in str(info.value)
    assert "unparseable" not in str(info.value)
