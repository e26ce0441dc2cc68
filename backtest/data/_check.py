"""The check the Python API runs on data it is handed: the command line's rules, no copy.

The command line loads data through :func:`~backtest.data.load_bars`, which validates it
(:func:`~backtest.data.validate_prices`, :func:`~backtest.data.validate_bars`).
:func:`check_bars` holds data handed to :func:`~backtest.engine.simulate`, the batched
path, the evaluators, the walk-forward and Monte Carlo to the same rules and raises the
same named :class:`~backtest.errors.DataValidationError`. It neither repairs nor copies:
clean data (the usual case) costs a few vectorised comparisons; only data that fails one
of them goes through the validator itself, which names the column, the first bad
timestamp and the count (and the fix).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from backtest.data._bars import Bars, as_bars
from backtest.data._universe import check_universe_fields, listed_span


def check_bars(data: Bars | pd.DataFrame) -> None:
    """Refuse data the command line would refuse, with its error (nothing repaired).

    Checked: closes (a non-empty frame on a ``DatetimeIndex`` without NaT, strictly
    increasing; numbers, none infinite or ``<= 0``, none missing inside an asset's
    listing: leading NaNs (not listed yet) and trailing NaNs (delisted) are accepted), the
    opens, highs, lows and volumes present on listed bars (none missing or infinite;
    prices ``> 0``, volumes ``>= 0``; ``low <= close <= high``), and the universe fields
    (an action on an unlisted bar, a delisting return off an asset's last listed bar:
    :func:`~backtest.data._universe.check_universe_fields`).

    Args:
        data: :class:`~backtest.data.Bars` or wide closes.

    Raises:
        DataValidationError: naming the column (a symbol, ``index`` or a field), the first
            bad timestamp and the count, as :func:`~backtest.data.validate_bars` does.

    Examples:
        >>> idx = pd.bdate_range("2024-01-01", periods=3)
        >>> check_bars(pd.DataFrame({"A": [1.0, 2.0, 3.0]}, index=idx))  # clean: silent
        >>> check_bars(pd.DataFrame({"A": [1.0, float("nan"), 3.0]}, index=idx))
        Traceback (most recent call last):
        ...
        backtest.errors.DataValidationError: column 'A': 1 NaN price(s), first at 2024-01-02 ...
    """
    bars = as_bars(data)
    if _clean(bars):
        check_universe_fields(bars)
        return
    from backtest.data._validate import validate_bars

    validate_bars(bars)  # raises the named error
    # the validator accepts what the quick test doubted (e.g. numbers stored as text)


def _clean(bars: Bars) -> bool:
    """Whether every quick test passes (``False`` sends the data to the validator)."""
    close = bars.close
    index = close.index
    if close.shape[0] == 0 or close.shape[1] == 0 or not isinstance(index, pd.DatetimeIndex):
        return False
    if index.hasnans or not (index.is_monotonic_increasing and index.is_unique):
        return False
    c = _floats(close)
    if c is None:
        return False
    listed = None  # every cell listed (no NaN close): the plain, fastest checks
    if np.isnan(c).any():
        listed = ~np.isnan(c)
        if not listed.any() or (listed_span(c) & ~listed).any():
            return False  # no price at all, or a NaN inside a listing
        c = np.where(listed, c, 1.0)  # the checks below then look at listed cells only
    if not _positive(c):
        return False
    present = {f: _floats(getattr(bars, f)) for f in ("open", "high", "low", "volume")}
    present = {f: v for f, v in present.items() if getattr(bars, f) is not None}
    if any(v is None for v in present.values()):
        return False
    if listed is not None:
        present = {f: np.where(listed, v, c) for f, v in present.items()}  # type: ignore[arg-type]
    for field in ("open", "high", "low"):
        values = present.get(field)
        if values is not None and not _positive(values):
            return False
    high, low = present.get("high"), present.get("low")
    if high is not None and not (c <= high).all():
        return False
    if low is not None and not (c >= low).all():
        return False
    volume = present.get("volume")
    return volume is None or bool(np.isfinite(volume).all() and (volume >= 0.0).all())


def _floats(frame: pd.DataFrame | None) -> np.ndarray | None:
    """The values as floats when the frame holds numbers only, else ``None``."""
    if frame is None:
        return None
    types = pd.api.types
    if not all(types.is_numeric_dtype(t) and not types.is_bool_dtype(t) for t in frame.dtypes):
        return None
    return frame.to_numpy(dtype=np.float64, na_value=np.nan)


def _positive(values: np.ndarray) -> bool:
    """Finite and ``> 0`` everywhere (NaN fails ``> 0``)."""
    return bool((values > 0.0).all() and np.isfinite(values).all())
