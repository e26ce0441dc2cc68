"""Walk-forward: splitters (properties with Hypothesis) and the optimizer."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backtest.config import Splitter, WalkForwardConfig
from backtest.errors import ConfigError
from backtest.walkforward import (
    Splits,
    calendar_splits,
    cpcv_splits,
    make_splits,
    parse_period,
    rolling_splits,
)

# ----------------------------------------------------------------------------- splitters


def _assert_disjoint_with_gap(splits: Splits, n_bars: int, gap: int) -> None:
    for f in splits.folds:
        assert len(f.train)
        assert len(f.test)
        assert f.train.min() >= 0
        assert f.test.max() < n_bars
        assert np.all(np.diff(f.train) > 0)
        assert np.all(np.diff(f.test) > 0)
        assert not np.intersect1d(f.train, f.test).size
        # No train bar within `gap` bars of any test bar, either side.
        dist = np.abs(f.train[:, None] - f.test[None, :]).min()
        assert dist > gap


@settings(max_examples=150, deadline=None)
@given(
    n_bars=st.integers(10, 600),
    train=st.integers(1, 200),
    test=st.integers(1, 100),
    step=st.one_of(st.none(), st.integers(1, 120)),
    gap=st.integers(0, 20),
    anchored=st.booleans(),
)
def test_rolling_test_windows_never_overlap_train(
    n_bars: int, train: int, test: int, step: int | None, gap: int, anchored: bool
) -> None:
    need = train + gap + test
    if n_bars < need:
        with pytest.raises(ConfigError) as err:
            rolling_splits(n_bars, train_bars=train, test_bars=test, step_bars=step, gap_bars=gap)
        assert err.value.key == "walkforward.train_bars"
        return
    s = rolling_splits(
        n_bars, train_bars=train, test_bars=test, step_bars=step, gap_bars=gap, anchored=anchored
    )
    _assert_disjoint_with_gap(s, n_bars, gap)
    stride = step or test
    # Reference: every fold that fits, enumerated plainly.
    expected = [i for i in range(n_bars) if i * stride + need <= n_bars]
    assert len(s) == len(expected)
    for f in s.folds:
        assert f.test_start - f.train_end == gap
        assert len(f.test) == test
        assert f.train_start == (0 if anchored else f.fold * stride)
        assert f.train_end == f.fold * stride + train
    assert s.folds[-1].test_end + stride > n_bars  # no complete fold left out


def test_rolling_issue_window_counts() -> None:
    # Issue 4: train 756 / test 252 / step 252 -> 7 windows on 2,520 bars, 97 on 25,200.
    assert len(rolling_splits(2520, train_bars=756, test_bars=252, step_bars=252)) == 7
    assert len(rolling_splits(25_200, train_bars=756, test_bars=252, step_bars=252)) == 97


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"train_bars": 0, "test_bars": 5}, "walkforward.train_bars"),
        ({"train_bars": 5, "test_bars": 0}, "walkforward.test_bars"),
        ({"train_bars": 5, "test_bars": 5, "gap_bars": -1}, "walkforward.gap_bars"),
        ({"train_bars": 5, "test_bars": 5, "step_bars": 0}, "walkforward.step_bars"),
        ({"train_bars": 90, "test_bars": 20}, "walkforward.train_bars"),
    ],
    ids=["train0", "test0", "gap-neg", "step0", "too-short"],
)
def test_rolling_errors_name_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        rolling_splits(100, **kwargs)
    assert err.value.key == key


@settings(max_examples=60, deadline=None)
@given(
    years=st.integers(1, 3),
    test_months=st.sampled_from([3, 6, 12]),
    gap=st.integers(0, 10),
    anchored=st.booleans(),
)
def test_calendar_windows_follow_the_calendar(
    years: int, test_months: int, gap: int, anchored: bool
) -> None:
    idx = pd.bdate_range("2010-01-04", periods=1800)
    s = calendar_splits(
        idx,
        train_period=f"{years}Y",
        test_period=f"{test_months}M",
        gap_bars=gap,
        anchored=anchored,
    )
    _assert_disjoint_with_gap(s, len(idx), gap)
    for f in s.folds:
        start = idx[0] + pd.DateOffset(months=test_months * f.fold)
        train_end_t = start + pd.DateOffset(years=years)
        assert idx[f.train_end - 1] < train_end_t <= idx[f.train_end]
        assert idx[f.train_start] == (idx[0] if anchored else idx[idx.searchsorted(start)])
        assert idx[f.test_end - 1] < train_end_t + pd.DateOffset(months=test_months)
        assert f.test_start - f.train_end == gap
    # The test windows tile the calendar: one starts where the previous ended.
    for a, b in zip(s.folds, s.folds[1:], strict=False):
        assert b.test_start == a.test_end + gap


def test_calendar_three_years_one_year_on_ten_years_of_days() -> None:
    idx = pd.bdate_range("2010-01-04", periods=2520)  # ends 2019-08-30
    s = calendar_splits(idx, train_period="3Y", test_period="1Y")
    assert len(s) == 6  # tests 2013 ... 2018; 2019 is incomplete
    assert idx[s.folds[0].test_start] == pd.Timestamp("2013-01-04")
    assert idx[s.folds[-1].test_end - 1] == pd.Timestamp("2019-01-03")


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("3Y", pd.DateOffset(years=3)),
        ("6m", pd.DateOffset(months=6)),
        ("1Q", pd.DateOffset(months=3)),
        ("2W", pd.DateOffset(weeks=2)),
        ("10D", pd.DateOffset(days=10)),
    ],
    ids=["Y", "M", "Q", "W", "D"],
)
def test_parse_period(text: str, offset: pd.DateOffset) -> None:
    assert (
        pd.Timestamp("2020-01-31") + parse_period(text, "k") == pd.Timestamp("2020-01-31") + offset
    )


def test_calendar_errors_name_the_key() -> None:
    idx = pd.bdate_range("2010-01-04", periods=300)
    with pytest.raises(ConfigError) as err:
        calendar_splits(idx, train_period="3 years", test_period="1Y")
    assert err.value.key == "walkforward.train_period"
    with pytest.raises(ConfigError) as err:
        calendar_splits(idx, train_period="3Y", test_period="1Y")
    assert err.value.key == "walkforward.train_period"
    with pytest.raises(ConfigError) as err:
        make_splits(WalkForwardConfig(train_period="1Y"), idx)
    assert err.value.key == "walkforward.test_period"


def _blocked(bounds: np.ndarray, groups: tuple[int, ...], gap: int, n_bars: int) -> set[int]:
    out: set[int] = set()
    for g in groups:
        out |= set(range(max(0, bounds[g] - gap), min(n_bars, bounds[g + 1] + gap)))
    return out


@settings(max_examples=80, deadline=None)
@given(
    n_bars=st.integers(40, 400),
    n_groups=st.integers(2, 8),
    k=st.integers(1, 4),
    gap=st.integers(0, 4),
)
def test_cpcv_purges_embargoes_and_builds_paths(
    n_bars: int, n_groups: int, k: int, gap: int
) -> None:
    if k >= n_groups:
        with pytest.raises(ConfigError) as err:
            cpcv_splits(n_bars, n_groups=n_groups, n_test_groups=k, gap_bars=gap)
        assert err.value.key == "walkforward.n_test_groups"
        return
    bounds = np.linspace(0, n_bars, n_groups + 1).round().astype(np.int64)
    span = max(bounds[1:] - bounds[:-1])
    if n_bars - k * span - 2 * k * gap <= 0 and any(
        not (set(range(n_bars)) - _blocked(bounds, c, gap, n_bars))
        for c in combinations(range(n_groups), k)
    ):
        with pytest.raises(ConfigError) as err:
            cpcv_splits(n_bars, n_groups=n_groups, n_test_groups=k, gap_bars=gap)
        assert err.value.key == "walkforward.gap_bars"
        return
    s = cpcv_splits(n_bars, n_groups=n_groups, n_test_groups=k, gap_bars=gap)
    assert len(s) == math.comb(n_groups, k)
    _assert_disjoint_with_gap(s, n_bars, gap)
    bounds = s.group_bounds
    assert bounds[0] == 0
    assert bounds[-1] == n_bars
    for f in s.folds:
        expected_test = np.concatenate([np.arange(bounds[g], bounds[g + 1]) for g in f.test_groups])
        np.testing.assert_array_equal(f.test, expected_test)
        # Purged/embargoed train: everything else, minus `gap` bars either side of the test.
        blocked = _blocked(bounds, f.test_groups, gap, n_bars)
        np.testing.assert_array_equal(f.train, sorted(set(range(n_bars)) - blocked))
    # Paths: C(N-1, k-1) of them; each traverses every group once, each with a fold
    # that tested it, and every (fold, group) test pair is used by exactly one path.
    assert s.paths.shape == (math.comb(n_groups - 1, k - 1), n_groups)
    pairs = set()
    for path in s.paths:
        for g, fold in enumerate(path):
            assert g in s.folds[fold].test_groups
            pairs.add((int(fold), g))
    assert len(pairs) == s.paths.size == sum(len(f.test_groups) for f in s.folds)


def test_make_splits_dispatches_on_the_config() -> None:
    idx = pd.bdate_range("2010-01-04", periods=2520)
    assert len(make_splits(WalkForwardConfig(), idx)) == 7
    anchored = make_splits(WalkForwardConfig(splitter=Splitter.anchored), idx)
    assert all(f.train_start == 0 for f in anchored.folds)
    assert len(make_splits(WalkForwardConfig(train_period="3Y", test_period="1Y"), idx)) == 6
    cp = make_splits(WalkForwardConfig(splitter=Splitter.cpcv, n_groups=6, n_test_groups=2), idx)
    assert cp.splitter == "cpcv"
    assert len(cp) == 15
