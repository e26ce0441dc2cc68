"""The benchmark a backtest is compared with (``engine.benchmark``).

Four kinds, the first that matches:

* a **symbol of the data**: that asset, bought at the first close and held (it needs a
  close on every bar);
* ``equal_weight``: a buy and hold of the universe: equal capital in every asset
  tradable at the first close, never rebalanced (on a full panel its value is the mean
  of ``close / close[0]``);
* ``equal_weight_rebalanced``: equal weights over the assets tradable at each rebalance
  of the book's schedule (``engine.rebalance``), drifting in between;
* a **file** (a value ending in ``.csv`` or ``.parquet``, or holding a ``/``): a price
  series with columns ``date, close`` (an index level, a total-return index, another
  fund's NAV), aligned to the data's timestamps; every bar of the data needs a price
  (extra dates in the file are ignored).

A symbol and the equal-weight kinds earn total returns: on unadjusted bars carrying
corporate actions a split scales the holding and a dividend is reinvested at the ex-date's
close, and a delisting return the data supplies is earned on the last listed bar
(:func:`total_return_relatives`); a file is taken as it is (give a total-return index for
a total-return benchmark).

The equal-weight kinds trade at the close, pay no costs and hold only tradable assets
(:meth:`~backtest.data.Bars.tradable_mask`: the ``tradable`` field when the bars carry
one, and a finite close). A holding that stops being tradable is valued at its last
tradable close and held as cash (earning nothing) until the next rebalance, the way the
book closes a delisted name; an asset that lists later joins at the next rebalance
(``equal_weight`` never adds it). Nothing looks ahead: the weights set at close t use
the tradable set at t only.

A benchmark that cannot be built (an unknown symbol, a file that is not found or has a
gap) is refused by :func:`check_benchmark` before anything runs, naming it and the fix.
"""

from __future__ import annotations

import functools
import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from backtest.errors import DataValidationError

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from backtest.data._bars import Bars

EQUAL_WEIGHT = "equal_weight"
EQUAL_WEIGHT_REBALANCED = "equal_weight_rebalanced"
KINDS = (EQUAL_WEIGHT, EQUAL_WEIGHT_REBALANCED)
FILE_SUFFIXES = (".csv", ".parquet")
_FIX = (
    "use a symbol of the data, 'equal_weight', 'equal_weight_rebalanced' or a CSV file "
    "with columns date, close (engine.benchmark=path/to/index.csv)"
)


def is_file(benchmark: str) -> bool:
    """Whether a benchmark value names a file (and not a symbol or a kind).

    >>> [is_file(b) for b in ("SPY", "equal_weight", "spx.csv", "data/ix.parquet")]
    [False, False, True, True]
    """
    return benchmark.lower().endswith(FILE_SUFFIXES) or "/" in benchmark or os.sep in benchmark


def _symbols(data: Bars | pd.DataFrame) -> list[str]:
    close = data if isinstance(data, pd.DataFrame) else data.close
    return [str(c) for c in close.columns]


def _shown(symbols: list[str]) -> str:
    """The first symbols for a message; none on a queue worker (file content kept back)."""
    from backtest.data._reading import shown

    if shown("") != repr(""):
        return shown(symbols)
    head = ", ".join(symbols[:10])
    return head + (f" and {len(symbols) - 10} more" if len(symbols) > 10 else "")


def check_benchmark(benchmark: str | None, data: Bars | pd.DataFrame) -> None:
    """Refuse a benchmark the data cannot give, before anything runs.

    Args:
        benchmark: ``engine.benchmark`` (``None`` for none).
        data: The bars (or wide closes) the book runs on.

    Raises:
        DataValidationError: an unknown symbol (``column`` the value), a symbol without a
            close on every bar, a file that is not found, unreadable, without ``date`` and
            ``close`` columns, or without a positive close at some bar of the data
            (naming the first such timestamp and the count; ``column`` is ``benchmark``).
    """
    if benchmark is None or benchmark in KINDS:
        return
    symbols = _symbols(data)
    close = data if isinstance(data, pd.DataFrame) else data.close
    if benchmark in symbols:
        col = close[benchmark].to_numpy(dtype=np.float64)
        bad = ~np.isfinite(col)
        if bad.any():
            first = close.index[int(np.argmax(bad))]
            raise DataValidationError(
                f"engine.benchmark {benchmark!r} has no close on {int(bad.sum())} bar(s), "
                f"first at {first} (it lists late or delists early); use a symbol with "
                "prices on every bar, 'equal_weight_rebalanced' or a file",
                column=benchmark,
                timestamp=first,
                count=int(bad.sum()),
            )
        return
    if not is_file(benchmark):
        raise DataValidationError(
            f"engine.benchmark {benchmark!r} is not a symbol of the data "
            f"(symbols: {_shown(symbols)}); {_FIX}",
            column=benchmark,
        )
    aligned_closes(benchmark, pd.DatetimeIndex(close.index))


def _path(benchmark: str) -> Path:
    return Path(benchmark).expanduser()


@functools.lru_cache(maxsize=8)
def _read(path: str, _stamp: tuple[int, int]) -> pd.Series:
    """The file's closes by date (cached while the file is unchanged).

    On a queue worker (reads confined to its ``--data-root`` folders) no message quotes
    the file's content (:func:`backtest.data._reading.shown`).
    """
    from backtest.data._reading import shown

    name = repr(path)
    try:
        parquet = path.lower().endswith(".parquet")
        frame = pd.read_parquet(path) if parquet else pd.read_csv(path)
    except Exception as exc:  # pandas' and pyarrow's many parse errors: one line
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise DataValidationError(
            f"engine.benchmark file {name} could not be read ({type(exc).__name__}: "
            f"{shown(detail)}); it needs columns date, close",
            column="benchmark",
        ) from exc
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    if "date" not in frame.columns and frame.index.name and str(frame.index.name).lower() == "date":
        frame = frame.reset_index()
    if "date" not in frame.columns or "close" not in frame.columns:
        raise DataValidationError(
            f"engine.benchmark file {name} needs columns date, close "
            f"(found: {shown([str(c) for c in frame.columns])})",
            column="benchmark",
        )
    try:
        dates = pd.DatetimeIndex(pd.to_datetime(frame["date"]))
    except (ValueError, TypeError) as exc:
        raise DataValidationError(
            f"engine.benchmark file {name}: the date column is not dates ({shown(str(exc))})",
            column="benchmark",
        ) from exc
    closes = pd.to_numeric(frame["close"], errors="coerce").to_numpy(dtype=np.float64)
    series = pd.Series(closes, index=dates, name="benchmark")
    dup = series.index.duplicated()
    if dup.any():
        first = series.index[int(np.argmax(dup))]
        raise DataValidationError(
            f"engine.benchmark file {name} lists the date {shown(str(first))} more than "
            "once; keep one close per date",
            column="benchmark",
            timestamp=first,
        )
    return series.sort_index()


def _load(benchmark: str) -> pd.Series:
    from backtest.data._reading import check_readable
    from backtest.errors import ConfigError

    path = _path(benchmark)
    try:  # a queue worker reads files only under its --data-root folders
        check_readable(path)
    except ConfigError as exc:
        raise DataValidationError(
            f"engine.benchmark file {benchmark!r} is outside the folders this worker reads "
            "data from; put it under one of them, or start the worker with --data-root "
            "<its folder>",
            column="benchmark",
        ) from exc
    if not path.is_file():
        raise DataValidationError(
            f"engine.benchmark file {benchmark!r} not found (looked at {path.resolve()}); "
            "give the path of a CSV with columns date, close, relative to the folder "
            "you run in, or an absolute one",
            column="benchmark",
        )
    stat = path.stat()
    return _read(str(path.resolve()), (stat.st_mtime_ns, stat.st_size))


def aligned_closes(benchmark: str, index: pd.DatetimeIndex) -> NDArray[np.float64]:
    """A benchmark file's closes at the data's timestamps; a gap is refused.

    Raises:
        DataValidationError: see :func:`check_benchmark`.
    """
    series = _load(benchmark)
    dates = series.index
    if index.tz is not None and dates.tz is None:
        dates = dates.tz_localize(index.tz)
    elif index.tz is None and dates.tz is not None:
        dates = dates.tz_convert("UTC").tz_localize(None)
    elif index.tz is not None:
        dates = dates.tz_convert(index.tz)
    values = pd.Series(series.to_numpy(), index=dates).reindex(index).to_numpy(np.float64)
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        first = index[int(np.argmax(bad))]
        raise DataValidationError(
            f"engine.benchmark file {benchmark!r} has no positive close for "
            f"{int(bad.sum())} bar(s) of the data, first at {first}; the benchmark needs "
            "a price at every timestamp of the data (fill the file's gap or cut the data's "
            "dates to the file's)",
            column="benchmark",
            timestamp=first,
            count=int(bad.sum()),
        )
    return values


def total_return_relatives(data: Bars | pd.DataFrame) -> NDArray[np.float64]:
    """``(n, a)`` each asset's value at bar t over bar t - 1 (row 0 is 1).

    ``close[t] / close[t-1]`` on adjusted closes; on bars carrying corporate actions
    (unadjusted prices), ``split[t] x (close[t] + dividend[t]) / close[t-1]`` (the
    dividend per new share, reinvested at that close), times ``1 + delist_return`` on
    an asset's last listed bar when the data supplies one. NaN where a close is missing.
    """
    if isinstance(data, pd.DataFrame):
        close, split, dividend, delist = data.to_numpy(dtype=np.float64), None, None, None
    else:
        close = data.close.to_numpy(dtype=np.float64)
        split, dividend, delist = (
            None if f is None else f.to_numpy(dtype=np.float64)
            for f in (data.split, data.dividend, data.delist_return)
        )
    value = close.copy()
    if dividend is not None:
        value = value + dividend
    if split is not None:
        value = value * split
    if delist is not None:
        value = value * np.where(np.isfinite(delist), 1.0 + delist, 1.0)
    out = np.ones_like(close)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[1:] = value[1:] / close[:-1]
    return out


def equal_weight_returns(
    growth: NDArray[np.float64], tradable: NDArray[np.bool_], flags: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """Per-bar returns of an equal-weight book of the tradable assets, first bar 0.

    Args:
        growth: ``(n, a)`` each asset's value relative to the bar before
            (:func:`total_return_relatives`; plain closes give ``close[t] / close[t-1]``).
        tradable: ``(n, a)`` whether each asset may be held on each bar.
        flags: ``(n,)`` rebalance bars; the weights are set equal at bar 0 and at each
            flagged bar, over the assets tradable there.

    Examples:
        >>> close = pd.DataFrame([[1.0, 1.0], [2.0, 1.0], [2.0, 2.0]])
        >>> g, ok = total_return_relatives(close), np.ones((3, 2), dtype=bool)
        >>> equal_weight_returns(g, ok, np.array([True, False, False])).round(4).tolist()
        [0.0, 0.5, 0.3333]
        >>> equal_weight_returns(g, ok, np.ones(3, dtype=bool)).round(4).tolist()
        [0.0, 0.5, 0.5]
    """
    n = growth.shape[0]
    ret = np.zeros(n)
    if n < 2:
        return ret
    count = tradable.sum(axis=1)
    weights = np.divide(tradable, np.maximum(count, 1)[:, None])  # equal over the tradable
    starts = np.flatnonzero(flags)
    if len(starts) == 0 or starts[0] != 0:
        starts = np.concatenate(([0], starts))
    if len(starts) == n:  # every bar: the mean return of the assets tradable on both bars
        live = tradable[1:] & (weights[:-1] > 0)
        ret[1:] = (weights[:-1] * np.where(live, growth[1:] - 1.0, 0.0)).sum(axis=1)
        return ret
    bounds = np.append(starts, n - 1)
    for s, e in itertools.pairwise(bounds):
        # bars s+1..e drift from the weights set at s's close; a holding that stops being
        # tradable keeps its last value (cash) until the next rebalance
        w = weights[s]
        alive = np.logical_and.accumulate(tradable[s + 1 : e + 1], axis=0) & (w > 0)
        value = (w * np.cumprod(np.where(alive, growth[s + 1 : e + 1], 1.0), axis=0)).sum(1)
        book = value + (1.0 - w.sum())
        ret[s + 1 : e + 1] = book / np.concatenate(([1.0], book[:-1])) - 1.0
    return ret


def benchmark_returns(
    data: Bars | pd.DataFrame, benchmark: str, *, rebalance: str | int = "bar"
) -> pd.Series:
    """Per-bar returns of the benchmark over the data's bars, first bar 0.

    Args:
        data: :class:`~backtest.data.Bars` (its tradable mask is used) or wide closes
            (tradable where the close is finite).
        benchmark: A symbol, a kind or a file (see the module docstring); checked by
            :func:`check_benchmark` first.
        rebalance: The book's schedule (``engine.rebalance``), for
            ``equal_weight_rebalanced``.

    Examples:
        >>> idx = pd.bdate_range("2024-01-01", periods=3)
        >>> close = pd.DataFrame({"A": [1.0, 2.0, 2.0], "B": [1.0, 1.0, 2.0]}, index=idx)
        >>> benchmark_returns(close, "equal_weight").round(4).tolist()
        [0.0, 0.5, 0.3333]
        >>> benchmark_returns(close, "equal_weight_rebalanced").round(4).tolist()
        [0.0, 0.5, 0.5]
    """
    from backtest.engine._schedule import rebalance_flags

    close_frame = data if isinstance(data, pd.DataFrame) else data.close
    index = pd.DatetimeIndex(close_frame.index)
    if benchmark in KINDS:
        if isinstance(data, pd.DataFrame):
            mask = np.isfinite(close_frame.to_numpy(dtype=np.float64))
        else:
            mask = np.asarray(data.tradable_mask(), dtype=bool)
        n = len(index)
        if benchmark == EQUAL_WEIGHT:
            flags = np.zeros(n, dtype=bool)
        else:
            flags = rebalance_flags(index, rebalance)
        ret = equal_weight_returns(total_return_relatives(data), mask, flags)
        return pd.Series(ret, index=index, name="benchmark")
    ret = np.zeros(len(index))
    if benchmark in close_frame.columns:
        j = list(close_frame.columns).index(benchmark)
        ret[1:] = total_return_relatives(data)[1:, j] - 1.0
    else:
        value = aligned_closes(benchmark, index)
        ret[1:] = value[1:] / value[:-1] - 1.0
    return pd.Series(ret, index=index, name="benchmark")
