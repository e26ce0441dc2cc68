"""Price files (CSV / Parquet, long / wide), the shipped sample, and config dispatch."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from backtest.config import DataLayout, RepairMode
from backtest.data._bars import Bars
from backtest.data._reading import as_numbers, confine_reads, confined, read_table, shown
from backtest.data._validate import _repair_mode, logger, validate_bars
from backtest.errors import ConfigError, DataValidationError

_LONG_FIELDS = ("date", "symbol", "open", "high", "low", "close", "volume", "delist_return")
_BAR_FIELDS = ("open", "high", "low", "close", "volume")


def sample_prices(
    symbols: Sequence[str] | None = None,
    *,
    start: str | None = None,
    end: str | None = None,
) -> pd.DataFrame:
    """The shipped real daily closes of ``SP500`` and ``NASDAQ`` (2008-2018).

    Args:
        symbols: Keep only these symbols (both when omitted).
        start: First date kept (inclusive).
        end: Last date kept (inclusive).

    Returns:
        Wide closes with columns ``NASDAQ`` and ``SP500``.

    Examples:
        >>> last = sample_prices(["SP500"], start="2018-12-28")
        >>> [str(day.date()) for day in last.index], last["SP500"].tolist()
        (['2018-12-28', '2018-12-31'], [2485.74, 2506.85])
    """
    return sample_bars(symbols, start=start, end=end).close


def sample_bars(
    symbols: Sequence[str] | None = None,
    *,
    start: str | None = None,
    end: str | None = None,
    repair: RepairMode | str = RepairMode.none,
) -> Bars:
    """The shipped sample's open/high/low/close/volume (see :func:`sample_prices`)."""
    path = resources.files("backtest.data") / "sample.csv"
    previous = confine_reads(None)  # the package's own file: readable on a worker too
    try:
        with resources.as_file(path) as file:
            return read_bars(
                file, layout=DataLayout.long, symbols=symbols, start=start, end=end, repair=repair
            )
    finally:
        confine_reads(previous)


def read_prices(
    path: str | Path,
    *,
    file_format: str | None = None,
    layout: DataLayout | str = DataLayout.auto,
    columns: Mapping[str, str] | None = None,
    symbols: Sequence[str] | None = None,
    start: str | None = None,
    end: str | None = None,
    repair: RepairMode | str = RepairMode.none,
    date_format: str | None = None,
    date_unit: str | None = None,
) -> pd.DataFrame:
    """Read, validate and reshape a CSV or Parquet price file into wide closes.

    The closes of :func:`read_bars` (a long file's other fields are validated too, and
    a bar they make ``repair`` drop is dropped here as well).

    Args:
        path: A ``.csv`` (optionally compressed, e.g. ``.csv.gz``) or ``.parquet``
            file.
        file_format: ``csv`` or ``parquet``; from the file name when omitted
            (``.parquet`` / ``.pq`` is Parquet, anything else CSV).
        layout: ``long`` (one row per date and symbol with ``date, symbol, close``
            and optionally ``open, high, low, volume`` and ``delist_return``, a
            delisting return on an asset's last row), ``wide`` (a date column and one
            close column per symbol) or ``auto`` (long when a symbol column exists). An
            asset listed late or delisted early has no rows (long) or empty cells (wide)
            outside its listing: NaN there, not an error.
        columns: Our column name -> yours, e.g. ``{"date": "Date", "close":
            "Adj Close", "symbol": "Ticker"}``; unmapped names are used as is.
        symbols: Keep only these symbols (all when omitted).
        start: First date kept (inclusive), ISO format.
        end: Last date kept (inclusive), ISO format.
        repair: ``none`` refuses bad data; ``ffill`` / ``drop`` repair it and log
            every change (see :func:`validate_prices`).
        date_format: ``strftime`` format of the date column (``%Y%m%d``).
        date_unit: The dates are epoch numbers in this unit (``s``, ``ms``, ``us``,
            ``ns``, ``D``). Numbers are never taken as dates without one of the two.

    Returns:
        Wide closes: ``DatetimeIndex`` named ``date``, one float64 column per
        symbol, columns sorted; NaN outside each asset's listing.

    Raises:
        DataValidationError: The file is missing or unreadable, a required column
            is missing, or the data is bad (see :func:`validate_prices`).
        ConfigError: An unknown symbol or an unparseable ``start`` / ``end``.
    """
    return read_bars(
        path,
        file_format=file_format,
        layout=layout,
        columns=columns,
        symbols=symbols,
        start=start,
        end=end,
        repair=repair,
        date_format=date_format,
        date_unit=date_unit,
    ).close


def read_bars(
    path: str | Path,
    *,
    file_format: str | None = None,
    layout: DataLayout | str = DataLayout.auto,
    columns: Mapping[str, str] | None = None,
    symbols: Sequence[str] | None = None,
    start: str | None = None,
    end: str | None = None,
    repair: RepairMode | str = RepairMode.none,
    date_format: str | None = None,
    date_unit: str | None = None,
) -> Bars:
    """Read a price file into validated :class:`~backtest.data.Bars`, the file read once.

    A long file gives every field it has (``open``, ``high``, ``low``, ``volume``
    besides the closes), a wide file the closes only; every field is checked by
    :func:`~backtest.data.validate_bars` (and repaired as ``repair`` says). Arguments
    as for :func:`read_prices`.

    Raises:
        DataValidationError: The file is missing or unreadable, a required column
            is missing, or a field holds bad data (names the field, symbol, first
            timestamp and count).
        ConfigError: An unknown symbol or an unparseable ``start`` / ``end``.
    """
    path = Path(path)
    raw = read_table(path, file_format)
    names = {field: (columns or {}).get(field, field) for field in _LONG_FIELDS}
    layout = DataLayout(layout.value if isinstance(layout, DataLayout) else layout)
    repair = _repair_mode(repair)
    if layout is DataLayout.auto:
        layout = DataLayout.long if names["symbol"] in raw.columns else DataLayout.wide
    _require(
        raw,
        [names["date"]] + ([names["symbol"], names["close"]] if layout is DataLayout.long else []),
        path,
    )
    dates = parse_dates(raw[names["date"]], names["date"], date_format, date_unit)
    if layout is DataLayout.long:
        closes, fields = _pivot_long(raw, dates, names, repair)
    else:
        closes = raw.drop(columns=[names["date"]]).set_axis(dates, axis=0)
        closes.columns = closes.columns.astype(str)
        fields = None
    closes = closes.sort_index(axis=1)
    closes, fields = _select(closes, fields, symbols, start, end)
    return validate_bars(Bars(closes, **(fields or {})), repair=repair)


def _require(raw: pd.DataFrame, needed: list[str], path: Path) -> None:
    for name in needed:
        if name not in raw.columns:
            found = (
                f"columns: {list(map(str, raw.columns))}"
                if confined() is None
                else f"{len(raw.columns)} column(s), not named here"
            )
            raise DataValidationError(
                f"required column {name!r} missing from {str(path)!r} ({found}); map yours "
                "with data.columns",
                column=name,
            )


_UNITS = ("s", "ms", "us", "ns", "D")
_OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")
_AWARE = r"(?:Z|[+-]\d{2}:?\d{2})$"
_NUMBER = re.compile(r"[+-]?\d+(\.\d*)?")


def parse_dates(
    values: pd.Series,
    name: str,
    date_format: str | None = None,
    date_unit: str | None = None,
) -> pd.DatetimeIndex:
    """The date column as a ``DatetimeIndex``, or one error that says what is wrong.

    Numbers (``20240131``, ``1704067200``) are refused unless ``date_format`` or
    ``date_unit`` says what they are: read as nanoseconds they would silently become
    1970-01-01. Mixed UTC offsets and a mix of naive and zone-aware timestamps are
    named as such.

    Raises:
        DataValidationError: names the column, the first bad value and the fix.
        ConfigError: an unknown ``date_unit``.
    """
    if date_unit is not None and date_unit not in _UNITS:
        raise ConfigError(
            f"data.date_unit must be one of {', '.join(_UNITS)}, got {date_unit!r}",
            key="data.date_unit",
        )
    text = values.astype(str).str.strip()
    if date_unit is not None:
        parsed = pd.to_datetime(
            pd.to_numeric(values, errors="coerce"), unit=date_unit, errors="coerce"
        )
    elif date_format is not None:
        parsed = pd.to_datetime(text, format=date_format, errors="coerce")
    else:
        numeric = text.str.fullmatch(_NUMBER.pattern)
        if len(text) and numeric.all():
            raise DataValidationError(
                f"column {name!r} holds numbers, not dates (first {shown(values.iloc[0])}); say "
                "what they are: data.date_format='%Y%m%d' for 20240131, or data.date_unit="
                "s|ms|us|ns|D for epoch numbers",
                column=name,
                timestamp=values.iloc[0],
                count=len(values),
            )
        try:
            parsed = pd.to_datetime(values, errors="coerce")
        except ValueError as exc:  # pandas refuses several UTC offsets in one column
            offsets = sorted({m.group(1) for v in text if (m := _OFFSET.search(v))})
            raise DataValidationError(
                f"column {name!r} mixes UTC offsets ({shown(', '.join(offsets[:5]))}): write every "
                "date in one offset (or in UTC), e.g. convert with a spreadsheet or pandas "
                "tz_convert('UTC')",
                column=name,
                count=len(offsets),
            ) from exc
    bad = parsed.isna().to_numpy()
    if bad.any():
        aware = text.str.contains(_AWARE).to_numpy()
        if aware.any() and not aware.all():
            first_aware, first_naive = text[aware].iloc[0], text[~aware].iloc[0]
            raise DataValidationError(
                f"column {name!r} mixes timezone-aware dates ({int(aware.sum())}, first "
                f"{shown(first_aware)}) and naive ones ({int((~aware).sum())}, first "
                f"{shown(first_naive)}): write all of them with an offset, or none",
                column=name,
                timestamp=first_naive,
                count=int(min(aware.sum(), (~aware).sum())),
            )
        first = values[bad].iloc[0]
        raise DataValidationError(
            f"column {name!r}: {int(bad.sum())} unparseable date(s), first {shown(first)}",
            column=name,
            timestamp=first,
            count=int(bad.sum()),
        )
    return pd.DatetimeIndex(parsed, name="date").as_unit("ns")


def _pivot_long(
    raw: pd.DataFrame, dates: pd.DatetimeIndex, names: dict[str, str], repair: RepairMode
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame] | None]:
    fields = [f for f in (*_BAR_FIELDS, "delist_return") if names[f] in raw.columns]
    table = pd.DataFrame({f: raw[names[f]] for f in fields})
    if "delist_return" in table:  # a number on an asset's last row, else empty
        table["delist_return"] = _delist_numbers(table["delist_return"], names["delist_return"])
    table["date"] = dates
    table["symbol"] = raw[names["symbol"]].astype(str).to_numpy()
    dup = table.duplicated(["date", "symbol"]).to_numpy()
    if dup.any():
        first = table.loc[dup, "date"].iloc[0]
        msg = f"{int(dup.sum())} duplicate (date, symbol) row(s), first at {first}"
        if repair is RepairMode.none:
            raise DataValidationError(msg, column="date", timestamp=first, count=int(dup.sum()))
        logger.warning("repair=%s: dropped %s (kept the first of each)", repair.value, msg)
        table = table.loc[~dup]
    for symbol, group in table.groupby("symbol", sort=True):
        step_back = (group["date"].diff() < pd.Timedelta(0)).to_numpy()
        if step_back.any():
            first = group.loc[step_back, "date"].iloc[0]
            msg = f"{int(step_back.sum())} unsorted timestamp(s) for {symbol}, first {first}"
            if repair is RepairMode.none:
                raise DataValidationError(
                    msg, column=str(symbol), timestamp=first, count=int(step_back.sum())
                )
            logger.warning("repair=%s: sorted %s", repair.value, msg)
    # (date, symbol) pairs are unique here, so pivot (not pivot_table) cannot aggregate.
    wide = {f: table.pivot(index="date", columns="symbol", values=f) for f in fields}  # noqa: PD010
    for frame in wide.values():
        frame.columns.name = None
    others = {f: wide[f].sort_index(axis=1) for f in fields if f != "close"}
    return wide["close"], others or None


def _delist_numbers(values: pd.Series, name: str) -> pd.Series:
    return as_numbers(
        values,
        f"column {name!r}",
        "delisting return(s)",
        dated=False,
        blank_ok=True,
        hint="write a fraction such as -0.3, or leave it empty",
        column=name,
    )


def _select(
    closes: pd.DataFrame,
    ohlc: dict[str, pd.DataFrame] | None,
    symbols: Sequence[str] | None,
    start: str | None,
    end: str | None,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame] | None]:
    if symbols:
        unknown = [s for s in symbols if s not in closes.columns]
        if unknown:
            raise ConfigError(
                f"unknown symbol(s) {unknown}; available: {shown(list(closes.columns))}",
                key="data.symbols",
            )
        closes = closes[list(symbols)]
    keep = np.ones(len(closes), dtype=bool)
    for key, value in (("start", start), ("end", end)):
        if value is None:
            continue
        try:
            stamp = pd.Timestamp(value)
        except ValueError as exc:
            raise ConfigError(
                f"data.{key}: cannot parse date {value!r}", key=f"data.{key}"
            ) from exc
        keep &= (closes.index >= stamp) if key == "start" else (closes.index <= stamp)
    closes = closes.loc[keep]
    if ohlc is not None:
        ohlc = {f: frame.loc[keep, closes.columns] for f, frame in ohlc.items()}
    return closes, ohlc
