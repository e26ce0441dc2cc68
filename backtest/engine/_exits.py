"""Per-position exits: stop-loss, take-profit, trailing stop and time stop, inside the bar.

The rules live here once, as small compiled functions that the per-bar kernel of the
single backtest, the generic batched path and the fused kernels all call; the tests
keep a plain Python loop of the same rules (``tests/engine_reference.py``).

Levels (long; a short is mirrored with highs and lows swapped):

* stop-loss ``SL = entry * (1 - stop_loss)``, take-profit ``TP = entry * (1 + take_profit)``,
  trailing stop ``TSL = peak * (1 - trailing_stop)``, where ``entry`` is the actual entry fill
  and ``peak`` the highest of the entry fill and the highs of the bars strictly before the
  current bar since entry (the trailing level never uses the bar it is triggered in);
* with ``stop_unit = atr`` the distances are multiples of the average true range
  (mean true range over ``atr_lookback`` bars) known when the entry was decided, fixed
  for the trade: ``SL = entry - stop_loss * atr``, ``TSL = peak - trailing_stop * atr``.

Trigger and fill, in this order within a bar (the conservative order):

1. the stop, i.e. the nearer (higher, for a long) of SL and TSL, reported as
   ``trailing_stop`` only when strictly nearer (a tie is a ``stop_loss``): triggered when
   the low reaches it, filled at the level, or at the open when the bar opens through it
   (a gap);
2. otherwise the take-profit: triggered when the high reaches it, filled at the level or
   at the open when the bar opens through it;
3. otherwise the time stop: when a trade has been held ``max_bars`` bars it exits like a
   signal exit (at this bar's close; at the next open for ``next_open`` execution).

A stop is active from the bar after a fill at the close, and from the fill bar itself
for a fill at the open (that bar's high and low then count for the trigger, not for the
trailing peak). After an exit by one of these rules the asset stays flat until the
strategy's target for it changes from the value it had when the exit happened
(``stop_reentry = signal_change``), or, with ``stop_reentry = next_bar``, skips only the
decision at the close of the bar the stop hit and follows the target again from the next
bar's decision on (as vectorbt's ``from_signals``, whose stop exit replaces that bar's signals).

A disabled level is ``NaN`` (``max_bars``: 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from numpy.typing import NDArray

from backtest.errors import ConfigError, DataValidationError

#: Exit reason codes used by the kernels; ``EXIT_REASONS[code]`` is the trades table's label.
NO_EXIT = 0
SIGNAL = 1
REBALANCE = 2
END = 3
STOP_LOSS = 4
TAKE_PROFIT = 5
TRAILING_STOP = 6
MAX_BARS = 7
#: The asset delists (its close is NaN from the next bar): closed at its last close, or
#: at ``close x (1 + delist_return)`` when the data gives one (:mod:`._universe`).
DELISTED = 8
#: The asset leaves the tradable set while it still has prices (``Bars.tradable``).
UNTRADABLE = 9
SESSION_END = 10
EXIT_REASONS = (
    "",
    "signal",
    "rebalance",
    "end",
    "stop_loss",
    "take_profit",
    "trailing_stop",
    "max_bars",
    "delisted",
    "untradable",
    "session_end",
)
#: The reasons set by this module's rules (the summary counts every reason).
STOP_REASONS = ("stop_loss", "take_profit", "trailing_stop", "max_bars")
#: Stop parameters a strategy may override with attributes of the same names.
STOP_FIELDS = (
    "stop_loss",
    "take_profit",
    "trailing_stop",
    "stop_unit",
    "atr_lookback",
    "max_bars",
    "stop_reentry",
)


@numba.njit(cache=True, nogil=True, inline="always")
def _distance(level: float, ref: float, atr: float, use_atr: bool) -> float:
    """Distance of a level from ``ref``: a fraction of ``ref`` or a multiple of the ATR."""
    return level * atr if use_atr else level * ref


@numba.njit(cache=True, nogil=True, inline="always")
def intrabar_exit(
    direction: float,
    entry: float,
    peak: float,
    atr: float,
    use_atr: bool,
    stop_loss: float,
    take_profit: float,
    trailing_stop: float,
    open_: float,
    high: float,
    low: float,
) -> tuple[int, float]:  # pragma: no cover - compiled; equal to the reference loop in the tests
    """Whether a position is stopped out inside this bar, and at which price.

    Args:
        direction: +1 long, -1 short (0: nothing held, never exits).
        entry: The trade's entry fill price.
        peak: Long: the highest of ``entry`` and the highs of earlier bars since entry;
            short: the lowest of ``entry`` and those lows (see :func:`update_peak`).
        atr: The trade's ATR (ignored unless ``use_atr``; NaN disables every level).
        use_atr: Levels are ATR multiples instead of fractions of the price.
        stop_loss: Stop-loss level (fraction or ATR multiple); NaN when disabled.
        take_profit: Take-profit level; NaN when disabled.
        trailing_stop: Trailing-stop level; NaN when disabled.
        open_: This bar's open.
        high: This bar's high.
        low: This bar's low.

    Returns:
        ``(reason, fill)``: :data:`NO_EXIT` and NaN, or :data:`STOP_LOSS`,
        :data:`TRAILING_STOP` or :data:`TAKE_PROFIT` and the fill price.
    """
    if direction == 0.0:
        return NO_EXIT, np.nan
    stop = np.nan
    reason = NO_EXIT
    if direction > 0.0:
        if stop_loss == stop_loss:
            stop = entry - _distance(stop_loss, entry, atr, use_atr)
            reason = STOP_LOSS
        if trailing_stop == trailing_stop:
            trail = peak - _distance(trailing_stop, peak, atr, use_atr)
            if trail == trail and not (stop >= trail):  # no SL, or the trail strictly nearer
                stop = trail
                reason = TRAILING_STOP
        if stop == stop and low <= stop:
            return reason, min(open_, stop)
        if take_profit == take_profit:
            target = entry + _distance(take_profit, entry, atr, use_atr)
            if high >= target:
                return TAKE_PROFIT, max(open_, target)
        return NO_EXIT, np.nan
    if stop_loss == stop_loss:
        stop = entry + _distance(stop_loss, entry, atr, use_atr)
        reason = STOP_LOSS
    if trailing_stop == trailing_stop:
        trail = peak + _distance(trailing_stop, peak, atr, use_atr)
        if trail == trail and not (stop <= trail):
            stop = trail
            reason = TRAILING_STOP
    if stop == stop and high >= stop:
        return reason, max(open_, stop)
    if take_profit == take_profit:
        target = entry - _distance(take_profit, entry, atr, use_atr)
        if low <= target:
            return TAKE_PROFIT, min(open_, target)
    return NO_EXIT, np.nan


@numba.njit(cache=True, nogil=True, inline="always")
def update_peak(direction: float, peak: float, high: float, low: float) -> float:
    """The trailing peak after a bar held through: highest high (long) / lowest low (short)."""
    if direction > 0.0:
        return max(peak, high)
    if direction < 0.0:
        return min(peak, low)
    return peak


@numba.njit(cache=True, nogil=True, inline="always")
def time_exit(bars_held: int, max_bars: int) -> bool:
    """Whether the time stop ends a trade held ``bars_held`` bars (``max_bars`` 0: never)."""
    return max_bars > 0 and bars_held >= max_bars


@numba.njit(cache=True, nogil=True, inline="always")
def time_stop(held: float, target: float, bars_held: int, max_bars: int) -> bool:
    """Whether the time stop closes the position ``held`` at this close instead of ``target``.

    Only a target of the same sign is stopped (a flip or a close ends the trade anyway),
    once the trade is held :func:`time_exit`'s ``max_bars``.
    """
    same_sign = (target > 0.0) == (held > 0.0) and (target < 0.0) == (held < 0.0)
    return held != 0.0 and same_sign and time_exit(bars_held, max_bars)


@numba.njit(cache=True, nogil=True, inline="always")
def reentry_gate(target: float, locked: bool, locked_value: float) -> tuple[float, bool]:
    """The target the engine follows after an exit by a stop, and whether it stays locked.

    While ``locked``, a target equal to ``locked_value`` (the strategy's target when the
    exit happened) is replaced by 0 (flat); the first different target unlocks the asset
    and is followed. With ``stop_reentry = next_bar`` the kernel never locks; it holds the
    target at 0 for the decision at the stop bar's close only.
    """
    if locked:
        if target == locked_value:
            return 0.0, True
        return target, False
    return target, False


@numba.njit(cache=True, nogil=True)
def average_true_range(
    high: NDArray[np.float64], low: NDArray[np.float64], close: NDArray[np.float64], lookback: int
) -> NDArray[np.float64]:  # pragma: no cover - compiled; checked against pandas in the tests
    """Mean true range over the last ``lookback`` bars, known at each bar's close (NaN before).

    True range ``TR[t] = max(high - low, |high - close[t-1]|, |low - close[t-1]|)``, and
    ``TR[0] = high[0] - low[0]``. Uses data up to ``t`` only.
    """
    n = close.shape[0]
    out = np.full(n, np.nan)
    total = 0.0
    tr = np.empty(n)
    for t in range(n):
        rng = high[t] - low[t]
        if t > 0:
            rng = max(rng, abs(high[t] - close[t - 1]), abs(low[t] - close[t - 1]))
        tr[t] = rng
        total += rng
        if t >= lookback:
            total -= tr[t - lookback]
        if t >= lookback - 1:
            out[t] = total / lookback
    return out


# ---------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class StopRules:
    """The exits of a backtest, validated (``NaN`` / 0 = disabled).

    Attributes:
        stop_loss: Fraction below (long) / above (short) the entry fill, in (0, 1); or an
            ATR multiple (> 0) with ``stop_unit = "atr"``.
        take_profit: Fraction above (long) / below (short) the entry fill, same units.
        trailing_stop: Fraction (or ATR multiple) below the highest high since entry
            (long) / above the lowest low (short).
        stop_unit: ``"fraction"`` or ``"atr"``.
        atr_lookback: Bars in the average true range (``stop_unit = "atr"``).
        max_bars: Time stop: exit a trade held this many bars (0: none).
        stop_reentry: ``"signal_change"`` (stay flat until the target changes) or
            ``"next_bar"``.
    """

    stop_loss: float = math.nan
    take_profit: float = math.nan
    trailing_stop: float = math.nan
    stop_unit: str = "fraction"
    atr_lookback: int = 14
    max_bars: int = 0
    stop_reentry: str = "signal_change"

    @property
    def active(self) -> bool:
        """Whether any exit rule is set."""
        return self.needs_high_low or self.max_bars > 0

    @property
    def needs_high_low(self) -> bool:
        """Whether a price level is set (these trigger on highs and lows)."""
        return any(
            not math.isnan(v) for v in (self.stop_loss, self.take_profit, self.trailing_stop)
        )

    @property
    def use_atr(self) -> bool:
        """Whether levels are ATR multiples."""
        return self.stop_unit == "atr"

    @property
    def lock(self) -> bool:
        """Whether an exit locks the asset flat until the target changes."""
        return self.stop_reentry == "signal_change"

    def levels(self) -> tuple[float, float, float]:
        """``(stop_loss, take_profit, trailing_stop)`` with NaN for disabled ones."""
        return self.stop_loss, self.take_profit, self.trailing_stop


def _enum_value(value: object) -> object:
    return getattr(value, "value", value)


def stop_rules(engine: Any = None, strategy: object | None = None, **overrides: Any) -> StopRules:
    """Validated exits from an engine config and/or keywords, overridden by the strategy.

    Keywords (``engine.*`` options given to :func:`~backtest.engine.simulate`) override the
    config object; a strategy overrides both with an attribute of the same name
    (``stop_loss = 0.05``) that is not ``None``.

    Raises:
        ConfigError: a level <= 0 (or >= 1 as a fraction), an ATR lookback < 1, a
            ``max_bars`` below 1 or an unknown ``stop_unit`` / ``stop_reentry``, naming the key.
    """
    values: dict[str, Any] = {}
    for name in STOP_FIELDS:
        value = getattr(engine, name, None) if engine is not None else None
        if overrides.get(name) is not None:
            value = overrides[name]
        if strategy is not None and getattr(strategy, name, None) is not None:
            value = getattr(strategy, name)
        if value is not None:
            values[name] = _enum_value(value)
    if values.get("max_bars") == 0:  # 0 is the kernels' "none", never a setting
        raise ConfigError(
            "engine.max_bars=0 would be a time stop that never fires: leave it unset "
            "(engine.max_bars=null) for no time stop, or give the bars to hold (>= 1)",
            key="engine.max_bars",
        )
    return validate_stop_rules(**values)


def validate_stop_rules(
    *,
    stop_loss: float | None = None,
    take_profit: float | None = None,
    trailing_stop: float | None = None,
    stop_unit: str = "fraction",
    atr_lookback: int = 14,
    max_bars: int | None = 0,
    stop_reentry: str = "signal_change",
) -> StopRules:
    """:class:`StopRules` from plain values, each checked (see :func:`stop_rules`)."""
    unit = str(_enum_value(stop_unit))
    if unit not in ("fraction", "atr"):
        raise ConfigError(
            f"engine.stop_unit must be 'fraction' or 'atr', got {stop_unit!r}",
            key="engine.stop_unit",
        )
    reentry = str(_enum_value(stop_reentry))
    if reentry not in ("signal_change", "next_bar"):
        raise ConfigError(
            f"engine.stop_reentry must be 'signal_change' or 'next_bar', got {stop_reentry!r}",
            key="engine.stop_reentry",
        )
    levels = []
    for name, value in (
        ("stop_loss", stop_loss),
        ("take_profit", take_profit),
        ("trailing_stop", trailing_stop),
    ):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            levels.append(math.nan)
            continue
        v = float(value)
        if unit == "fraction" and not (0.0 < v < 1.0):
            raise ConfigError(
                f"engine.{name} is a fraction of the entry price and must be in (0, 1), "
                f"got {value} (use e.g. 0.05 for 5%, or stop_unit: atr for ATR multiples)",
                key=f"engine.{name}",
            )
        if unit == "atr" and not (0.0 < v < math.inf):
            raise ConfigError(
                f"engine.{name} is an ATR multiple and must be > 0, got {value}",
                key=f"engine.{name}",
            )
        levels.append(v)
    lookback = int(atr_lookback)
    if lookback < 1 or lookback != atr_lookback:
        raise ConfigError(
            f"engine.atr_lookback must be an integer >= 1, got {atr_lookback}",
            key="engine.atr_lookback",
        )
    if isinstance(max_bars, float) and math.isnan(max_bars):  # a missing cell: none
        max_bars = None
    bars = 0 if max_bars is None else int(max_bars)
    if bars < 0 or (max_bars is not None and bars != max_bars):
        raise ConfigError(
            f"engine.max_bars must be an integer >= 1 (or 0/null for none), got {max_bars}",
            key="engine.max_bars",
        )
    return StopRules(levels[0], levels[1], levels[2], unit, lookback, bars, reentry)


def stop_atr(
    rules: StopRules,
    high: NDArray[np.float64] | None,
    low: NDArray[np.float64] | None,
    close: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Per bar and asset, the ATR a trade decided at that bar uses (NaN array when unused)."""
    if not rules.use_atr or high is None or low is None:
        return np.full(close.shape, np.nan)
    out = np.empty(close.shape)
    for j in range(close.shape[1]):
        out[:, j] = average_true_range(
            np.ascontiguousarray(high[:, j], dtype=np.float64),
            np.ascontiguousarray(low[:, j], dtype=np.float64),
            np.ascontiguousarray(close[:, j], dtype=np.float64),
            rules.atr_lookback,
        )
    return out


def require_high_low(
    open_: object | None, high: object | None, low: object | None, *, key: str = "engine.stop_loss"
) -> None:
    """Check that the data has the opens, highs and lows price-level exits trigger on.

    Raises:
        DataValidationError: a missing field, naming the column and the config key using it.
    """
    for column, values in (("high", high), ("low", low), ("open", open_)):
        if values is None:
            raise DataValidationError(
                f"{key} (and take_profit / trailing_stop) trigger on each bar's high and low "
                f"and gap at its open, but the data has no {column!r} column; load OHLC data "
                "(a long file with open/high/low/close columns, or data.source=sample) or "
                "remove the stop levels",
                column=column,
            )


def exit_reason_counts(trades: Any) -> dict[str, int]:
    """Trades per exit reason (``signal``, ``stop_loss``, ...), in ``EXIT_REASONS`` order.

    >>> import pandas as pd
    >>> exit_reason_counts(pd.DataFrame({"exit_reason": ["stop_loss", "signal", "stop_loss"]}))
    {'signal': 1, 'stop_loss': 2}
    """
    if trades is None or "exit_reason" not in getattr(trades, "columns", ()):
        return {}
    counts = trades["exit_reason"].value_counts()
    order = [r for r in EXIT_REASONS if r] + sorted(set(counts.index) - set(EXIT_REASONS))
    return {str(r): int(counts[r]) for r in order if r in counts.index}
