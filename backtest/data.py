"""Prices in: synthetic, the shipped sample, or your CSV / Parquet file; validated.

Every loader returns *wide closes*: a DataFrame with a ``DatetimeIndex`` named
``date`` (datetime64[ns], strictly increasing) and one float64 column per symbol.

* :func:`synthetic_prices`: seeded geometric Brownian motion, optionally with
  trending and mean-reverting regimes.
* :func:`sample_prices`: real daily prices shipped in ``backtest/_data/sample.csv``:
  the S&P 500 (``SP500``, Yahoo ``^GSPC``) and NASDAQ Composite (``NASDAQ``,
  ``^IXIC``) indices, daily open/high/low/close/volume from 2008-01-02 to
  2018-12-31, converted by ``scripts/make_sample_data.py`` from the data sets the
  ``arch`` package ships as ``arch.data.sp500`` and ``arch.data.nasdaq``
  (prices rounded to the cent).
* :func:`read_prices`: a CSV or Parquet file in long layout (``date, symbol, open,
  high, low, close, volume``, one row per date and symbol) or wide layout (a date
  column and one close column per symbol), with column names mapped to yours.
* :func:`load_prices`: dispatches on a :class:`~backtest.config.DataConfig`.

Bad data is refused by :func:`validate_prices` with a
:class:`~backtest.errors.DataValidationError` naming the column, the first bad
timestamp and the count, unless a repair mode says otherwise; every repair is
logged on the ``backtest.data`` logger.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from backtest.config import DataConfig, DataLayout, DataSource, RepairMode
from backtest.errors import ConfigError, DataValidationError

__all__ = [
    "data_fingerprint",
    "load_prices",
    "read_prices",
    "sample_prices",
    "synthetic_prices",
    "validate_prices",
]

logger = logging.getLogger("backtest.data")

_LONG_FIELDS = ("date", "symbol", "open", "high", "low", "close", "volume")
_TREND_PER_VOL = 0.25  # trending regime: extra drift per bar, in units of volatility
_REVERSION_SPEED = 0.3  # mean-reverting regime: fraction of the gap to the level closed per bar
_REGIME_BARS = (60, 253)  # regime lengths are drawn uniformly from [60, 252] bars


def synthetic_prices(
    n_bars: int = 2520,
    n_assets: int = 4,
    *,
    drift: float = 0.0002,
    volatility: float = 0.01,
    start_price: float = 100.0,
    regimes: bool = True,
    start_date: str = "2010-01-04",
    seed: int | np.random.Generator | None = None,
) -> pd.DataFrame:
    """Seeded synthetic daily closes.

    With ``regimes=False`` this is plain geometric Brownian motion: the log returns
    ``log(close[t] / close[t-1])`` for ``t >= 1`` are drawn iid
    ``N(drift, volatility)`` in one call ``rng.normal(drift, volatility,
    (n_bars - 1, n_assets))`` and every asset starts at ``start_price``.

    With ``regimes=True`` each asset alternates stretches of 60-252 bars of two
    kinds, so that both momentum and mean-reversion strategies have something to
    find: *trending* (the drift plus a persistent ``±0.25 × volatility`` per bar,
    sign drawn per stretch) and *mean-reverting* (an Ornstein-Uhlenbeck pull of the
    log price toward its level at the start of the stretch, closing 30% of the gap
    per bar). The noise is the same ``N(0, volatility)`` in both.

    Args:
        n_bars: Number of daily bars (business days from ``start_date``).
        n_assets: Number of assets, named ``SYN0``, ``SYN1``, ...
        drift: Mean log return per bar.
        volatility: Standard deviation of the log return per bar.
        start_price: First close of every asset.
        regimes: Add trending and mean-reverting regimes (see above).
        start_date: Date of the first bar.
        seed: Seed or generator; the same seed gives the same prices in any process.

    Returns:
        Wide closes, float64, index of business days named ``date``.

    Raises:
        ConfigError: A non-positive size, volatility or start price.

    Examples:
        >>> prices = synthetic_prices(5, 2, seed=1)
        >>> prices.shape, list(prices.columns), float(prices.iloc[0, 0])
        ((5, 2), ['SYN0', 'SYN1'], 100.0)
    """
    for key, value in (("n_bars", n_bars), ("n_assets", n_assets)):
        if value < 1:
            raise ConfigError(f"{key} must be at least 1, got {value}", key=key)
    if volatility < 0 or start_price <= 0:
        key = "volatility" if volatility < 0 else "start_price"
        raise ConfigError(f"{key} must be positive", key=key)
    rng = np.random.default_rng(seed)
    days = pd.bdate_range(start=start_date, periods=n_bars).as_unit("ns")
    index = pd.DatetimeIndex(days.to_numpy(), name="date")
    columns = [f"SYN{i}" for i in range(n_assets)]
    if regimes:
        log_price = _regime_log_prices(rng, n_bars, n_assets, drift, volatility)
    else:
        steps = rng.normal(drift, volatility, size=(n_bars - 1, n_assets))
        log_price = np.vstack([np.zeros((1, n_assets)), np.cumsum(steps, axis=0)])
    closes = start_price * np.exp(log_price)
    return pd.DataFrame(closes, index=index, columns=columns, dtype=np.float64)


def _regime_log_prices(
    rng: np.random.Generator, n_bars: int, n_assets: int, drift: float, volatility: float
) -> np.ndarray:
    """Log prices (starting at 0) with alternating trending / mean-reverting stretches."""
    trend = np.zeros((n_bars, n_assets))  # extra drift per bar
    speed = np.zeros((n_bars, n_assets))  # OU speed (0 while trending)
    starts = np.zeros((n_bars, n_assets), dtype=bool)  # first bar of a stretch
    for a in range(n_assets):
        t, trending = 1, bool(rng.integers(2))
        while t < n_bars:
            end = min(n_bars, t + int(rng.integers(*_REGIME_BARS)))
            starts[t, a] = True
            if trending:
                trend[t:end, a] = rng.choice([-1.0, 1.0]) * _TREND_PER_VOL * volatility
            else:
                speed[t:end, a] = _REVERSION_SPEED
            t, trending = end, not trending
    noise = rng.normal(0.0, volatility, size=(n_bars, n_assets))
    log_price = np.zeros((n_bars, n_assets))
    level = np.zeros(n_assets)
    for t in range(1, n_bars):
        prev = log_price[t - 1]
        level = np.where(starts[t], prev, level)
        log_price[t] = prev + drift + trend[t] + speed[t] * (level - prev) + noise[t]
    return log_price


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
    path = resources.files("backtest") / "_data" / "sample.csv"
    with resources.as_file(path) as file:
        return read_prices(file, layout=DataLayout.long, symbols=symbols, start=start, end=end)


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
) -> pd.DataFrame:
    """Read, validate and reshape a CSV or Parquet price file into wide closes.

    Args:
        path: A ``.csv`` (optionally compressed, e.g. ``.csv.gz``) or ``.parquet``
            file.
        file_format: ``csv`` or ``parquet``; from the file name when omitted
            (``.parquet`` / ``.pq`` is Parquet, anything else CSV).
        layout: ``long`` (one row per date and symbol with ``date, symbol, close``
            and optionally ``open, high, low, volume``), ``wide`` (a date column and
            one close column per symbol) or ``auto`` (long when a symbol column
            exists).
        columns: Our column name -> yours, e.g. ``{"date": "Date", "close":
            "Adj Close", "symbol": "Ticker"}``; unmapped names are used as is.
        symbols: Keep only these symbols (all when omitted).
        start: First date kept (inclusive), ISO format.
        end: Last date kept (inclusive), ISO format.
        repair: ``none`` refuses bad data; ``ffill`` / ``drop`` repair it and log
            every change (see :func:`validate_prices`).

    Returns:
        Wide closes: ``DatetimeIndex`` named ``date``, one float64 column per
        symbol, columns sorted.

    Raises:
        DataValidationError: The file is missing or unreadable, a required column
            is missing, or the data is bad (see :func:`validate_prices`).
        ConfigError: An unknown symbol or an unparseable ``start`` / ``end``.
    """
    path = Path(path)
    raw = _read_table(path, file_format)
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
    dates = _parse_dates(raw[names["date"]], names["date"])
    if layout is DataLayout.long:
        closes, ohlc = _pivot_long(raw, dates, names, repair)
    else:
        closes = raw.drop(columns=[names["date"]]).set_axis(dates, axis=0)
        closes.columns = closes.columns.astype(str)
        ohlc = None
    closes = closes.sort_index(axis=1)
    closes, ohlc = _select(closes, ohlc, symbols, start, end)
    return validate_prices(closes, repair=repair, ohlc=ohlc)


def _read_table(path: Path, file_format: str | None) -> pd.DataFrame:
    if not path.is_file():
        raise DataValidationError(f"price file not found: {str(path)!r}")
    if file_format is None:
        file_format = "parquet" if path.suffix.lower() in {".parquet", ".pq"} else "csv"
    if file_format not in {"csv", "parquet"}:
        raise ConfigError(
            f"unknown file format {file_format!r} (csv or parquet)", key="data.source"
        )
    try:
        if file_format == "parquet":
            frame = pd.read_parquet(path)
            if not isinstance(frame.index, pd.RangeIndex):
                frame = frame.reset_index()
            return frame
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataValidationError(f"cannot read price file {str(path)!r}: {exc}") from exc


def _require(raw: pd.DataFrame, needed: list[str], path: Path) -> None:
    for name in needed:
        if name not in raw.columns:
            raise DataValidationError(
                f"required column {name!r} missing from {str(path)!r} "
                f"(columns: {list(map(str, raw.columns))}); map yours with data.columns",
                column=name,
            )


def _parse_dates(values: pd.Series, name: str) -> pd.DatetimeIndex:
    parsed = pd.to_datetime(values, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        first = values[bad].iloc[0]
        raise DataValidationError(
            f"column {name!r}: {int(bad.sum())} unparseable date(s), first {first!r}",
            column=name,
            timestamp=first,
            count=int(bad.sum()),
        )
    return pd.DatetimeIndex(parsed, name="date").as_unit("ns")


def _pivot_long(
    raw: pd.DataFrame, dates: pd.DatetimeIndex, names: dict[str, str], repair: RepairMode
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame] | None]:
    fields = [f for f in ("open", "high", "low", "close") if names[f] in raw.columns]
    table = pd.DataFrame({f: raw[names[f]] for f in fields})
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
    ohlc: dict[str, pd.DataFrame] = {f: wide[f] for f in ("open", "high", "low") if f in wide}
    return wide["close"], ohlc or None


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
                f"unknown symbol(s) {unknown}; available: {list(closes.columns)}",
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
        ohlc = {f: frame.loc[closes.index, closes.columns] for f, frame in ohlc.items()}
    return closes, ohlc


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
    holds unparseable dates (NaT); duplicate timestamps; unsorted timestamps; NaN
    prices; prices ``<= 0``; ``high < low``.

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
    try:
        closes = closes.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise DataValidationError(f"prices must be numeric: {exc}") from exc
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


def load_prices(config: DataConfig) -> pd.DataFrame:
    """Load the prices a data config describes, validated (and repaired if asked).

    Args:
        config: ``source`` picks synthetic prices, the shipped sample, or a CSV /
            Parquet file at ``path``; ``symbols``, ``start`` and ``end`` select from
            any source; ``repair`` applies to every source.

    Returns:
        Wide closes (see the module docstring).

    Raises:
        ConfigError: No ``path`` for a file source, an unknown symbol, or a bad date.
        DataValidationError: The file is missing (its path is named) or the data is bad.

    Examples:
        >>> from backtest.config import DataConfig
        >>> load_prices(DataConfig(n_bars=3, n_assets=2, seed=7)).shape
        (3, 2)
    """
    source = DataSource(
        config.source.value if isinstance(config.source, DataSource) else config.source
    )
    symbols, start, end = list(config.symbols) or None, config.start, config.end
    if source is DataSource.synthetic:
        prices = synthetic_prices(
            config.n_bars,
            config.n_assets,
            drift=config.drift,
            volatility=config.volatility,
            start_price=config.start_price,
            regimes=config.regimes,
            start_date=config.start_date,
            seed=config.seed,
        )
        prices, _ = _select(prices, None, symbols, start, end)
        return validate_prices(prices, repair=config.repair)
    if source is DataSource.sample:
        prices = sample_prices(symbols, start=start, end=end)
        return validate_prices(prices, repair=config.repair)
    if not config.path:
        raise ConfigError(f"data.path is required for source {source.value!r}", key="data.path")
    path = Path(config.path)
    return read_prices(
        path,
        file_format=source.value,
        layout=config.layout,
        columns=dict(config.columns),
        symbols=symbols,
        start=start,
        end=end,
        repair=config.repair,
    )


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
        >>> len(data_fingerprint(synthetic_prices(10, 2, seed=3)))
        64
    """
    digest = hashlib.sha256()
    digest.update(json.dumps([list(prices.shape), [str(c) for c in prices.columns]]).encode())
    digest.update(pd.DatetimeIndex(prices.index).as_unit("ns").asi8.astype("<i8").tobytes())
    digest.update(np.ascontiguousarray(prices.to_numpy(dtype=np.float64)).astype("<f8").tobytes())
    return digest.hexdigest()
