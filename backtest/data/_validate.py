"""Validation (and logged repair) of wide closes, and their fingerprint."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

from backtest.config import RepairMode
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
    unsorted timestamps; NaN prices; prices ``<= 0``; ``high < low``.

    Repairs (each logged as a warning on the ``backtest.data`` logger with the
    column, the count and the first timestamp; nothing is repaired silently):

    * ``ffill`` and ``drop`` both sort the timestamps and drop repeated ones,
      keeping the first row of each.
    * ``ffill`` treats NaN, non-positive prices and bars with ``high < low`` as
      missing and carries the previous close forward; rows before the first
      complete bar (leading NaN) are dropped.
    * ``drop`` drops every row with a bad value in any column.

    Args:
        frame: Wide closes, one column per symbol, indexed by timestamp.
        repair: ``none`` (default) raises on the first defect; ``ffill`` or ``drop``.
        ohlc: Optional wide ``open``/``high``/``low`` frames aligned with ``frame``;
            when ``high`` and ``low`` are given, a bar with ``high < low`` is bad.

    Returns:
        The closes as float64 with a ``DatetimeIndex`` named ``date`` (ns), sorted
        and unique, with no NaN and no non-positive price.

    Raises:
        DataValidationError: With ``column`` (a symbol, or ``"index"``),
            ``timestamp`` (the first bad one) and ``count`` set.

    Examples:
        >>> idx = pd.to_datetime(["2024-01-02", "2024-01-03"])
        >>> validate_prices(pd.DataFrame({"A": [1.0, float("nan")]}, index=idx))
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
        numbers = pd.to_numeric(closes[column], errors="coerce")
        text = (numbers.isna() & closes[column].notna()).to_numpy(dtype=bool)
        if text.any():
            first = closes.index[text][0]
            raise DataValidationError(
                f"column {column!r}: {int(text.sum())} non-numeric price(s), first at {first} "
                f"({closes[column].to_numpy()[text][0]!r})",
                column=column,
                timestamp=first,
                count=int(text.sum()),
            )
        closes[column] = numbers.astype(np.float64)
    # Plain ns timestamps without a ``freq``, whatever the source, so frames compare equal.
    closes.index = pd.DatetimeIndex(closes.index.as_unit("ns").to_numpy(), name="date")
    high = _aligned(ohlc, "high", closes)
    low = _aligned(ohlc, "low", closes)
    closes, high, low = _fix_index(closes, high, low, mode)
    bad = {
        "NaN price(s)": closes.isna(),
        "non-positive price(s)": closes <= 0.0,
    }
    if high is not None and low is not None:
        bad["bar(s) with high < low"] = (high < low).fillna(value=False)
    for what, mask in bad.items():
        for column in closes.columns:
            hits = mask[column].to_numpy(dtype=bool)
            if not hits.any():
                continue
            first = closes.index[hits][0]
            msg = f"column {column!r}: {int(hits.sum())} {what}, first at {first}"
            if mode is RepairMode.none:
                raise DataValidationError(
                    msg, column=column, timestamp=first, count=int(hits.sum())
                )
            action = "forward-filled" if mode is RepairMode.ffill else "dropped rows with"
            logger.warning("repair=%s: %s %s", mode.value, action, msg)
    any_bad = np.zeros(closes.shape, dtype=bool)
    for mask in bad.values():
        any_bad |= mask.to_numpy(dtype=bool)
    if any_bad.any():
        if mode is RepairMode.ffill:
            closes = closes.mask(any_bad).ffill()
            complete = closes.notna().all(axis=1).to_numpy()
            lead = int(np.argmax(complete)) if complete.any() else len(closes)
            if lead:
                logger.warning(
                    "repair=ffill: dropped %d leading row(s) before the first complete bar "
                    "(%s to %s)",
                    lead,
                    closes.index[0],
                    closes.index[lead - 1],
                )
                closes = closes.iloc[lead:]
        else:
            closes = closes.loc[~any_bad.any(axis=1)]
        return validate_prices(closes, repair=RepairMode.none)
    return closes


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


def data_fingerprint(prices: pd.DataFrame) -> str:
    """A SHA-256 hex digest identifying a price frame's exact content.

    Hashes the shape, the column names, the index as int64 nanoseconds and the
    values as float64 bytes: identical data gives the same fingerprint in any
    process; changing any value, timestamp or name changes it.

    Args:
        prices: Wide closes with a ``DatetimeIndex``.

    Returns:
        64 hex characters.

    Examples:
        >>> from backtest.data import synthetic_prices
        >>> len(data_fingerprint(synthetic_prices(10, 2, seed=3)))
        64
    """
    digest = hashlib.sha256()
    digest.update(json.dumps([list(prices.shape), [str(c) for c in prices.columns]]).encode())
    digest.update(pd.DatetimeIndex(prices.index).as_unit("ns").asi8.astype("<i8").tobytes())
    digest.update(np.ascontiguousarray(prices.to_numpy(dtype=np.float64)).astype("<f8").tobytes())
    return digest.hexdigest()
