"""Cutting a price history into train and test windows.

Every splitter returns :class:`Splits`: folds whose ``train`` and ``test`` are sorted
bar positions into the price index. Positions, not timestamps, so a fold applies to
any array aligned with the prices.

* rolling: a train window of ``train_bars`` slides forward by ``step_bars``;
* anchored (expanding): the train window always starts at the first bar;
* calendar: the same with lengths such as ``3Y`` / ``1Y`` / ``6M`` / ``2W`` / ``10D``;
* CPCV (combinatorial purged cross-validation, López de Prado 2018, ch. 12): the
  bars are cut into ``n_groups`` contiguous groups and every choice of
  ``n_test_groups`` of them is a test set; train bars within ``gap_bars`` of a test
  group are purged (before it) and embargoed (after it). The splits combine into
  ``C(n_groups - 1, n_test_groups - 1)`` complete out-of-sample paths.

``gap_bars`` bars between a train window and its test window belong to neither.
Only complete test windows are used.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.config import (
    DEFAULT_TEST_BARS,
    DEFAULT_TRAIN_BARS,
    Splitter,
    WalkForwardConfig,
)
from backtest.errors import ConfigError

_PERIOD = re.compile(r"^\s*(\d+)\s*([DWMQY])\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Fold:
    """One split of the bars into a train set and a test set.

    Attributes:
        fold: Fold number, from 0 in time order (split order for CPCV).
        train: Sorted bar positions the parameters are chosen on.
        test: Sorted bar positions they are then traded on, out of sample.
        test_groups: CPCV: the groups forming the test set (empty otherwise).
    """

    fold: int
    train: NDArray[np.int64]
    test: NDArray[np.int64]
    test_groups: tuple[int, ...] = ()

    @property
    def train_start(self) -> int:
        """First train bar."""
        return int(self.train[0])

    @property
    def train_end(self) -> int:
        """One past the last train bar."""
        return int(self.train[-1]) + 1

    @property
    def test_start(self) -> int:
        """First test bar."""
        return int(self.test[0])

    @property
    def test_end(self) -> int:
        """One past the last test bar."""
        return int(self.test[-1]) + 1


@dataclass(frozen=True, slots=True)
class Splits:
    """The folds of a splitter, plus the CPCV path layout.

    Attributes:
        folds: The folds, in order.
        splitter: ``rolling``, ``anchored``, ``calendar`` (windows as calendar periods),
            ``calendar, anchored`` or ``cpcv``.
        group_bounds: CPCV: ``n_groups + 1`` bar positions bounding the groups.
        paths: CPCV: ``(n_paths, n_groups)`` fold numbers: on path p, group g is
            traded with the parameters chosen by fold ``paths[p, g]``.
    """

    folds: tuple[Fold, ...]
    splitter: str
    group_bounds: NDArray[np.int64] | None = None
    paths: NDArray[np.int64] | None = None

    def __len__(self) -> int:
        return len(self.folds)


def _check_int(name: str, value: int | None, minimum: int) -> int:
    if value is None or isinstance(value, bool) or int(value) != value or value < minimum:
        raise ConfigError(
            f"walkforward.{name} must be an integer >= {minimum}, got {value!r}",
            key=f"walkforward.{name}",
        )
    return int(value)


def _arange(lo: int, hi: int) -> NDArray[np.int64]:
    return np.arange(lo, hi, dtype=np.int64)


def rolling_splits(
    n_bars: int,
    *,
    train_bars: int,
    test_bars: int,
    step_bars: int | None = None,
    gap_bars: int = 0,
    anchored: bool = False,
) -> Splits:
    """Rolling (or anchored) windows counted in bars.

    Fold i trains on bars ``[s_i, s_i + train_bars)`` with ``s_i = i * step_bars``
    (``[0, ...)`` when anchored), skips ``gap_bars`` and tests on the next
    ``test_bars`` bars. With ``step_bars == test_bars`` the test windows tile the
    history after the first train window.

    Args:
        n_bars: Bars in the price history.
        train_bars: Bars in each (first, when anchored) train window.
        test_bars: Bars in each test window.
        step_bars: Bars between fold starts; ``test_bars`` when None.
        gap_bars: Bars purged between train and test.
        anchored: Expanding train windows that all start at bar 0.

    Returns:
        The :class:`Splits`.

    Raises:
        ConfigError: A non-positive length (naming the key), or fewer bars than one
            fold needs (key ``walkforward.train_bars``).

    Examples:
        >>> s = rolling_splits(2520, train_bars=756, test_bars=252)
        >>> len(s), s.folds[-1].test_end
        (7, 2520)
    """
    train_bars = _check_int("train_bars", train_bars, 1)
    test_bars = _check_int("test_bars", test_bars, 1)
    step = _check_int("step_bars", test_bars if step_bars is None else step_bars, 1)
    gap = _check_int("gap_bars", gap_bars, 0)
    need = train_bars + gap + test_bars
    if n_bars < need:
        raise ConfigError(
            f"{n_bars} bars are too few for one walk-forward fold: train_bars {train_bars} + "
            f"gap_bars {gap} + test_bars {test_bars} = {need}",
            key="walkforward.train_bars",
        )
    folds = []
    for i in range((n_bars - need) // step + 1):
        start = i * step
        train_end = start + train_bars
        test_start = train_end + gap
        train = _arange(0 if anchored else start, train_end)
        folds.append(Fold(i, train, _arange(test_start, test_start + test_bars)))
    return Splits(tuple(folds), "anchored" if anchored else "rolling")


def parse_period(text: str, key: str) -> pd.DateOffset:
    """``"3Y"``, ``"6M"``, ``"1Q"``, ``"2W"``, ``"10D"`` as a calendar offset.

    Raises:
        ConfigError: Anything else, naming ``key``.
    """
    match = _PERIOD.match(str(text))
    if not match or int(match.group(1)) < 1:
        raise ConfigError(
            f"{key} must be a positive count and a unit D, W, M, Q or Y (e.g. '3Y'), got {text!r}",
            key=key,
        )
    n, unit = int(match.group(1)), match.group(2).upper()
    kwargs = {
        "D": {"days": n},
        "W": {"weeks": n},
        "M": {"months": n},
        "Q": {"months": 3 * n},
        "Y": {"years": n},
    }[unit]
    return pd.DateOffset(**kwargs)


def calendar_splits(
    index: pd.DatetimeIndex,
    *,
    train_period: str,
    test_period: str,
    step_period: str | None = None,
    gap_bars: int = 0,
    anchored: bool = False,
) -> Splits:
    """Rolling (or anchored) windows of calendar length, e.g. 3 years train, 1 year test.

    Fold i's train window covers ``[t0 + i·step, t0 + i·step + train)`` in time (from
    the first bar when anchored), where ``t0`` is the first timestamp; its test window
    the following ``test_period``, shifted ``gap_bars`` bars later (the purged bars),
    so consecutive test windows still tile the history.
    A test window is used only when the data reaches its end (the last bar is less
    than one median bar spacing before it).

    Args:
        index: The prices' ``DatetimeIndex``.
        train_period: Train length, e.g. ``"3Y"``.
        test_period: Test length, e.g. ``"1Y"``.
        step_period: Step between folds; ``test_period`` when None.
        gap_bars: Bars purged between train and test.
        anchored: Expanding train windows from the first bar.

    Returns:
        The :class:`Splits`.

    Raises:
        ConfigError: A malformed period (naming the key) or data too short for one
            fold (key ``walkforward.train_period``).
    """
    gap = _check_int("gap_bars", gap_bars, 0)
    train_off = parse_period(train_period, "walkforward.train_period")
    test_off = parse_period(test_period, "walkforward.test_period")
    step_off = parse_period(step_period or test_period, "walkforward.step_period")
    if len(index) < 2:
        raise ConfigError("walk-forward needs at least two bars", key="walkforward.train_period")
    t0 = index[0]
    spacing = pd.Series(index).diff().median()
    folds: list[Fold] = []
    i = 0
    while True:
        start_t = t0 + step_off * i if i else t0
        train_end_t = start_t + train_off
        test_end_t = train_end_t + test_off
        if index[-1] + spacing < test_end_t:
            break
        lo = 0 if anchored else int(index.searchsorted(start_t))
        train_end = int(index.searchsorted(train_end_t))
        test_end = int(index.searchsorted(test_end_t))
        if test_end + gap > len(index):
            break
        if train_end > lo and test_end > train_end:
            folds.append(
                Fold(len(folds), _arange(lo, train_end), _arange(train_end + gap, test_end + gap))
            )
        i += 1
    if not folds:
        raise ConfigError(
            f"{len(index)} bars from {index[0].date()} to {index[-1].date()} are too short for "
            f"one fold of train_period {train_period!r} + test_period {test_period!r}",
            key="walkforward.train_period",
        )
    return Splits(tuple(folds), "calendar, anchored" if anchored else "calendar")


def cpcv_splits(
    n_bars: int,
    *,
    n_groups: int,
    n_test_groups: int,
    gap_bars: int = 0,
    embargo_bars: int | None = None,
    warmup_bars: int | None = None,
) -> Splits:
    """Combinatorial purged cross-validation splits and their out-of-sample paths.

    The bars are cut into ``n_groups`` contiguous groups of (nearly) equal size. Each
    of the ``C(n_groups, n_test_groups)`` choices of test groups is a fold; its train
    set is every other bar except the ``gap_bars`` bars before each test group
    (purged) and the bars after it whose returns depend on it (embargoed): the
    ``embargo_bars`` after it, and at least ``warmup_bars + 1`` when the strategy's
    warm-up is given. A strategy whose first position can come at bar ``W`` (its
    longest lookback) holds at bar t a position computed from closes ``t-W .. t``, so
    the return of bar t reads closes ``t-1-W .. t``: the ``W + 1`` bars after a test
    group still read its closes through their indicators, and are not trained on.

    Args:
        n_bars: Bars in the price history.
        n_groups: Number of contiguous groups, at least 2.
        n_test_groups: Groups per test set, in [1, n_groups).
        gap_bars: Bars purged before each test group.
        embargo_bars: Bars embargoed after each test group; ``gap_bars`` when None.
        warmup_bars: The strategy's warm-up ``W`` (bars before its first possible
            position); at least ``W + 1`` bars are then embargoed after each test group.
            None: only ``embargo_bars``.

    Returns:
        The :class:`Splits`, with ``group_bounds`` and ``paths``
        (``C(n_groups - 1, n_test_groups - 1)`` of them).

    Raises:
        ConfigError: Bad group counts (naming the key) or too few bars (key
            ``walkforward.n_groups``).

    Examples:
        >>> s = cpcv_splits(600, n_groups=6, n_test_groups=2, gap_bars=5)
        >>> len(s), s.paths.shape
        (15, (5, 6))
        >>> s = cpcv_splits(600, n_groups=6, n_test_groups=1, warmup_bars=19)
        >>> int(s.folds[0].train[0])  # group 0 is bars 0..99; 100..119 read it
        120
    """
    n_groups = _check_int("n_groups", n_groups, 2)
    k = _check_int("n_test_groups", n_test_groups, 1)
    if k >= n_groups:
        raise ConfigError(
            f"walkforward.n_test_groups ({k}) must be smaller than n_groups ({n_groups})",
            key="walkforward.n_test_groups",
        )
    gap = _check_int("gap_bars", gap_bars, 0)
    embargo = _check_int("embargo_bars", gap if embargo_bars is None else embargo_bars, 0)
    if warmup_bars is not None:
        embargo = max(embargo, _check_int("warmup_bars", warmup_bars, 0) + 1)
    if n_bars < 2 * n_groups:
        raise ConfigError(
            f"{n_bars} bars are too few for {n_groups} CPCV groups of at least two bars",
            key="walkforward.n_groups",
        )
    bounds = np.linspace(0, n_bars, n_groups + 1).round().astype(np.int64)
    folds = []
    for i, chosen in enumerate(combinations(range(n_groups), k)):
        in_test = np.zeros(n_bars, dtype=bool)
        blocked = np.zeros(n_bars, dtype=bool)
        for g in chosen:
            lo, hi = int(bounds[g]), int(bounds[g + 1])
            in_test[lo:hi] = True
            blocked[max(0, lo - gap) : min(n_bars, hi + embargo)] = True
        train = np.flatnonzero(~blocked).astype(np.int64)
        if train.size == 0:
            raise ConfigError(
                f"gap_bars {gap} / embargo_bars {embargo} leave no train bars in CPCV fold {i}",
                key="walkforward.gap_bars",
            )
        folds.append(Fold(i, train, np.flatnonzero(in_test).astype(np.int64), tuple(chosen)))
    n_paths = math.comb(n_groups - 1, k - 1)
    paths = np.empty((n_paths, n_groups), dtype=np.int64)
    for g in range(n_groups):
        paths[:, g] = [f.fold for f in folds if g in f.test_groups]
    return Splits(tuple(folds), "cpcv", group_bounds=bounds, paths=paths)


def make_splits(
    config: WalkForwardConfig, index: pd.DatetimeIndex, *, warmup_bars: int | None = None
) -> Splits:
    """The splits a :class:`~backtest.config.WalkForwardConfig` describes over ``index``.

    Rolling and anchored splitters use calendar periods (``train_period``/``test_period``)
    or bar counts; :func:`backtest.config._conflicts.check_conflicts` refuses both at once.
    ``warmup_bars`` (the strategy's longest lookback) embargoes CPCV train bars whose
    indicators read a test group; rolling and anchored train windows end before their
    test windows and need none.

    Raises:
        ConfigError: Invalid settings or data too short for one fold, naming the key.
    """
    splitter = Splitter(config.splitter)
    anchored = splitter is Splitter.anchored
    if splitter is Splitter.cpcv:
        return cpcv_splits(
            len(index),
            n_groups=config.n_groups,
            n_test_groups=config.n_test_groups,
            gap_bars=config.gap_bars,
            warmup_bars=warmup_bars,
        )
    if config.train_period or config.test_period:
        if not (config.train_period and config.test_period):
            missing = "test_period" if config.train_period else "train_period"
            raise ConfigError(
                f"walkforward.{missing} must be set together with the other calendar period",
                key=f"walkforward.{missing}",
            )
        return calendar_splits(
            index,
            train_period=config.train_period,
            test_period=config.test_period,
            step_period=config.step_period,
            gap_bars=config.gap_bars,
            anchored=anchored,
        )
    return rolling_splits(
        len(index),
        train_bars=DEFAULT_TRAIN_BARS if config.train_bars is None else config.train_bars,
        test_bars=DEFAULT_TEST_BARS if config.test_bars is None else config.test_bars,
        step_bars=config.step_bars,
        gap_bars=config.gap_bars,
        anchored=anchored,
    )
