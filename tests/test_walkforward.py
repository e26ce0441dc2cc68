"""Walk-forward: splitters (properties with Hypothesis) and the optimizer."""

from __future__ import annotations

import math
from itertools import combinations, pairwise

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backtest import metrics as bm
from backtest.config import Direction, SearchConfig, SearchMethod, Splitter, WalkForwardConfig
from backtest.data import synthetic_prices
from backtest.engine import simulate
from backtest.errors import BacktestError, ConfigError
from backtest.overfitting import deflated_sharpe_ratio, probability_of_backtest_overfitting
from backtest.strategies import Momentum, SmaCross
from backtest.walkforward import (
    Splits,
    StrategyReturnsEvaluator,
    WalkForwardOptimizer,
    WalkForwardResult,
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
        test_end_t = train_end_t + pd.DateOffset(months=test_months)
        assert idx[f.test_end - 1 - gap] < test_end_t
        assert f.test_end - gap == len(idx) or test_end_t <= idx[f.test_end - gap]
        assert f.test_start - f.train_end == gap
    # The test windows tile the history: one starts where the previous ended.
    for a, b in pairwise(s.folds):
        assert b.test_start == a.test_end


def test_calendar_three_years_one_year_on_ten_years_of_days() -> None:
    idx = pd.bdate_range("2010-01-04", periods=2520)  # ends 2019-08-30
    s = calendar_splits(idx, train_period="3Y", test_period="1Y")
    assert len(s) == 6  # tests 2013 ... 2018; 2019 is incomplete
    assert idx[s.folds[0].test_start] == pd.Timestamp("2013-01-04")
    assert idx[s.folds[-1].test_end - 1] == pd.Timestamp("2019-01-03")
    assert s.splitter == "calendar"  # labelled as what it is, not "rolling"
    anchored = calendar_splits(idx, train_period="3Y", test_period="1Y", anchored=True)
    assert anchored.splitter == "calendar, anchored"


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


# ----------------------------------------------------------------------------- optimizer

FEE = 10.0
SMA_SPACE = {"fast": [5, 10, 20], "slow": [30, 60]}
WF = WalkForwardConfig(train_bars=300, test_bars=100)


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    return synthetic_prices(n_bars=900, n_assets=2, seed=7)


@pytest.fixture(scope="module")
def result(prices: pd.DataFrame) -> WalkForwardResult:
    ev = StrategyReturnsEvaluator(prices, SmaCross, fee_bps=FEE)
    return WalkForwardOptimizer(WF, pbo_blocks=4).run(ev, SMA_SPACE)


def _grid() -> list[dict[str, int]]:
    return [{"fast": f, "slow": s} for f in SMA_SPACE["fast"] for s in SMA_SPACE["slow"]]


def test_each_fold_chooses_the_best_train_sharpe_of_an_exhaustive_loop(
    prices: pd.DataFrame, result: WalkForwardResult
) -> None:
    # Reference: simulate() every set on the prices up to the train end, score the
    # train bars only, take the best: written without the walk-forward module.
    assert len(result.folds) == 6
    for row in result.folds.itertuples():
        a = prices.index.get_loc(row.train_start)
        b = prices.index.get_loc(row.train_end) + 1
        scores = []
        for p in _grid():
            r = simulate(prices.iloc[:b], SmaCross(**p), fee_bps=FEE).returns.to_numpy()
            scores.append(bm.sharpe_ratio(r[a:b]))
        best = _grid()[int(np.argmax(scores))]
        assert (row.fast, row.slow) == (best["fast"], best["slow"])
        assert row.is_score == pytest.approx(max(scores), rel=1e-12)
        assert row.n_trials == 6
    assert len(result.trials) == 36


def test_oos_returns_come_from_a_run_ending_at_the_test_window(
    prices: pd.DataFrame, result: WalkForwardResult
) -> None:
    # Each test window: simulate the chosen parameters over prices[:test_end] and take
    # the window's bars; the first bar carries the train position in without a fee.
    # When the next fold switches parameters, moving from the old position to the new
    # one costs fee * sum_j w_j |new_j - old_j| on the window's first bar.
    prev_pos = None
    for row in result.folds.itertuples():
        a = prices.index.get_loc(row.test_start)
        b = prices.index.get_loc(row.test_end) + 1
        bt = simulate(prices.iloc[:b], SmaCross(row.fast, row.slow), fee_bps=FEE)
        expected = bt.returns.to_numpy()[a:b].copy()
        assert row.oos_sharpe_ratio == pytest.approx(bm.sharpe_ratio(expected), rel=1e-12)
        if prev_pos is not None:
            delta = np.abs(bt.positions.to_numpy()[a - 1] - prev_pos[a - 1])
            switch = FEE / 1e4 * float(np.mean(delta))  # equal weights
            expected[0] = (1 + expected[0]) * (1 - switch) - 1
        np.testing.assert_allclose(
            result.returns.to_numpy()[a - 300 : b - 300], expected, rtol=1e-12, atol=1e-15
        )
        prev_pos = bt.positions.to_numpy()
    assert result.returns.index[0] == prices.index[300]
    assert len(result.returns) == 600
    np.testing.assert_allclose(result.equity, (1 + result.returns).cumprod())
    assert result.metrics["sharpe_ratio"] == pytest.approx(bm.sharpe_ratio(result.returns))


@pytest.mark.parametrize("shared", [True, False], ids=["shared-history", "truncated-history"])
@pytest.mark.parametrize("fold", [0, 2, 4], ids=["fold0", "fold2", "fold4"])
def test_no_look_ahead_garbage_after_the_test_window_changes_nothing(
    prices: pd.DataFrame, shared: bool, fold: int
) -> None:
    space = {"fast": [5, 10, 20], "slow": [30, 60, 120]}
    base = WalkForwardOptimizer(WF, pbo_blocks=0).run(
        StrategyReturnsEvaluator(prices, SmaCross, fee_bps=FEE, shared_history=shared), space
    )
    end = prices.index.get_loc(base.folds.loc[fold, "test_end"]) + 1
    garbage = prices.copy()
    rng = np.random.default_rng(fold)
    garbage.iloc[end:] = rng.uniform(1.0, 1e4, size=garbage.iloc[end:].shape)
    other = WalkForwardOptimizer(WF, pbo_blocks=0).run(
        StrategyReturnsEvaluator(garbage, SmaCross, fee_bps=FEE, shared_history=shared), space
    )
    cols = ["fast", "slow", "is_score", "oos_total_return", "oos_sharpe_ratio"]
    pd.testing.assert_frame_equal(base.folds.loc[:fold, cols], other.folds.loc[:fold, cols])
    upto = base.returns.index <= prices.index[end - 1]
    pd.testing.assert_series_equal(base.returns[upto], other.returns[upto])
    # The garbage is really used after the window (the test can fail).
    assert not base.returns.equals(other.returns)


class _PeekingSma:
    """Breaks the Strategy contract: trades on tomorrow's close."""

    @classmethod
    def batch_positions(cls, close: np.ndarray, params: dict) -> np.ndarray:
        tomorrow = np.append(close[1:], close[-1])
        pos = SmaCross.batch_positions(close, params)
        return np.where(tomorrow[:, None] > close[:, None], 1.0, 0.0) * (pos >= 0)


def test_a_strategy_that_looks_ahead_is_refused(prices: pd.DataFrame) -> None:
    ev = StrategyReturnsEvaluator(prices, _PeekingSma, fee_bps=FEE)
    with pytest.raises(BacktestError, match="looks ahead"):
        WalkForwardOptimizer(WF, pbo_blocks=0).run(ev, SMA_SPACE)


def test_overfitting_statistics_use_the_trials_actually_run(
    prices: pd.DataFrame, result: WalkForwardResult
) -> None:
    for row in result.folds.itertuples():
        a = prices.index.get_loc(row.train_start)
        b = prices.index.get_loc(row.train_end) + 1
        mat = np.column_stack(
            [
                simulate(prices.iloc[:b], SmaCross(**p), fee_bps=FEE).returns.to_numpy()[a:b]
                for p in _grid()
            ]
        )
        sharpes = mat.mean(0) / mat.std(0, ddof=1)
        best = _grid().index({"fast": row.fast, "slow": row.slow})
        col = mat[:, best]
        dsr = deflated_sharpe_ratio(
            sharpes[best],
            len(col),
            n_trials=6,
            sharpe_variance=float(np.var(sharpes, ddof=1)),
            skewness=_skew(col),
            kurtosis=_kurt(col),
        )
        assert row.is_dsr == pytest.approx(dsr, rel=1e-9)
        assert row.pbo == probability_of_backtest_overfitting(mat, n_blocks=4).pbo
    of = result.overfitting
    assert of.n_trials == 36
    assert of.deflated_sharpe == pytest.approx(result.folds["is_dsr"].mean())
    assert of.pbo == pytest.approx(result.folds["pbo"].mean())
    assert of.pbo_walkforward == pytest.approx((result.folds["oos_rank"] <= 0.5).mean())
    d = of.degradation
    slope = np.polyfit(result.folds["is_sharpe"], result.folds["oos_sharpe_ratio"], 1)[0]
    assert d.slope == pytest.approx(slope, rel=1e-9)


def _skew(x: np.ndarray) -> float:
    d = x - x.mean()
    return float(np.mean(d**3) / np.mean(d**2) ** 1.5)


def _kurt(x: np.ndarray) -> float:
    d = x - x.mean()
    return float(np.mean(d**4) / np.mean(d**2) ** 2)


def test_efficiency_and_stability(result: WalkForwardResult) -> None:
    f = result.folds
    assert result.efficiency == pytest.approx(result.metrics["cagr"] / f["is_cagr"].mean())
    assert result.sharpe_efficiency == pytest.approx(
        result.metrics["sharpe_ratio"] / f["is_sharpe"].mean()
    )
    st = result.stability["fast"]
    assert sum(st["counts"].values()) == len(f)
    changes = (f["fast"].to_numpy()[1:] != f["fast"].to_numpy()[:-1]).mean()
    assert st["change_rate"] == pytest.approx(changes)
    assert st["mean_abs_step"] == pytest.approx(np.abs(np.diff(f["fast"])).mean())
    assert st["relative_step"] == pytest.approx(st["mean_abs_step"] / 15)
    summary = result.summary()
    assert summary["n_folds"] == 6 and summary["last_params"] == result.last_params
    assert set(summary["overfitting"]) >= {"deflated_sharpe", "pbo", "n_trials"}


@pytest.mark.parametrize("method", [SearchMethod.random, SearchMethod.tpe], ids=["random", "tpe"])
def test_random_and_tpe_searches_are_seeded_per_fold(
    prices: pd.DataFrame, method: SearchMethod
) -> None:
    search = SearchConfig(
        method=method,
        n_iter=6,
        seed=3,
        constraint="fast < slow",
        space={"fast": {"low": 3, "high": 30}, "slow": {"low": 20, "high": 90}},
    )
    ev = StrategyReturnsEvaluator(prices, SmaCross, fee_bps=FEE)
    a = WalkForwardOptimizer(WF, search, pbo_blocks=0).run(ev)
    b = WalkForwardOptimizer(WF, search, pbo_blocks=0).run(ev)
    pd.testing.assert_frame_equal(a.trials, b.trials)
    assert (a.trials["fast"] < a.trials["slow"]).all()
    assert a.trials.groupby("fold").size().max() <= 6
    # Each fold chose the best of its own trials.
    best = a.trials.loc[a.trials.groupby("fold")["score"].idxmax()]
    np.testing.assert_array_equal(best["fast"], a.folds["fast"])
    c = WalkForwardOptimizer(WF, replace_seed(search, 4), pbo_blocks=0).run(ev)
    assert not c.trials.equals(a.trials)


def replace_seed(search: SearchConfig, seed: int) -> SearchConfig:
    return SearchConfig(
        method=search.method,
        n_iter=search.n_iter,
        seed=seed,
        constraint=search.constraint,
        space=search.space,
    )


def test_minimize_direction_and_metric_errors(prices: pd.DataFrame) -> None:
    ev = StrategyReturnsEvaluator(prices, SmaCross, fee_bps=FEE)
    search = SearchConfig(
        method=SearchMethod.grid, metric="max_drawdown", direction=Direction.minimize
    )
    res = WalkForwardOptimizer(WF, search, pbo_blocks=0).run(ev, SMA_SPACE)
    best = res.trials.loc[res.trials.groupby("fold")["score"].idxmin()]
    np.testing.assert_array_equal(best["slow"], res.folds["slow"])
    with pytest.raises(ConfigError) as err:
        WalkForwardOptimizer(WF, SearchConfig(metric="win_rate"))
    assert err.value.key == "search.metric"
    with pytest.raises(ConfigError) as err:
        WalkForwardOptimizer(WalkForwardConfig(train_bars=800, test_bars=200)).run(ev, SMA_SPACE)
    assert err.value.key == "walkforward.train_bars"
    with pytest.raises(ConfigError) as err:
        WalkForwardOptimizer(WF, SearchConfig(constraint="fast < slow")).run(
            ev, {"fast": [50], "slow": [30]}
        )
    assert err.value.key == "search.constraint"


def test_cpcv_paths_cover_every_bar(prices: pd.DataFrame) -> None:
    cfg = WalkForwardConfig(splitter=Splitter.cpcv, n_groups=5, n_test_groups=2, gap_bars=5)
    ev = StrategyReturnsEvaluator(prices, Momentum, fee_bps=FEE)
    res = WalkForwardOptimizer(cfg, pbo_blocks=0).run(
        ev, {"lookback": [10, 40, 80], "skip": [0, 5]}
    )
    assert len(res.folds) == 10
    assert res.paths is not None and res.paths.shape == (900, 4)
    assert res.path_metrics is not None and len(res.path_metrics) == 4
    pd.testing.assert_series_equal(res.returns, res.paths["path_0"].rename("returns"))
    # A group is traded, on every path, with a fold that tested it; its bars' returns
    # come from a run of that fold's parameters over the prices up to the group's end.
    bounds = res.splits.group_bounds
    for p, path in enumerate(res.splits.paths):
        g = 3
        fold = res.folds.iloc[int(path[g])]
        lo, hi = int(bounds[g]), int(bounds[g + 1])
        bt = simulate(prices.iloc[:hi], Momentum(int(fold.lookback), int(fold.skip)), fee_bps=FEE)
        np.testing.assert_allclose(
            res.paths[f"path_{p}"].to_numpy()[lo + 1 : hi],
            bt.returns.to_numpy()[lo + 1 : hi],
            rtol=1e-12,
        )


def test_figures_are_written(prices: pd.DataFrame, result: WalkForwardResult, tmp_path) -> None:
    paths = result.save_figures(tmp_path)
    assert [p.name for p in paths] == ["walkforward_folds.png", "walkforward_equity.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


def test_evaluator_returns_equal_engine_simulate(prices: pd.DataFrame) -> None:
    book = {"fee_bps": 5, "slippage_bps": 2, "weights": {"SYN0": 0.7, "SYN1": 0.3}}
    ev = StrategyReturnsEvaluator(prices, Momentum, **book, fixed_params={"long_short": True})
    sets = pd.DataFrame({"lookback": [10, 40, 80], "skip": [0, 5, 2]})
    full = ev.returns(sets, 900)
    for i, p in enumerate(sets.to_dict("records")):
        bt = simulate(prices.iloc[:600], Momentum(**p, long_short=True), **book)
        r, pos = ev.trade(p, 600)
        np.testing.assert_array_equal(r, bt.returns.to_numpy())
        np.testing.assert_array_equal(pos, bt.positions.to_numpy())
        np.testing.assert_array_equal(full[:600, i], bt.returns.to_numpy())
    truncated = StrategyReturnsEvaluator(
        prices, Momentum, **book, fixed_params={"long_short": True}, shared_history=False
    )
    np.testing.assert_array_equal(truncated.returns(sets, 600), full[:600])
    with pytest.raises(ConfigError) as err:
        StrategyReturnsEvaluator(prices, object)
    assert err.value.key == "strategy"


def test_windows_sharpe_matches_the_metric_per_window() -> None:
    from backtest.walkforward._kernels import window_sharpe, windows_sharpe

    rng = np.random.default_rng(5)
    r = np.asfortranarray(rng.normal(3e-4, 0.01, size=(3000, 12)))
    r[:, 3] = 0.0  # never trades
    r[1000:1800, 4] = 0.0  # flat for a while
    r[:, 5] = 0.001  # constant return: no variation
    starts = np.array([0, 100, 1000, 1200, 2500, 7])
    ends = np.array([756, 856, 1756, 1452, 3000, 8])
    got = windows_sharpe(r, starts, ends)
    for j, (a, b) in enumerate(zip(starts, ends, strict=True)):
        ref = np.asarray(bm.sharpe_ratio(r[a:b], periods_per_year=1))
        np.testing.assert_array_equal(np.isnan(got[j]), np.isnan(ref))
        np.testing.assert_allclose(got[j], ref, rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose(window_sharpe(r, a, b), ref, rtol=1e-13)


def test_a_search_strategy_evaluator_is_accepted(prices: pd.DataFrame, result) -> None:
    from backtest.search import StrategyEvaluator

    res = WalkForwardOptimizer(WF, pbo_blocks=4).run(
        StrategyEvaluator(prices, SmaCross, fee_bps=FEE), SMA_SPACE
    )
    pd.testing.assert_frame_equal(res.folds, result.folds)
    with pytest.raises(ConfigError) as err:
        WalkForwardOptimizer(WF).run(lambda p: 0.0, SMA_SPACE)
    assert err.value.key == "evaluator"


def test_walkforward_task_writes_folds_and_overfitting(compose, tmp_path, capsys) -> None:
    from backtest.app import run
    from backtest.results import load_result

    cfg = compose(
        "+experiment=wf_momentum",
        f"output_dir={tmp_path}",
        "data.n_bars=1400",
        "data.n_assets=2",
        "tracking=none",
        "figures=true",
    )
    objective = run(cfg)
    stored = load_result(tmp_path)
    record = stored.record
    assert record["task"] == "walkforward"
    folds = stored.table("folds")
    assert record["walkforward"]["n_folds"] == len(folds) == 2
    assert record["overfitting"]["n_trials"] == 2 * 24
    assert record["overfitting"]["deflated_sharpe"] == pytest.approx(folds["is_dsr"].mean())
    assert objective == pytest.approx(record["metrics"]["sharpe_ratio"])
    # The stitched result traded every fold's choice: labelled by the path, not the last set.
    assert "lookback" not in record["params"]
    chosen = [f"{a}/{b}" for a, b in zip(folds["lookback"], folds["skip"], strict=True)]
    expected = " → ".join(chosen) if chosen[0] != chosen[1] else f"{chosen[0]} ×2"
    assert record["params"]["walk-forward"] == f"lookback/skip {expected} (2 folds)"
    assert record["walkforward"]["parameter_path"] == record["params"]["walk-forward"]
    of = record["overfitting"]
    assert of["deflated_sharpe_effective"] == pytest.approx(folds["is_dsr_effective"].mean())
    assert of["effective_trials"] == pytest.approx(folds["effective_trials"].sum())
    assert folds["effective_trials"].min() >= 1.0 and folds["effective_trials"].max() <= 24
    assert of["spa_pvalue"] == pytest.approx(folds["spa_pvalue"].mean())
    assert 0.0 <= of["spa_pvalue"] <= of["reality_check_pvalue"] <= 1.0
    out = capsys.readouterr().out
    assert "fold 1" in out and "walk-forward efficiency" in out
    assert "deflated sharpe (raw N / effective N)" in out and "spa / reality check p-value" in out
    assert "walk-forward=lookback/skip" in out
    assert (tmp_path / "figures" / "walkforward_folds.png").exists()


def test_ties_go_to_the_first_set_and_share_their_rank() -> None:
    from backtest.walkforward._search import first_best, tie_rank

    s = 1.6476861234
    scores = np.array([1.2, s * (1 + 3e-16), s, s * (1 - 2e-16), 1.5, -np.inf])
    assert first_best(scores) == 1  # last-bit noise does not pick the winner
    assert first_best(np.array([0.1, 0.3, 0.2])) == 1
    # Three tied at the top of six: ranks 4, 5, 6 share the average 5.
    assert tie_rank(scores, s) == 5.0
    assert tie_rank(scores, 1.2) == 2.0
