"""Monte Carlo resampling methods: statistics, compounding, determinism.

References are independent of the compiled kernels: ``backtest.metrics`` (itself
checked against empyrical) for the metrics, NumPy for quantiles and cumulative
products, scipy for percentile ranks, and sampling theory for the bootstraps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from backtest import metrics as m
from backtest.montecarlo import MonteCarloConfig, MonteCarloSimulator
from backtest.montecarlo import _kernels as k
from backtest.montecarlo._rng import root_key

RNG = np.random.default_rng(20240501)
RETURNS = pd.Series(
    RNG.standard_t(4, 1500) * 0.008 + 3e-4,
    index=pd.bdate_range("2015-01-01", periods=1500),
    name="returns",
)


def _run(method: str, source=RETURNS, **kw) -> object:
    cfg = MonteCarloConfig(method=method, **{"n_paths": 2000, "seed": 11, **kw})
    return MonteCarloSimulator(cfg, progress=False).run(source)


def _score(r: np.ndarray, ppy: float = 252.0) -> np.ndarray:
    out = np.empty((1, len(k.METRICS)))
    k.score_columns(
        np.ascontiguousarray(r, dtype=float)[:, None],
        ppy,
        out,
        np.empty((0, r.size + 1), np.float32),
    )
    return out[0]


# ---------------------------------------------------------------- metrics kernel


@pytest.mark.parametrize(
    "returns",
    [
        RETURNS.to_numpy(),
        np.array([0.1, -0.2, 0.05, -0.1]),
        np.array([0.0, 0.0, 0.0]),
        np.array([0.01] * 12),
        np.array([0.05, -1.0, 0.3, 0.1]),
        RNG.normal(0.001, 0.02, 50),
    ],
    ids=["student_t", "worked_example", "flat", "constant", "wiped_out", "normal"],
)
def test_kernel_metrics_match_backtest_metrics(returns: np.ndarray) -> None:
    got = dict(zip(k.METRICS, _score(returns, 252.0), strict=True))
    ref = {
        "total_return": m.total_return(returns),
        "cagr": m.cagr(returns, periods_per_year=252),
        "sharpe_ratio": m.sharpe_ratio(returns, periods_per_year=252),
        "max_drawdown": m.max_drawdown(returns),
        "mean_return": returns.mean(),
    }
    for name, value in ref.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-9, atol=1e-15, err_msg=name)
    equity = np.cumprod(1 + returns)
    peak = np.maximum.accumulate(np.maximum(equity, 1.0))
    under = equity < peak
    assert got["time_under_water"] == pytest.approx(under.mean())
    runs = [len(g) for g in "".join("1" if u else "0" for u in under).split("0") if g]
    assert got["longest_drawdown_bars"] == max(runs, default=0)


# ---------------------------------------------------------------- the statistics


def test_iid_bootstrap_mean_of_means_matches_sample_mean_within_standard_error() -> None:
    rep = _run("iid_bootstrap", n_paths=4000)
    r = RETURNS.to_numpy()
    means = rep.paths["mean_return"].to_numpy()
    # each path mean has variance var(r, ddof=0) / n when bars are drawn with replacement
    se_one = r.std(ddof=0) / np.sqrt(r.size)
    se = se_one / np.sqrt(means.size)
    assert abs(means.mean() - r.mean()) < 3 * se
    # and the spread of the path means is the bootstrap's standard error (chi-square bound)
    assert means.std(ddof=1) == pytest.approx(se_one, rel=0.05)


def test_trade_bootstrap_mean_of_means_matches_sample_mean_within_standard_error() -> None:
    trades = pd.DataFrame({"return": RNG.normal(0.004, 0.03, 300)})
    rep = _run("trade_bootstrap", source=trades, n_paths=4000)
    r = trades["return"].to_numpy()
    se = r.std(ddof=0) / np.sqrt(r.size) / np.sqrt(4000)
    assert abs(rep.paths["mean_return"].mean() - r.mean()) < 3 * se


@pytest.mark.parametrize("block_size", [5.0, 20.0, 63.0], ids=["b5", "b20", "b63"])
def test_stationary_bootstrap_mean_block_length_matches_config(block_size: float) -> None:
    n_src, horizon, key = 1000, 50_000, root_key(3)
    lengths = []
    for path in range(8):
        idx, new = k.draw_indices(n_src, k.STATIONARY, block_size, horizon, key, path)
        # inside a block the index moves one bar forward, wrapping around the end
        inside = ~new[1:]
        assert np.array_equal(idx[1:][inside], (idx[:-1][inside] + 1) % n_src)
        starts = np.flatnonzero(new)
        lengths.append(np.diff(starts))  # complete blocks only
    blocks = np.concatenate(lengths)
    # geometric lengths with mean B: standard deviation sqrt(B * (B - 1))
    se = np.sqrt(block_size * (block_size - 1)) / np.sqrt(blocks.size)
    assert abs(blocks.mean() - block_size) < 4 * se
    # geometric, not fixed: P(length = 1) = 1 / B
    p1 = 1 / block_size
    assert abs(np.mean(blocks == 1) - p1) < 4 * np.sqrt(p1 * (1 - p1) / blocks.size)


def test_circular_block_bootstrap_uses_fixed_wrapping_blocks() -> None:
    idx, new = k.draw_indices(100, k.CIRCULAR, 7.4, 700, root_key(5), 0)
    assert np.array_equal(np.flatnonzero(new), np.arange(0, 700, 7))
    inside = ~new[1:]
    assert np.array_equal(idx[1:][inside], (idx[:-1][inside] + 1) % 100)


@pytest.mark.parametrize(
    ("method", "code"),
    [
        ("iid_bootstrap", k.IID),
        ("stationary_bootstrap", k.STATIONARY),
        ("circular_block_bootstrap", k.CIRCULAR),
    ],
    ids=["iid", "stationary", "circular"],
)
def test_kernel_paths_are_the_drawn_indices_scored(method: str, code: int) -> None:
    r = RETURNS.to_numpy()
    rep = _run(method, n_paths=5, block_size=10.0, seed=99)
    key = root_key(99)
    for path in range(5):
        idx, _ = k.draw_indices(r.size, code, 10.0, r.size, key, path)
        np.testing.assert_allclose(
            rep.paths.iloc[path][list(k.METRICS)].to_numpy(dtype=float), _score(r[idx]), rtol=1e-12
        )


def test_trade_reshuffle_preserves_terminal_wealth_and_changes_paths() -> None:
    trades = pd.DataFrame({"return": RNG.normal(0.003, 0.05, 250)})
    rep = _run("trade_reshuffle", source=trades, n_paths=3000)
    wealth = np.prod(1 + trades["return"].to_numpy())
    np.testing.assert_allclose(1 + rep.paths["total_return"], wealth, rtol=1e-12)
    assert rep.paths["max_drawdown"].std() > 0.01  # the order matters for drawdowns
    idx, _ = k.draw_indices(250, k.PERMUTE, 1.0, 250, root_key(11), 0)
    assert np.array_equal(np.sort(idx), np.arange(250))


def test_trade_methods_annualise_by_trades_per_year() -> None:
    trades = pd.DataFrame(
        {
            "entry_time": pd.date_range("2020-01-01", periods=100, freq="7D"),
            "exit_time": pd.date_range("2020-01-05", periods=100, freq="7D"),
            "return": RNG.normal(0.002, 0.02, 100),
        }
    )
    rep = _run("trade_bootstrap", source=trades, n_paths=50)
    years = (trades["exit_time"].max() - trades["entry_time"].min()).days / 365.25
    assert rep.periods_per_year == pytest.approx(100 / years)
    assert rep.unit == "trade"


# ---------------------------------------------------------------- compounding


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-1.0, 3.0), min_size=2, max_size=60),
    st.sampled_from(["iid_bootstrap", "stationary_bootstrap", "circular_block_bootstrap"]),
)
def test_drawdowns_never_exceed_100_percent(values: list[float], method: str) -> None:
    rep = _run(method, source=pd.Series(values), n_paths=64, block_size=3.0)
    dd = rep.paths["max_drawdown"]
    assert dd.between(0.0, 1.0).all()
    assert (rep.paths["total_return"] >= -1.0).all()
    assert (rep.fan.drop(columns="observed") >= 0).all().all()


def test_large_losses_compound_to_at_most_a_total_loss() -> None:
    # absolute-profit reshuffling would go below -100% here; compounding cannot
    trades = pd.DataFrame({"return": [0.5, -0.6, 0.4, -0.7, 0.9, -0.8]})
    rep = _run("trade_bootstrap", source=trades, n_paths=500, horizon_bars=40)
    assert rep.paths["max_drawdown"].max() <= 1.0
    assert rep.paths["max_drawdown"].max() > 0.99


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize(
    "method",
    ["iid_bootstrap", "stationary_bootstrap", "circular_block_bootstrap", "trade_reshuffle"],
)
def test_same_seed_same_report_whatever_n_jobs_and_chunk_size(method: str) -> None:
    source = pd.DataFrame({"return": RETURNS.to_numpy()[:400]}) if "trade" in method else RETURNS
    reports = [
        _run(method, source=source, n_paths=700, n_jobs=n_jobs, chunk_size=chunk)
        for n_jobs, chunk in [(1, 1000), (1, 33), (2, 100), (2, 7)]
    ]
    first = reports[0]
    for rep in reports[1:]:
        pd.testing.assert_frame_equal(rep.paths, first.paths, check_exact=True)
        pd.testing.assert_frame_equal(rep.fan, first.fan, check_exact=True)
        assert rep.to_dict() == first.to_dict()
    other = _run(method, source=source, n_paths=700, seed=12)
    assert not other.paths.equals(first.paths)


def test_seed_none_is_recorded_and_reproduces() -> None:
    rep = _run("iid_bootstrap", n_paths=50, seed=None)
    again = _run("iid_bootstrap", n_paths=50, seed=rep.seed)
    pd.testing.assert_frame_equal(rep.paths, again.paths)


# ---------------------------------------------------------------- report statistics


def test_report_summary_statistics_match_numpy_and_scipy() -> None:
    rep = _run(
        "stationary_bootstrap",
        n_paths=1500,
        confidence=[2.5, 50, 97.5],
        ruin_drawdown=0.25,
        horizon_bars=800,
    )
    paths = rep.paths
    for name in k.METRICS:
        col = paths[name].to_numpy(dtype=float)
        np.testing.assert_allclose(
            rep.percentiles[name].to_numpy(), np.nanpercentile(col, [2.5, 50, 97.5]), rtol=1e-12
        )
        want = stats.percentileofscore(col[~np.isnan(col)], rep.observed[name], kind="weak")
        assert rep.percentile_ranks[name] == pytest.approx(want)
    assert rep.prob_loss == pytest.approx(np.mean(paths["total_return"] < 0))
    assert rep.prob_ruin == pytest.approx(np.mean(paths["max_drawdown"] >= 0.25))
    sharpe = paths["sharpe_ratio"].to_numpy()
    want_p = (1 + np.sum(sharpe >= rep.observed["sharpe_ratio"])) / (1 + sharpe.size)
    assert rep.p_values["sharpe_ratio"] == pytest.approx(want_p)
    assert rep.observed["sharpe_ratio"] == pytest.approx(m.sharpe_ratio(RETURNS), rel=1e-9)


def test_fan_quantiles_are_per_bar_quantiles_of_the_first_paths() -> None:
    r = RETURNS.to_numpy()
    sim = MonteCarloSimulator(
        MonteCarloConfig(method="stationary_bootstrap", n_paths=300, seed=4, horizon_bars=200),
        progress=False,
        fan_paths=120,
    )
    rep = sim.run(RETURNS)
    key = root_key(4)
    equity = np.ones((120, 201))
    for path in range(120):
        idx, _ = k.draw_indices(r.size, k.STATIONARY, 20.0, 200, key, path)
        equity[path, 1:] = np.cumprod(1 + r[idx])
    want = np.quantile(equity.astype(np.float32).astype(float), [0.05, 0.5, 0.95], axis=0).T
    assert rep.fan_paths == 120
    np.testing.assert_allclose(rep.fan[["p5", "p50", "p95"]].to_numpy(), want, rtol=1e-6)
    assert "observed" not in rep.fan.columns  # horizon differs from the observed length


def test_fan_is_bounded_for_long_horizons() -> None:
    from backtest.montecarlo._chunks import FAN_CELLS, fan_size

    assert fan_size(10_000, 25_200, 1000) * 25_201 <= FAN_CELLS
    assert fan_size(10_000, 2_520, 1000) == 1000
    assert fan_size(30, 2_520, 1000) == 30


@pytest.mark.parametrize(
    "fan",
    [
        RNG.lognormal(0, 0.3, (301, 40)).astype(np.float32),
        np.ones((50, 5), np.float32),
        np.tile(np.array([1.0, 2.0, 2.0, 3.0], np.float32), 25).reshape(100, 1),
        RNG.normal(1, 0.1, (2, 7)).astype(np.float32),
    ],
    ids=["lognormal", "all_equal", "ties", "two_paths"],
)
def test_fan_quantiles_match_numpy(fan: np.ndarray) -> None:
    q = np.array([0.0, 0.025, 0.05, 0.5, 0.5, 0.95, 0.999, 1.0])
    want = np.quantile(fan.astype(np.float64), q, axis=0).T
    np.testing.assert_allclose(k.fan_quantiles(fan, q), want, rtol=1e-12, atol=0)


def test_paths_are_streamed_not_held_in_memory() -> None:
    import tracemalloc

    returns = pd.Series(RNG.normal(2e-4, 0.01, 5000))
    _run("stationary_bootstrap", source=returns, n_paths=50)  # load the kernels first
    tracemalloc.start()
    try:
        _run("stationary_bootstrap", source=returns, n_paths=3000, chunk_size=500)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    full_matrix = 3000 * 5000 * 8  # what holding every path's returns would take: 120 MB
    fan = 500 * 5001 * 4  # the bounded fan sample: 10 MB
    assert peak < fan + 8_000_000 < full_matrix / 4


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 40),
    st.lists(
        st.sampled_from([0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.999, 1.0]),
        min_size=1,
        max_size=6,
    ),
    st.integers(0, 2**32 - 1),
    st.booleans(),
)
def test_fan_quantiles_match_numpy_for_any_levels(
    m: int, levels: list[float], seed: int, ties: bool
) -> None:
    fan = np.random.default_rng(seed).normal(1, 0.2, (m, 3)).astype(np.float32)
    if ties:
        fan = np.round(fan, 1)
    q = np.array(levels)  # any order, repeats allowed
    want = np.quantile(fan.astype(np.float64), q, axis=0).T
    np.testing.assert_allclose(k.fan_quantiles(fan, q), want, rtol=1e-12, atol=1e-15)


def test_iid_indices_are_uniform() -> None:
    # every bar equally likely: a chi-square test on 7 bars drawn 70,000 times
    idx, new = k.draw_indices(7, k.IID, 1.0, 70_000, root_key(8), 0)
    assert new.all()
    counts = np.bincount(idx, minlength=7)
    assert counts.size == 7
    assert stats.chisquare(counts).pvalue > 0.001
