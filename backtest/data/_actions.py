"""Corporate actions on unadjusted prices: splits and cash dividends, and the adjusted view.

``data.actions`` names a CSV or Parquet file with columns ``date, symbol, split,
dividend`` (either of the last two may be absent):

* ``split``: new shares per old share, effective on ``date`` (the ex-date): 2 for a
  2-for-1 split, 0.1 for a 1-for-10 reverse split; 1 (or empty) when none;
* ``dividend``: cash per share going ex on ``date`` (per share as held after a split of
  the same date); 0 (or empty) when none.

Prices stay as traded (unadjusted). :func:`read_actions` turns the file into the
``split`` and ``dividend`` frames of :class:`~backtest.data.Bars`: the engine multiplies
a holding's units by the split and pays (charges a short) ``units * dividend`` in cash on
that bar, before anything else on it. An action dated between two bars (a weekend, a
holiday, or any date of a weekly or monthly panel) takes effect on the **next bar**: the
first close that reflects it (logged); one dated before the first bar or after the last
is outside the data and ignored (logged). Refused, each a named
:class:`~backtest.errors.ConfigError` on ``data.actions``: a symbol not in the data, an
unparseable date, a split that is not a positive number, a negative or non-finite
dividend, a repeated (date, symbol) row, an action on a bar where the asset is not
listed.

Strategies see :meth:`Bars.adjusted() <backtest.data.Bars.adjusted>` (see
:func:`~backtest.data._adjusted.adjusted_bars`): total-return prices anchored at each
asset's start (no look-ahead), so a moving average does not jump at a split and a
momentum score counts dividends.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from backtest.data._reading import read_table
from backtest.data._universe import _dates, _table
from backtest.errors import ConfigError

logger = logging.getLogger("backtest.data")
_KEY = "data.actions"


def read_actions(
    path: str | Path, close: pd.DataFrame, *, subset: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(split, dividend)`` frames of ``close``'s shape from a corporate-actions file.

    Args:
        path: CSV or Parquet file (see the module docstring).
        close: The validated wide closes (unadjusted, NaN outside listings).
        subset: The data were narrowed to some symbols (``data.symbols``): rows of other
            symbols are ignored instead of refused.

    Returns:
        ``split`` (1.0 where none) and ``dividend`` (0.0 where none), float64.

    Raises:
        ConfigError: see the module docstring; names ``data.actions``, the row and the fix.
    """
    table = _table(path, _KEY, read_table)
    for column in ("date", "symbol"):
        if column not in table.columns:
            raise ConfigError(
                f"{_KEY}: column {column!r} missing from {str(path)!r} (columns: "
                f"{list(map(str, table.columns))}); the file needs date, symbol and split "
                "and/or dividend",
                key=_KEY,
            )
    if "split" not in table.columns and "dividend" not in table.columns:
        raise ConfigError(
            f"{_KEY}: {str(path)!r} has neither a 'split' nor a 'dividend' column", key=_KEY
        )
    n, a = close.shape
    split = np.ones((n, a))
    dividend = np.zeros((n, a))
    if len(table) == 0:
        return _frame(split, close), _frame(dividend, close)
    symbols = table["symbol"].astype(str).str.strip().to_numpy()
    dates = _dates(table["date"], "date", path, _KEY, required=True)
    ratio = _numbers(table, "split", 1.0, path)
    cash = _numbers(table, "dividend", 0.0, path)
    _check_values(ratio, cash, symbols, dates, path)
    known = {str(c): j for j, c in enumerate(close.columns)}
    unknown = sorted({s for s in symbols if s not in known})
    if unknown and not subset:
        raise ConfigError(
            f"{_KEY}: symbol(s) {unknown[:5]} of {str(path)!r} are not in the data; remove "
            "those rows or load their prices",
            key=_KEY,
        )
    repeated = pd.DataFrame({"d": dates, "s": symbols}).duplicated().to_numpy()
    if repeated.any():
        i = int(np.flatnonzero(repeated)[0])
        raise ConfigError(
            f"{_KEY}: row {i + 2} of {str(path)!r} repeats ({dates[i].date()}, {symbols[i]}); "
            "write one row per date and symbol with both its split and its dividend",
            key=_KEY,
        )
    stamps = pd.DatetimeIndex(close.index).as_unit("ns").asi8
    listed = np.isfinite(close.to_numpy(dtype=np.float64))
    order = np.argsort(dates.to_numpy(), kind="stable")  # same-bar actions combine in order
    snapped = outside = 0
    first_snapped = None
    for i in order:
        if symbols[i] not in known:
            continue
        value = dates[i].value
        t = int(np.searchsorted(stamps, value, side="left"))
        if t == n or (t == 0 and value < stamps[0]):
            outside += 1
            continue
        if stamps[t] != value:
            snapped += 1
            first_snapped = first_snapped or (dates[i], symbols[i], close.index[t])
        j = known[symbols[i]]
        if not listed[t, j]:
            raise ConfigError(
                f"{_KEY}: row {i + 2} of {str(path)!r} ({dates[i].date()}, {symbols[i]}) falls "
                f"on {close.index[t]}, where {symbols[i]} has no price (not listed); check the "
                "date or the symbol",
                key=_KEY,
            )
        # a dividend per old share before a split of the same bar is, per new share, 1/s of it
        dividend[t, j] = dividend[t, j] / ratio[i] + cash[i]
        split[t, j] *= ratio[i]
    if snapped:
        d, s, bar = first_snapped  # type: ignore[misc]
        logger.info(
            "data.actions: %d action(s) dated between bars take effect on the next bar "
            "(first: %s %s on %s)",
            snapped,
            d.date(),
            s,
            bar,
        )
    if outside:
        logger.info("data.actions: %d action(s) outside the data's dates ignored", outside)
    return _frame(split, close), _frame(dividend, close)


def _frame(values: np.ndarray, close: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(values, index=close.index, columns=close.columns)


def _numbers(table: pd.DataFrame, column: str, default: float, path: str | Path) -> np.ndarray:
    """A column as floats, an empty cell as ``default``; text is a named error."""
    if column not in table.columns:
        return np.full(len(table), default)
    raw = table[column]
    numbers = pd.to_numeric(raw, errors="coerce")
    text = (numbers.isna() & raw.notna() & (raw.astype(str).str.strip() != "")).to_numpy()
    if text.any():
        i = int(np.flatnonzero(text)[0])
        raise ConfigError(
            f"{_KEY}: row {i + 2} of {str(path)!r} has a non-numeric {column} ({raw.iloc[i]!r})",
            key=_KEY,
        )
    return numbers.fillna(default).to_numpy(dtype=np.float64)


def _check_values(
    ratio: np.ndarray, cash: np.ndarray, symbols: np.ndarray, dates: pd.Series, path: str | Path
) -> None:
    for values, bad, what in (
        (ratio, ~np.isfinite(ratio) | (ratio <= 0), "split must be a positive number "
         "(new shares per old share: 2 for 2-for-1, 0.5 for 1-for-2)"),
        (cash, ~np.isfinite(cash) | (cash < 0), "dividend must be a finite number >= 0 "
         "(cash per share)"),
    ):  # fmt: skip
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ConfigError(
                f"{_KEY}: row {i + 2} of {str(path)!r} ({dates[i].date()}, {symbols[i]}): "
                f"{what}, got {values[i]!r}",
                key=_KEY,
            )
