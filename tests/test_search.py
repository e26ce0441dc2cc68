"""grid_search / random_search / optuna_search, evaluators, constraints, results."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from backtest.engine import simulate
from backtest.errors import ConfigError, TrialsFailed
from backtest.metrics import METRIC_NAMES
from backtest.search import (
    Constraint,
    SearchResult,
    StrategyEvaluator,
    grid_search,
    optuna_search,
    parse_space,
    random_search,
    run_search,
)
from backtest.search._random import sample_frame
from backtest.search._runner import keep_selection
from backtest.search._seeds import trial_seeds
from backtest.strategies import Momentum, SmaCross
from tests import synthetic


def gbm(n_bars: int = 600, n_assets: int = 1, seed: int = 3) -> pd.DataFrame:
    return synthetic.gbm(n_bars, n_assets, seed, drift=0.0003, start="2012-01-02")


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    return gbm(600, 2)


def quadratic(params):
    return -((params["x"] - 3) ** 2) - (params["y"] - 0.5) ** 2


def noisy(params, seed):
    return float(np.random.default_rng(seed).normal()) + params["x"]


# --- grid -------------------------------------------------------------------------------


def test_grid_equals_an_exhaustive_loop_of_single_backtests(prices):
    grid = {"fast": [2, 5, 10, 30], "slow": [10, 20, 50]}
    res = grid_search(
        grid,
        StrategyEvaluator(prices, SmaCross, fee_bps=10),
        constraint="fast < slow",
        progress=False,
    )
    combos = [(f, s) for f, s in itertools.product(grid["fast"], grid["slow"]) if f < s]
    assert list(zip(res.trials["fast"], res.trials["slow"], strict=True)) == combos
    assert list(res.trials["trial"]) == list(range(len(combos)))
    assert (res.trials["status"] == "ok").all()
    for (fast, slow), (_, row) in zip(combos, res.trials.iterrows(), strict=True):
        single = simulate(prices, SmaCross(fast, slow), fee_bps=10).metrics
        for name in METRIC_NAMES:
            np.testing.assert_allclose(row[name], single[name], rtol=1e-12, err_msg=name)
    best = max(
        combos, key=lambda c: simulate(prices, SmaCross(*c), fee_bps=10).metrics["sharpe_ratio"]
    )
    assert (res.best_params["fast"], res.best_params["slow"]) == best
    assert res.best_score == res.trials["sharpe_ratio"].max()
    assert res.trials.loc[res.best_trial, "sharpe_ratio"] == res.best_score


def test_grid_with_a_callable_and_ranges():
    res = grid_search(
        {"x": {"low": 0, "high": 6}, "y": {"low": 0.0, "high": 1.0, "step": 0.25}},
        quadratic,
        metric="score",
        progress=False,
    )
    assert len(res.trials) == 7 * 5
    assert res.best_params == {"x": 3, "y": 0.5}
    assert res.best_score == 0.0
    assert isinstance(res.best_params["x"], int)


def test_minimize_picks_the_smallest():
    res = grid_search(
        {"x": [1, 2, 3]},
        lambda p: {"loss": p["x"] ** 2, "other": 1.0},
        metric="loss",
        direction="minimize",
        progress=False,
    )
    assert res.best_params == {"x": 1}
    assert "other" in res.trials.columns


@pytest.mark.parametrize(
    "constraint",
    ["fast < slow", lambda p: p["fast"] < p["slow"], Constraint("fast < slow")],
    ids=["expression", "callable", "compiled"],
)
def test_constraint_skips_combinations(constraint):
    res = grid_search(
        {"fast": [5, 10, 20], "slow": [10, 20]},
        lambda p: p["slow"] - p["fast"],
        metric="gap",
        constraint=constraint,
        progress=False,
    )
    assert list(zip(res.trials["fast"], res.trials["slow"], strict=True)) == [
        (5, 10),
        (5, 20),
        (10, 20),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os').system('true')", "Call"),
        ("fast.__class__", "Attribute"),
        ("fast < slow; 1", "not a valid expression"),
        ("fast < 'a'", "only numbers"),
        ("fast < nope", "'nope', which is not a parameter"),
        ("[fast]", "List"),
        ("fast ** 2 < slow", "Pow"),
    ],
    ids=["call", "attribute", "syntax", "string", "unknown-name", "list", "power"],
)
def test_constraint_expressions_cannot_run_code(text, message):
    with pytest.raises(ConfigError, match=message) as info:
        Constraint(text, names=["fast", "slow"])
    assert info.value.key == "search.constraint"


def test_constraint_expression_arithmetic_and_boolean_logic():
    c = Constraint("slow >= 2 * fast + 1 and not (fast == 3 or -fast > 0)")
    assert c({"fast": 2, "slow": 5})
    assert not c({"fast": 2, "slow": 4})
    assert not c({"fast": 3, "slow": 20})
    frame = pd.DataFrame({"fast": [2, 2, 3], "slow": [5, 4, 20]})
    assert c.mask(frame).tolist() == [True, False, False]
    assert Constraint("1 < fast / slow < 3").mask(frame).tolist() == [False, False, False]


def test_empty_space_and_bad_ranges_name_the_key():
    with pytest.raises(ConfigError) as info:
        grid_search({}, quadratic, progress=False)
    assert info.value.key == "search.space"
    for space, key in [
        ({"x": {"low": 5, "high": 1}}, "search.space.x.low"),
        ({"x": {"low": 1}}, "search.space.x.high"),
        ({"x": {"low": 1, "high": 5, "stp": 1}}, "search.space.x.stp"),
        ({"x": {"low": 0.0, "high": 1.0, "log": True}}, "search.space.x.low"),
        ({"x": []}, "search.space.x"),
    ]:
        with pytest.raises(ConfigError) as info:
            parse_space(space)
        assert info.value.key == key
    with pytest.raises(ConfigError, match="step"):
        grid_search({"x": {"low": 0.0, "high": 1.0}}, quadratic, progress=False)


# --- failures ---------------------------------------------------------------------------


def flaky(params):
    x = params["x"]
    if x == 1:
        raise ValueError("x=1 is broken")
    if x == 2:
        return math.nan
    if x == 3:
        return {"score": math.inf}
    if x == 4:
        return {"other": 1.0}
    return float(x)


def test_failed_trials_are_recorded_and_the_best_is_finite():
    res = grid_search({"x": [0, 1, 2, 3, 4, 5]}, flaky, metric="score", progress=False)
    status = dict(zip(res.trials["x"], res.trials["status"], strict=True))
    assert status == {0: "ok", 1: "failed", 2: "failed", 3: "failed", 4: "failed", 5: "ok"}
    errors = dict(zip(res.trials["x"], res.trials["error"], strict=True))
    assert errors[1] == "ValueError: x=1 is broken"
    assert errors[2] == "score is nan"
    assert errors[3] == "score is inf"
    assert "no 'score'" in errors[4]
    assert errors[0] == ""
    assert res.best_params == {"x": 5}
    assert res.n_failed == 4


def test_all_failed_raises_with_the_most_common_reason():
    with pytest.raises(TrialsFailed, match=r"all 4 trials failed.*'ValueError: no' \(3 of 4"):
        grid_search(
            {"x": [1, 2, 3, 4]},
            lambda p: (_ for _ in ()).throw(ValueError("no")) if p["x"] < 4 else math.nan,
            metric="s",
            progress=False,
        )


def test_invalid_sets_of_a_batch_fail_alone(prices):
    res = grid_search(
        {"fast": [5, 20], "slow": [10, 30]}, StrategyEvaluator(prices, SmaCross), progress=False
    )
    bad = res.trials[(res.trials["fast"] == 20) & (res.trials["slow"] == 10)]
    assert bad["status"].tolist() == ["failed"]
    assert "ConfigError" in bad["error"].iloc[0] and "'fast' (20)" in bad["error"].iloc[0]
    assert (res.trials.drop(bad.index)["status"] == "ok").all()


def test_flat_strategy_fails_with_a_nan_sharpe(prices):
    res = grid_search(
        {"fast": [5], "slow": [20, 10_000]}, StrategyEvaluator(prices, SmaCross), progress=False
    )
    assert res.trials["status"].tolist() == ["ok", "failed"]
    assert res.trials["error"].iloc[1] == "sharpe_ratio is nan"


# --- random -----------------------------------------------------------------------------


def test_random_search_distributions():
    rng = np.random.default_rng(0)
    space = parse_space(
        {
            "i": {"low": 3, "high": 12},
            "s": {"low": 10, "high": 50, "step": 10},
            "f": {"low": -2.0, "high": 5.0},
            "lf": {"low": 1e-3, "high": 10.0, "log": True},
            "li": {"low": 1, "high": 100, "log": True},
            "c": ["a", "b", "c"],
        }
    )
    draws = sample_frame(space, 40_000, rng)
    counts = draws["i"].value_counts().reindex(range(3, 13), fill_value=0)
    assert stats.chisquare(counts).pvalue > 1e-3
    assert sorted(draws["s"].unique()) == [10, 20, 30, 40, 50]
    assert stats.chisquare(draws["s"].value_counts()).pvalue > 1e-3
    assert stats.kstest(draws["f"], stats.uniform(-2, 7).cdf).pvalue > 1e-3
    log_f = np.log(draws["lf"])
    assert stats.kstest(log_f, stats.uniform(np.log(1e-3), np.log(1e4)).cdf).pvalue > 1e-3
    # log-uniform integers: P(v) proportional to log((v + 0.5) / (v - 0.5))
    values = np.arange(1, 101)
    p = np.log((values + 0.5) / (values - 0.5))
    observed = draws["li"].value_counts().reindex(values, fill_value=0).to_numpy()
    expected = p / p.sum() * len(draws)
    assert expected.min() > 5  # every cell large enough for the chi-square test
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    assert stats.chisquare(draws["c"].value_counts()).pvalue > 1e-3
    assert draws["i"].between(3, 12).all() and draws["li"].between(1, 100).all()


def test_random_search_respects_the_constraint_and_the_seed():
    space = {"fast": {"low": 1, "high": 50}, "slow": {"low": 2, "high": 60}}
    a, b = (  # the same call twice: the same seed draws the same trials
        random_search(
            space,
            lambda p: p["slow"] - p["fast"],
            metric="gap",
            n_iter=300,
            constraint="fast < slow",
            seed=5,
            progress=False,
        )
        for _ in range(2)
    )
    assert len(a.trials) == 300
    assert (a.trials["fast"] < a.trials["slow"]).all()
    pd.testing.assert_frame_equal(a.trials, b.trials)
    with pytest.raises(ConfigError, match="rejected"):
        random_search(space, quadratic, n_iter=5, constraint="fast > 100", seed=1, progress=False)


def test_random_search_finds_the_region_of_the_optimum():
    res = random_search(
        {"x": {"low": 0.0, "high": 6.0}, "y": {"low": 0.0, "high": 1.0}},
        quadratic,
        metric="score",
        n_iter=500,
        seed=2,
        progress=False,
    )
    assert abs(res.best_params["x"] - 3) < 0.3 and abs(res.best_params["y"] - 0.5) < 0.3


# --- determinism and parallel evaluators ------------------------------------------------


def test_trial_seeds_are_seed_sequence_children():
    seeds = trial_seeds(123, np.arange(20))
    want = [np.random.SeedSequence(123, spawn_key=(t,)).generate_state(1)[0] for t in range(20)]
    assert seeds.tolist() == [int(w) for w in want]


@pytest.mark.parametrize("method", ["grid", "random", "tpe"])
def test_same_seed_same_trials_whatever_n_jobs(method):
    space = {"x": list(range(12))}
    one = run_search(
        method, space, noisy, n_iter=12, metric="value", seed=9, n_jobs=1, progress=False
    )
    two = run_search(
        method, space, noisy, n_iter=12, metric="value", seed=9, n_jobs=2, progress=False
    )
    pd.testing.assert_frame_equal(one.trials, two.trials)
    assert one.trials["seed"].tolist() == trial_seeds(9, np.arange(12)).tolist()


def test_parallel_workers_run_closures_and_import_paths():
    offset = 10.0
    res = grid_search(
        {"x": [1, 2, 3, 4]}, lambda p: p["x"] + offset, metric="v", n_jobs=2, progress=False
    )
    assert res.trials["v"].tolist() == [11.0, 12.0, 13.0, 14.0]
    res = grid_search(
        {"x": [2, 3, 4], "y": [0.5]},
        "tests.test_search:quadratic",
        metric="s",
        n_jobs=2,
        progress=False,
    )
    assert res.best_params == {"x": 3, "y": 0.5}
    with pytest.raises(ConfigError, match="cannot import evaluator"):
        grid_search({"x": [1]}, "tests.test_search:missing", metric="s", n_jobs=2, progress=False)


def test_failures_in_workers_are_recorded():
    res = grid_search({"x": [0, 1, 2, 5]}, flaky, metric="score", n_jobs=2, progress=False)
    assert res.trials["status"].tolist() == ["ok", "failed", "failed", "ok"]
    assert res.trials["error"].iloc[1] == "ValueError: x=1 is broken"


# --- Optuna -----------------------------------------------------------------------------


def test_tpe_is_seeded_and_finds_the_optimum():
    space = {"x": {"low": 0.0, "high": 6.0}, "y": {"low": 0.0, "high": 1.0}}
    a = optuna_search(space, quadratic, n_trials=60, metric="s", seed=3, progress=False)
    b = optuna_search(space, quadratic, n_trials=60, metric="s", seed=3, progress=False)
    pd.testing.assert_frame_equal(a.trials, b.trials)
    assert a.method == "tpe" and len(a.trials) == 60
    assert a.best_score > -0.05


def test_cmaes_on_a_continuous_space():
    space = {"x": {"low": 0.0, "high": 6.0}, "y": {"low": 0.0, "high": 1.0}}
    res = optuna_search(
        space, quadratic, n_trials=80, sampler="cmaes", metric="s", seed=1, progress=False
    )
    assert res.method == "cmaes"
    assert res.best_score > -0.05


def test_optuna_search_with_strategy_evaluator_and_constraint(prices):
    res = run_search(
        "tpe",
        {"fast": {"low": 2, "high": 40}, "slow": {"low": 5, "high": 120}},
        StrategyEvaluator(prices, SmaCross),
        n_iter=25,
        constraint="fast < slow",
        seed=4,
        progress=False,
    )
    assert len(res.trials) == 25
    assert (res.trials["fast"] < res.trials["slow"]).all()
    best = simulate(prices, SmaCross(**res.best_params)).metrics["sharpe_ratio"]
    assert res.best_score == pytest.approx(best, rel=1e-12)
    with pytest.raises(ConfigError, match="unknown search method"):
        run_search("anneal", {"fast": [1]}, quadratic, progress=False)


# --- results ----------------------------------------------------------------------------


def test_keep_returns_is_bounded_and_matches_the_backtests(prices):
    ev = StrategyEvaluator(prices, Momentum, fee_bps=5)
    res = grid_search(
        {"lookback": list(range(5, 105, 5)), "skip": [0, 1]}, ev, keep_returns=8, progress=False
    )
    assert res.returns is not None and res.returns.shape == (len(prices), 8)
    assert res.returns.dtypes.eq(np.float32).all()
    assert list(res.returns.columns) == list(np.flatnonzero(keep_selection(40, 8)))
    pd.testing.assert_index_equal(res.returns.index, prices.index)
    trial = int(res.returns.columns[3])
    row = res.trials.loc[trial]
    single = simulate(prices, Momentum(int(row["lookback"]), int(row["skip"])), fee_bps=5)
    np.testing.assert_allclose(res.returns[trial], single.returns, rtol=1e-6, atol=1e-9)
    assert keep_selection(5, 8).all() and not keep_selection(5, 0).any()


def test_callable_returning_backtests_keeps_returns(prices):
    def score(params):
        return simulate(prices, SmaCross(**params))

    res = grid_search(
        {"fast": [3, 5], "slow": [20, 10_000]}, score, keep_returns=10, progress=False
    )
    ok = res.trials.loc[res.trials["status"] == "ok", "trial"].tolist()
    assert list(res.returns.columns) == ok  # the flat (failed) trials are not kept
    pd.testing.assert_index_equal(res.returns.index, prices.index)


def test_parquet_round_trip(tmp_path, prices):
    res = grid_search(
        {"fast": [3, 5, 8], "slow": [20, 40]},
        StrategyEvaluator(prices, SmaCross),
        keep_returns=3,
        seed=11,
        progress=False,
    )
    path = res.to_parquet(tmp_path / "search.parquet")
    back = SearchResult.read_parquet(path)
    pd.testing.assert_frame_equal(back.trials, res.trials)
    pd.testing.assert_frame_equal(back.returns, res.returns, check_freq=False)
    assert (back.best_params, back.best_score, back.best_trial, back.seed) == (
        res.best_params,
        res.best_score,
        res.best_trial,
        11,
    )
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(ConfigError, match="not a search result"):
        SearchResult.read_parquet(tmp_path / "other.parquet")


def test_heatmap_png(tmp_path, prices):
    res = grid_search(
        {"fast": [2, 5, 10], "slow": [20, 30, 50, 80], "long_short": [False, True]},
        StrategyEvaluator(prices, SmaCross),
        progress=False,
    )
    from backtest.report._png import heatmap_figure

    cells, title = res.heatmap_cells("fast", "slow")
    assert len(cells) == 12  # 3 x 4 cells, the best of long_short in each
    assert cells["sharpe_ratio"].max() == res.best_score
    path = heatmap_figure(
        cells, "fast", "slow", "sharpe_ratio", tmp_path / "figures" / "heatmap.png", title=title
    )
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    with pytest.raises(ConfigError, match="not a searched parameter"):
        res.heatmap_cells("fast", "nope")


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(math.nan)), min_size=1, max_size=30),
    st.sampled_from(["maximize", "minimize"]),
)
def test_best_score_is_the_extreme_of_the_trials(values, direction):
    if all(math.isnan(v) for v in values):
        with pytest.raises(TrialsFailed):
            grid_search(
                {"i": list(range(len(values)))},
                lambda p: values[p["i"]],
                metric="v",
                direction=direction,
                progress=False,
            )
        return
    res = grid_search(
        {"i": list(range(len(values)))},
        lambda p: values[p["i"]],
        metric="v",
        direction=direction,
        progress=False,
    )
    ok = res.trials[res.trials["status"] == "ok"]["v"]
    assert res.best_score == (ok.max() if direction == "maximize" else ok.min())
    assert math.isfinite(res.best_score)
    assert res.n_failed == sum(math.isnan(v) for v in values)


def test_strategy_evaluator_as_a_callable_in_worker_processes(prices):
    # The parent has run the parallel kernels (OpenMP started); forked workers must not.
    ev = StrategyEvaluator(prices, SmaCross)
    grid_search({"fast": [5], "slow": [20, 30, 40, 50, 60, 70, 80, 90, 100]}, ev, progress=False)
    one = grid_search(
        {"fast": [5, 8], "slow": [20, 40]}, ev.__call__, n_jobs=1, seed=1, progress=False
    )
    two = grid_search(
        {"fast": [5, 8], "slow": [20, 40]}, ev.__call__, n_jobs=2, seed=1, progress=False
    )
    pd.testing.assert_frame_equal(one.trials, two.trials)
