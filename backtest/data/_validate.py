"""Validation (and logged repair) of wide closes and of whole OHLCV bars."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

from backtest.config import RepairMode
from backtest.data._bars import Bars
from backtest.data._reading import as_numbers
from backtest.data._universe import (
    listed_span,
    nan_context,
    refuse_empty_columns,
    repair_hint,
    with_universe_fields,
)
from backtest.errors import ConfigError, DataValidationError

logger = logging.getLogger("backtest.data")


def _repair_mode(repair: RepairMode | str) -> RepairMode:
    try:
        return RepairMode(repair.value if isinstance(repair, RepairMode) else repair)
    except ValueError as exc:
        raise ConfigError(f"unknown repair mode {repair!r}", key="data.repair") from exc


def validate_prices(
    frame: pd.DataFrame,
    *,
    repair: RepairMode | str = RepairMode.none,
    ohlc: Mapping[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Check wide closes (and OHLC, when given); refuse or repair bad data.

    Checked, in order: an empty frame; an index that is not a ``DatetimeIndex`` or
    holds unparseable dates (NaT); non-numeric prices; duplicate timestamps;
    unsorted timestamps; a column without any price; NaN prices inside an asset's
    listing; infinite prices; prices ``<= 0``; ``high < low``.
    (:func:`validate_bars` checks the opens, highs, lows and volumes as well.)

    Listings are data: a column's **leading** NaNs mean the asset is not listed yet, its
    **trailing** NaNs that it has delisted; both are kept as NaN (the asset is not
    tradable there). A NaN between an asset's first and last price is an error whose
    message says what each repair would do, in bars.

    Repairs (each logged as a warning on the ``backtest.data`` logger with the
    column, the count and the first timestamp; nothing is repaired silently):

    * ``ffill`` and ``drop`` both sort the timestamps and drop repeated ones,
      keeping the first row of each.
    * ``ffill`` treats NaN (inside a listing), infinite and non-positive prices and bars
      with ``high < low`` as missing and carries the asset's previous close forward,
      inside its listing only: no row is dropped and nothing is filled after a delisting.
      A bad value that opens a listing has nothing to carry: the asset lists from its
      next good close (logged).
    * ``drop`` drops every row with a bad value in any column (never a row where an
      asset is merely not listed).

    Args:
        frame: Wide closes, one column per symbol, indexed by timestamp.
        repair: ``none`` (default) raises on the first defect; ``ffill`` or ``drop``.
        ohlc: Optional wide ``open``/``high``/``low`` frames aligned with ``frame``;
            when ``high`` and ``low`` are given, a bar with ``high < low`` is bad.

    Returns:
        The closes as float64 with a ``DatetimeIndex`` named ``date`` (ns), sorted
        and unique, positive and finite inside every listing, NaN outside it.

    Raises:
        DataValidationError: With ``column`` (a symbol, or ``"index"``),
            ``timestamp`` (the first bad one) and ``count`` set.

    Examples:
        >>> idx = pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04"])
        >>> validate_prices(pd.DataFrame({"A": [1.0, 2.0, float("nan")]}, index=idx))["A"].tolist()
        [1.0, 2.0, nan]
        >>> validate_prices(pd.DataFrame({"A": [1.0, float("nan"), 2.0]}, index=idx))
        Traceback (most recent call last):
        ...
        backtest.errors.DataValidationError: column 'A': 1 NaN price(s), first at 2024-01-03 ...
    """
    mode = _repair_mode(repair)
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise DataValidationError(f"no prices: the frame has shape {frame.shape}", count=0)
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise DataValidationError(
            f"index: must be a DatetimeIndex of bar timestamps, got {type(frame.index).__name__} "
            f"of dtype {frame.index.dtype}",
            column="index",
            count=len(frame),
        )
    nat = frame.index.isna()
    if nat.any():
        raise DataValidationError(
            f"index: {int(nat.sum())} missing or unparseable timestamp(s) (NaT)",
            column="index",
            count=int(nat.sum()),
        )
    closes = frame.copy()
    closes.columns = closes.columns.astype(str)
    for column in closes.columns:
        closes[column] = as_numbers(closes[column], f"column {column!r}", "price(s)", column=column)
    # Plain ns timestamps without a ``freq``, whatever the source, so frames compare equal.
    closes.index = pd.DatetimeIndex(closes.index.as_unit("ns").to_numpy(), name="date")
    high = _aligned(ohlc, "high", closes)
    low = _aligned(ohlc, "low", closes)
    closes, high, low = _fix_index(closes, high, low, mode)
    values = closes.to_numpy()
    refuse_empty_columns(closes, values)
    listed = listed_span(values)  # leading NaNs: not listed yet; trailing: delisted
    bad = {
        "NaN price(s)": np.isnan(values) & listed,
        "infinite price(s)": np.isinf(values),
        "non-positive price(s)": values <= 0.0,
    }
    if high is not None and low is not None:
        bad["bar(s) with high < low"] = (high < low).fillna(value=False).to_numpy(dtype=bool)
    any_bad = np.zeros(closes.shape, dtype=bool)
    for mask in bad.values():
        any_bad |= mask
    for what, mask in bad.items():
        for j, column in enumerate(closes.columns):
            hits = mask[:, j]
            if not hits.any():
                continue
            first = closes.index[hits][0]
            msg = f"column {column!r}: {int(hits.sum())} {what}, first at {first}"
            if mode is RepairMode.none:
                raise DataValidationError(
                    f"{msg}{nan_context(closes.index, listed[:, j], what)}; "
                    f"{repair_hint(column, int(hits.sum()), any_bad)}",
                    column=column,
                    timestamp=first,
                    count=int(hits.sum()),
                )
            action = "forward-filled" if mode is RepairMode.ffill else "dropped rows with"
            logger.warning("repair=%s: %s %s", mode.value, action, msg)
    if any_bad.any():
        if mode is RepairMode.ffill:
            # carried forward inside each listing only: no row is dropped, nothing after a
            # delisting is filled (that would hold a dead asset at its last price)
            closes = closes.mask(any_bad).ffill().where(listed)
            unfilled = np.isnan(closes.to_numpy()) & listed
            if unfilled.any():
                logger.warning(
                    "repair=ffill: %d bad value(s) open their asset's listing and have no "
                    "earlier close to carry: those assets list from their first good close",
                    int(unfilled.sum()),
                )
        else:
            keep = ~any_bad.any(axis=1)
            if not keep.any():
                raise DataValidationError(
                    "no bars left: every bar has a bad price in some asset; use "
                    "data.repair=ffill, or data.symbols to leave out the assets at fault",
                    count=0,
                )
            closes = closes.loc[keep]
        return validate_prices(closes, repair=RepairMode.none)
    return closes


# What each repair does to a bad value of a field other than the close (the message's fix).
_FIXES = {
    "open": "data.repair=ffill opens such a bar at the previous close",
    "high": "data.repair=ffill sets the bar's high and low from its open and close",
    "low": "data.repair=ffill sets the bar's high and low from its open and close",
    "close": "data.repair=ffill widens the bar's high or low to its close",
    "volume": "data.repair=ffill carries the previous bar's volume forward",
}


def validate_bars(bars: Bars, *, repair: RepairMode | str = RepairMode.none) -> Bars:
    """Check every field of OHLCV bars, the closes first; refuse or repair bad data.

    The closes are checked by :func:`validate_prices`; the other fields follow its
    index (sorted, repeats dropped, rows dropped by a repair). A bar whose close a
    repair filled in has no trustworthy open, high or low: it becomes a flat bar at that
    close with no volume (logged). Then, per field and symbol:

    * an open, high or low that is missing (NaN), infinite or ``<= 0``;
    * ``high < low``; a close above the high or below the low;
    * a volume that is missing, infinite or negative.

    Each is a :class:`~backtest.errors.DataValidationError` naming the field
    (``column``), the ``symbol``, the first bad ``timestamp`` and the ``count``, with
    its fix, unless ``repair`` says otherwise:

    * ``ffill``: a bad open becomes the previous close (the bar opens where the last one
      closed); a bad high or low, or ``high < low``, becomes the higher / lower of the
      bar's open and close; a close outside ``[low, high]`` widens the high or low to
      it; a bad volume becomes the previous bar's (0 on the first bar);
    * ``drop``: every bar (timestamp) with a bad value in any field or symbol is dropped.

    Every repair is logged on the ``backtest.data`` logger (field, symbol, count, first
    timestamp); nothing is repaired silently.

    Args:
        bars: The bars; any of open, high, low and volume may be ``None``.
        repair: ``none`` (default) raises on the first defect; ``ffill`` or ``drop``.

    Returns:
        Validated bars: float64 fields on the closes' ``DatetimeIndex``.

    Raises:
        DataValidationError: The first defect, as above (or one of
            :func:`validate_prices`'s for the closes).

    Examples:
        >>> idx = pd.to_datetime(["2024-01-02", "2024-01-03"])
        >>> close = pd.DataFrame({"A": [10.0, 11.0]}, index=idx)
        >>> validate_bars(Bars(close, open=pd.DataFrame({"A": [10.0, 0.0]}, index=idx)))
        Traceback (most recent call last):
        ...
        backtest.errors.DataValidationError: column 'open' of symbol 'A': 1 non-positive ...
    """
    mode = _repair_mode(repair)
    close = validate_prices(bars.close, repair=mode)
    present = [f for f in ("open", "high", "low", "volume") if getattr(bars, f) is not None]
    if not present:
        return with_universe_fields(Bars.from_close(close), bars)
    listed = np.isfinite(close.to_numpy())
    raw_close = _numeric("close", bars.close, close, check_text=False)
    fields = {f: _unlisted_nan(_numeric(f, getattr(bars, f), close), listed) for f in present}
    # (NaN == x is False: filled cells too; cells outside a listing stay NaN)
    filled = ~(raw_close == close).to_numpy() & listed
    if filled.any():
        for f, frame in fields.items():
            values = frame.to_numpy(copy=True)
            values[filled] = 0.0 if f == "volume" else close.to_numpy()[filled]
            fields[f] = pd.DataFrame(values, index=frame.index, columns=frame.columns)
        logger.warning(
            "repair=%s: %d bar(s) whose close was filled in are flat bars at that close "
            "(open = high = low = close, no volume)",
            mode.value,
            int(filled.sum()),
        )
    defects = _bar_defects(close, fields)
    for field, what, mask in defects:
        for j, symbol in enumerate(close.columns):
            hits = mask[:, j]
            if not hits.any():
                continue
            first = close.index[hits][0]
            msg = (
                f"column {field!r} of symbol {symbol!r}: {int(hits.sum())} {what}, first at {first}"
            )
            if mode is RepairMode.none:
                rows = int(np.logical_or.reduce([m.any(axis=1) for _, _, m in defects]).sum())
                raise DataValidationError(
                    f"{msg}; {_FIXES[field]}, data.repair=drop drops the {rows} of "
                    f"{len(close)} bars that have such a defect in any asset",
                    column=field,
                    symbol=str(symbol),
                    timestamp=first,
                    count=int(hits.sum()),
                )
            action = "repaired" if mode is RepairMode.ffill else "dropped bars with"
            logger.warning("repair=%s: %s %s", mode.value, action, msg)
    if not defects:
        out = Bars(close, **{f: fields.get(f) for f in ("open", "high", "low", "volume")})
        return with_universe_fields(out, bars)
    if mode is RepairMode.drop:
        bad = np.zeros(close.shape[0], dtype=bool)
        for _, _, mask in defects:
            bad |= mask.any(axis=1)
        keep = ~bad
        if not keep.any():
            raise DataValidationError(
                "no bars left: every bar has a bad open, high, low or volume", count=0
            )
        frames = {f: frame.loc[keep] for f, frame in fields.items()}
        out = Bars(close.loc[keep], **{f: frames.get(f) for f in ("open", "high", "low", "volume")})
        return with_universe_fields(out, bars)
    return with_universe_fields(_ffill_bars(close, fields), bars)


def _unlisted_nan(frame: pd.DataFrame, listed: np.ndarray) -> pd.DataFrame:
    """``frame`` with NaN wherever the asset is not listed (its close is NaN)."""
    if listed.all():
        return frame
    return frame.where(listed)


def _numeric(
    field: str, frame: pd.DataFrame, close: pd.DataFrame, *, check_text: bool = True
) -> pd.DataFrame:
    """``frame`` as float64 on the validated closes' index and symbols (repeats: the first)."""
    if not set(close.columns) <= set(map(str, frame.columns)):
        raise DataValidationError(f"{field} does not have the symbols of the closes", column=field)
    out = frame.copy()
    out.columns = out.columns.astype(str)
    out.index = pd.DatetimeIndex(pd.DatetimeIndex(out.index).as_unit("ns").to_numpy(), name="date")
    out = out.loc[~out.index.duplicated(keep="first")]
    for column in out.columns:
        out[column] = as_numbers(
            out[column],
            f"column {field!r} of symbol {column!r}",
            "value(s)",
            check=check_text,
            column=field,
            symbol=str(column),
        )
    return out.reindex(index=close.index, columns=close.columns)


def _bar_defects(
    close: pd.DataFrame, fields: Mapping[str, pd.DataFrame]
) -> list[tuple[str, str, np.ndarray]]:
    """``(field, what, mask)`` of every kind of defect present, in the order checked."""
    c = close.to_numpy()
    out: list[tuple[str, str, np.ndarray]] = []
    for field in ("open", "high", "low"):
        if field in fields:
            values = fields[field].to_numpy()
            out.append((field, "missing (NaN) value(s)", np.isnan(values)))
            out.append((field, "infinite value(s)", np.isinf(values)))
            out.append((field, "non-positive value(s)", values <= 0.0))
    with np.errstate(invalid="ignore"):
        high = fields["high"].to_numpy() if "high" in fields else None
        low = fields["low"].to_numpy() if "low" in fields else None
        if high is not None and low is not None:
            out.append(("high", "bar(s) with high < low", high < low))
        if high is not None:
            out.append(("close", "close(s) above the high", c > high))
        if low is not None:
            out.append(("close", "close(s) below the low", c < low))
        if "volume" in fields:
            volume = fields["volume"].to_numpy()
            out.append(("volume", "missing (NaN) volume(s)", np.isnan(volume)))
            out.append(("volume", "infinite volume(s)", np.isinf(volume)))
            out.append(("volume", "negative volume(s)", volume < 0.0))
    listed = np.isfinite(c)  # outside a listing every field is NaN: no defect
    return [(f, what, mask & listed) for f, what, mask in out if (mask & listed).any()]


def _ffill_bars(close: pd.DataFrame, fields: Mapping[str, pd.DataFrame]) -> Bars:
    """The ``ffill`` repairs of :func:`validate_bars`, field by field, in that order."""
    c = close.to_numpy()
    arrays = {f: frame.to_numpy(dtype=np.float64, copy=True) for f, frame in fields.items()}

    def bad(values: np.ndarray) -> np.ndarray:
        return ~np.isfinite(values) | (values <= 0.0)

    if "open" in arrays:
        o = arrays["open"]
        previous = np.vstack([c[:1], c[:-1]])
        previous = np.where(np.isnan(previous), c, previous)  # a listing's first bar
        o[bad(o)] = previous[bad(o)]
    o = arrays.get("open", c)
    top, bottom = np.maximum(o, c), np.minimum(o, c)
    high, low = arrays.get("high"), arrays.get("low")
    if high is not None and low is not None:
        crossed = ~bad(high) & ~bad(low) & (high < low)
        high[crossed], low[crossed] = top[crossed], bottom[crossed]
    if high is not None:
        high[bad(high)] = top[bad(high)]
        np.maximum(high, c, out=high)
    if low is not None:
        low[bad(low)] = bottom[bad(low)]
        np.minimum(low, c, out=low)
    if "volume" in arrays:
        v = arrays["volume"]
        frame = pd.DataFrame(np.where(~np.isfinite(v) | (v < 0.0), np.nan, v))
        arrays["volume"] = frame.ffill().fillna(0.0).to_numpy()

    unlisted = np.isnan(c)

    def wide(values: np.ndarray | None) -> pd.DataFrame | None:
        if values is None:
            return None
        if unlisted.any():
            values = np.where(unlisted, np.nan, values)
        return pd.DataFrame(values, index=close.index, columns=close.columns)

    return Bars(close, *(wide(arrays.get(f)) for f in ("open", "high", "low", "volume")))


def _aligned(
    ohlc: Mapping[str, pd.DataFrame] | None, field: str, closes: pd.DataFrame
) -> pd.DataFrame | None:
    if ohlc is None or field not in ohlc:
        return None
    values = ohlc[field]
    if values.shape != closes.shape:
        raise DataValidationError(
            f"{field} prices have shape {values.shape}, the closes {closes.shape}", column=field
        )
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataValidationError(f"{field} prices must be numeric: {exc}", column=field) from exc
    return pd.DataFrame(array, index=closes.index, columns=closes.columns)


def _fix_index(
    closes: pd.DataFrame,
    high: pd.DataFrame | None,
    low: pd.DataFrame | None,
    mode: RepairMode,
) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    index = closes.index
    dup = index.duplicated(keep="first")
    if dup.any():
        first = index[dup][0]
        msg = f"index: {int(dup.sum())} duplicate timestamp(s), first {first}"
        if mode is RepairMode.none:
            raise DataValidationError(msg, column="index", timestamp=first, count=int(dup.sum()))
    back = np.zeros(len(index), dtype=bool)
    back[1:] = index.asi8[1:] < index.asi8[:-1]
    if back.any():
        first = index[back][0]
        msg_sort = f"index: {int(back.sum())} unsorted timestamp(s), first {first}"
        if mode is RepairMode.none:
            raise DataValidationError(
                msg_sort, column="index", timestamp=first, count=int(back.sum())
            )
        logger.warning("repair=%s: sorted timestamps; %s", mode.value, msg_sort)
        order = np.argsort(index.asi8, kind="stable")
        closes = closes.iloc[order]
        high = None if high is None else high.iloc[order]
        low = None if low is None else low.iloc[order]
    if dup.any():
        logger.warning("repair=%s: dropped repeats (kept the first); %s", mode.value, msg)
        keep = ~closes.index.duplicated(keep="first")
        closes = closes.loc[keep]
        high = None if high is None else high.loc[keep]
        low = None if low is None else low.loc[keep]
    return closes, high, low
