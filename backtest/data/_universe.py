"""Listings, delistings and point-in-time membership: which asset may be held on which bar.

A price panel's column may start late and end early: its **leading NaNs** mean the asset
is not listed yet, its **trailing NaNs** that it has delisted. Both are data, not errors
(:func:`listed_span`); a NaN *inside* an asset's life (between its first and its last
price) stays an error (:func:`~backtest.data.validate_prices` names it and what each
repair would do, in bars).

A membership table (``data.universe``: a CSV or Parquet file with columns ``symbol,
start, end``, one row per spell, dates inclusive, an empty ``end`` = still a member)
narrows the tradable set further: an asset is tradable on a bar when it is listed (a
finite close) *and* inside one of its spells; an asset without a row is never
tradable. :func:`read_universe` turns it into the ``tradable`` frame of
:class:`~backtest.data.Bars`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from backtest.data._bars import FIELDS, UNIVERSE_FIELDS, Bars
from backtest.data._reading import check_readable, read_table
from backtest.errors import ConfigError, DataValidationError


def listed_span(values: np.ndarray) -> np.ndarray:
    """``(n, a)`` booleans: True from an asset's first to its last non-NaN value (inclusive).

    Examples:
        >>> listed_span(np.array([[np.nan], [1.0], [np.nan], [2.0], [np.nan]])).ravel().tolist()
        [False, True, True, True, False]
    """
    present = ~np.isnan(values)
    after_first = np.logical_or.accumulate(present, axis=0)
    before_last = np.logical_or.accumulate(present[::-1], axis=0)[::-1]
    return after_first & before_last


def listing_counts(close: pd.DataFrame) -> tuple[int, int]:
    """``(assets that list late, assets that delist early)`` of wide closes.

    An asset without any price in the data counts as listing late (after the data ends).
    """
    present = close.notna().to_numpy()
    if present.shape[0] == 0:
        return 0, 0
    late = int((~present[0]).sum())
    early = int((~present[-1] & present.any(axis=0)).sum())
    return late, early


def universe_summary(bars: object) -> str | None:
    """The one line a run logs about its universe, or ``None`` for a full panel.

    ``"3 assets list late, 2 delist early; trading only while listed"``, plus the
    membership table's effect when ``tradable`` narrows it further.

    Examples:
        >>> from backtest.data import Bars
        >>> idx = pd.date_range("2024-01-01", periods=3)
        >>> close = pd.DataFrame({"A": [1.0, 2.0, np.nan], "B": [np.nan, 1.0, 1.0]}, index=idx)
        >>> universe_summary(Bars(close))
        '1 asset lists late, 1 delists early; trading only while listed'
    """
    close = bars.close  # type: ignore[attr-defined]
    late, early = listing_counts(close)
    parts = []
    if late or early:
        parts.append(
            f"{late} asset{'s' if late != 1 else ''} list{'' if late != 1 else 's'} late, "
            f"{early} delist{'' if early != 1 else 's'} early; trading only while listed"
        )
    tradable = getattr(bars, "tradable", None)
    if tradable is not None:
        listed = np.isfinite(close.to_numpy(dtype=np.float64))
        cut = listed & ~tradable.to_numpy(dtype=bool)
        if cut.any():
            assets = int(cut.any(axis=0).sum())
            parts.append(
                f"the membership table excludes {assets} asset(s) on {int(cut.sum())} listed "
                "asset-bar(s)"
            )
    return "; ".join(parts) or None


def read_universe(path: str | Path, close: pd.DataFrame, *, subset: bool = False) -> pd.DataFrame:
    """A membership table as the ``tradable`` frame of ``close`` (bool, listed cells only).

    Args:
        path: CSV or Parquet file with columns ``symbol, start, end`` (``end`` may be
            empty: a member to the end of the data). Dates are inclusive; several rows
            per symbol are several spells.
        close: The validated wide closes whose index and symbols the table refers to.
        subset: The data were narrowed to some symbols (``data.symbols``): rows of other
            symbols are ignored instead of refused.

    Returns:
        Booleans of ``close``'s shape: a member on that bar and listed (finite close).

    Raises:
        ConfigError: the file is missing or unreadable, a column is missing, a symbol
            is not in the data, a date does not parse or a spell ends before it starts
            (each names ``data.universe``, the row and the fix).
    """
    key = "data.universe"
    table = _table(path, key, read_table)
    for column in ("symbol", "start", "end"):
        if column not in table.columns:
            raise ConfigError(
                f"{key}: column {column!r} missing from {str(path)!r} (columns: "
                f"{list(map(str, table.columns))}); the table needs symbol, start, end "
                "(end empty while still a member)",
                key=key,
            )
    symbols = table["symbol"].astype(str).str.strip().to_numpy()
    known = {str(c) for c in close.columns}
    unknown = sorted({s for s in symbols if s not in known})
    if unknown and not subset:
        raise ConfigError(
            f"{key}: symbol(s) {unknown[:5]} of {str(path)!r} are not in the data "
            f"(symbols: {sorted(known)[:10]}{' ...' if len(known) > 10 else ''}); remove those "
            "rows or load their prices",
            key=key,
        )
    start = _dates(table["start"], "start", path, key, required=True)
    end = _dates(table["end"], "end", path, key, required=False)
    backwards = np.flatnonzero(end.notna().to_numpy() & (end < start).to_numpy())
    if len(backwards):
        i = int(backwards[0])
        raise ConfigError(
            f"{key}: row {i + 2} of {str(path)!r} ({symbols[i]}) ends on {end[i].date()} before "
            f"it starts on {start[i].date()}; swap them",
            key=key,
        )
    index = pd.DatetimeIndex(close.index)
    member = np.zeros(close.shape, dtype=bool)
    column = {str(c): j for j, c in enumerate(close.columns)}
    stamps = index.as_unit("ns").asi8
    for i, symbol in enumerate(symbols):
        if symbol not in column:
            continue
        lo = start[i].value
        hi = np.iinfo(np.int64).max if pd.isna(end[i]) else end[i].value
        member[:, column[symbol]] |= (stamps >= lo) & (stamps <= hi)
    listed = np.isfinite(close.to_numpy(dtype=np.float64))
    return pd.DataFrame(member & listed, index=close.index, columns=close.columns)


def _table(path: str | Path, key: str, reader: object) -> pd.DataFrame:
    """The file as a frame; a missing or unreadable file is a ``ConfigError`` naming ``key``.

    A CSV may hold comment lines (from ``#`` to the end of the line) and blank lines.
    """
    path = Path(path)
    try:
        check_readable(path)  # on a worker: only under its --data-root folders
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("data.path", key, 1), key=key) from exc
    if not path.is_file():
        raise ConfigError(f"{key}: file not found: {str(path)!r}", key=key)
    if path.suffix.lower() not in {".parquet", ".pq"}:
        try:
            return pd.read_csv(path, comment="#", skipinitialspace=True)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{key}: cannot read {str(path)!r} as CSV: {exc}", key=key) from exc
    try:
        return reader(path, None)  # type: ignore[operator]
    except DataValidationError as exc:
        raise ConfigError(f"{key}: {exc}", key=key) from exc


def _dates(
    values: pd.Series, name: str, path: str | Path, key: str, *, required: bool
) -> pd.Series:
    text = values.astype("string").str.strip()
    empty = text.isna() | (text == "")
    parsed = pd.to_datetime(text.where(~empty), errors="coerce")
    bad = (parsed.isna() & ~empty).to_numpy()
    if required:
        bad |= empty.to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConfigError(
            f"{key}: row {i + 2} of {str(path)!r} has {'no' if empty.iloc[i] else 'a bad'} "
            f"{name} date ({values.iloc[i]!r}); write it as YYYY-MM-DD",
            key=key,
        )
    return pd.Series(pd.DatetimeIndex(parsed).as_unit("ns"))


def refuse_empty_columns(closes: pd.DataFrame, values: np.ndarray) -> None:
    """Refuse closes without a single price in any column.

    One column without prices is an asset not listed during the data's dates (a window
    of a walk-forward may well hold one): accepted, never tradable.
    """
    if values.size and np.isnan(values).all():
        raise DataValidationError(
            f"no prices: every close of the {closes.shape[1]} column(s) is missing; check the "
            "file's close column and data.start / data.end",
            count=int(values.size),
        )


def nan_context(index: pd.Index, listed: np.ndarray, what: str) -> str:
    """For a NaN inside a listing: the listing's dates, and what NaNs at its ends mean."""
    if not what.startswith("NaN"):
        return ""
    rows = np.flatnonzero(listed)
    return (
        f", inside its listing ({index[rows[0]]} to {index[rows[-1]]}: only leading NaNs "
        "(not yet listed) and trailing NaNs (delisted) are accepted)"
    )


def repair_hint(column: object, count: int, any_bad: np.ndarray) -> str:
    """What each repair would do, in bars (neither empties nor truncates the panel)."""
    n = any_bad.shape[0]
    rows = int(any_bad.any(axis=1).sum())
    ffill = f"data.repair=ffill carries the previous close over these {count} bar(s) of {column!r}"
    others = int(any_bad.sum()) - count
    if others:
        ffill += f" (and over {others} bad value(s) of other assets)"
    if rows == n:
        drop = "data.repair=drop would drop every bar (each has a bad price in some asset)"
    else:
        drop = (
            f"data.repair=drop drops the {rows} of {n} bars that have a bad price in any "
            "asset, for every asset"
        )
    return f"{ffill}; {drop}"


def with_universe_fields(out: Bars, given: Bars) -> Bars:
    """``out`` with ``given``'s tradable, split, dividend and delist_return, on ``out``'s rows.

    Rows a repair dropped take their values with them, which is refused for an action or
    a delisting return (it would be lost silently); the fields are then checked
    (:func:`~backtest.data._universe.check_universe_fields`).
    """
    extra = {f: getattr(given, f) for f in UNIVERSE_FIELDS if getattr(given, f) is not None}
    if not extra:
        return out
    index, columns = out.close.index, out.close.columns
    fill = {"tradable": False, "split": 1.0, "dividend": 0.0, "delist_return": np.nan}
    moved = {}
    for name, frame in extra.items():
        frame = frame.copy()
        frame.columns = frame.columns.astype(str)
        frame.index = pd.DatetimeIndex(pd.DatetimeIndex(frame.index).as_unit("ns"), name="date")
        frame = frame.loc[~frame.index.duplicated(keep="first")]
        if name != "tradable":
            lost = ~frame.index.isin(index)
            values = frame.to_numpy(dtype=np.float64)[lost]
            if name != "delist_return":
                values = values[values != fill[name]]
            if np.isfinite(values).any():
                raise DataValidationError(
                    f"bars field {name!r}: a repair dropped a bar carrying a value; repair the "
                    "prices first, then attach the actions",
                    column=name,
                )
        moved[name] = frame.reindex(index=index, columns=columns, fill_value=fill[name])
        if name == "tradable":
            moved[name] = moved[name].astype(bool)
    bars = _replaced(out, **moved)
    check_universe_fields(bars)
    return bars


def _replaced(bars: Bars, **changes: object) -> Bars:
    values = {f: getattr(bars, f) for f in FIELDS + UNIVERSE_FIELDS}
    values.update(changes)
    return Bars(**values)  # type: ignore[arg-type]


def check_universe_fields(bars: Bars) -> None:
    """Refuse actions where an asset is not listed and misplaced delisting returns.

    A split (``!= 1``) or a dividend (``!= 0``) must fall on a bar where the asset has a
    price; a delisting return must sit on an asset's last listed bar, and that bar must
    come before the data's last bar (an asset still listed at the end has not delisted).

    Raises:
        DataValidationError: naming the field, the symbol, the first timestamp and the count.
    """
    if bars.split is None and bars.dividend is None and bars.delist_return is None:
        return
    close = bars.close
    listed = np.isfinite(close.to_numpy(dtype=np.float64))
    for name, none in (("split", 1.0), ("dividend", 0.0)):
        frame = getattr(bars, name)
        if frame is not None:
            _refuse(
                (frame.to_numpy(dtype=np.float64) != none) & ~listed,
                close, name, "on bar(s) where the asset has no price (not listed)",
                "move the action to a listed bar or drop it",
            )  # fmt: skip
    if bars.delist_return is not None:
        values = bars.delist_return.to_numpy(dtype=np.float64)
        last = listed & ~np.vstack([listed[1:], np.zeros((1, listed.shape[1]), dtype=bool)])
        last[-1] = False  # listed on the data's last bar: not a delisting
        _refuse(
            ~np.isnan(values) & ~last,
            close, "delist_return", "off the asset's last listed bar before the data ends",
            "a delisting return belongs on the row of the asset's last price, and only for an "
            "asset that delists within the data",
        )  # fmt: skip


def _refuse(bad: np.ndarray, close: pd.DataFrame, field: str, what: str, fix: str) -> None:
    if not bad.any():
        return
    hits = bad[:, int(np.flatnonzero(bad.any(axis=0))[0])]
    j = int(np.flatnonzero(bad.any(axis=0))[0])
    first = close.index[hits][0]
    raise DataValidationError(
        f"column {field!r} of symbol {close.columns[j]!r}: {int(hits.sum())} value(s) {what}, "
        f"first at {first}; {fix}",
        column=field,
        symbol=str(close.columns[j]),
        timestamp=first,
        count=int(hits.sum()),
    )
