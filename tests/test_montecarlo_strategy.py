"""Monte Carlo methods that re-run a strategy: synthetic prices, jitter, random entries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.config import EngineConfig
from backtest.engine import simulate, trades_table
from backtest.errors import ConfigError
from backtest.montecarlo import MonteCarloConfig, MonteCarloSimulator
from backtest.montecarlo._entries import random_positions, trade_segments
from backtest.montecarlo._strategy import fit_gbm, path_rng, portfolio_returns, strategy_positions
from backtest.strategies import BuyAndHold, SmaCross

INDEX = pd.bdate_range("2012-01-02", periods=600, name="date")
ENGINE = EngineConfig(fee_bps=5.0, slippage_bps=2.0)


def _gbm(mu: np.ndarray, cov: np.ndarray, n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lr = rng.multivariate_normal(mu, cov, n - 1)
    close = 100 * np.exp(np.vstack([np.zeros(len(mu)), np.cumsum(lr, axis=0)]))
    return pd.DataFrame(close, index=INDEX[:n], columns=[f"A{i}" for i in range(len(mu))])


PRICES = _gbm(np.array([3e-4, 1e-4]), np.array([[1e-4, 4e-5], [4e-5, 2.25e-4]]))


def _run(method: str, source=None, *, prices=PRICES, strategy=None, **kw):
    cfg = MonteCarloConfig(method=method, **{"n_paths": 120, "seed": 5, **kw})
    return MonteCarloSimulator(cfg, progress=False).run(
        source, prices=prices, strategy=strategy, engine=ENGINE
    )


def test_portfolio_returns_equal_the_engine() -> None:
    strategy = SmaCross(5, 30, long_short=True)
    res = simulate(PRICES, strategy, fee_bps=5.0, slippage_bps=2.0)
    pos = strategy_positions(strategy, PRICES)
    got = portfolio_returns(PRICES.to_numpy(), pos, ENGINE, PRICES.columns)
    np.testing.assert_array_equal(got, res.returns.to_numpy())


# ---------------------------------------------------------------- random entries


def test_random_positions_keep_trades_lengths_and_exposure() -> None:
    res = simulate(PRICES, SmaCross(5, 30, long_short=True))
    observed = res.positions.to_numpy()
    segments = trade_segments(observed)
    for path in range(20):
        pos = random_positions(segments, len(PRICES), path_rng(1, path))
        assert not np.array_equal(pos, observed)
        np.testing.assert_allclose(np.abs(pos).sum(axis=0), np.abs(observed).sum(axis=0))
        frame = pd.DataFrame(pos, index=PRICES.index, columns=PRICES.columns)
        trades = trades_table(PRICES, frame, 0.0)
        assert (
            trades.groupby("asset").size().to_dict() == res.trades.groupby("asset").size().to_dict()
        )
        assert sorted(trades["direction"]) == sorted(res.trades["direction"])
        for mine, theirs in zip(trade_segments(pos), segments, strict=True):
            assert sorted(map(len, mine)) == sorted(map(len, theirs))  # same holding periods


def test_random_positions_fit_an_always_invested_long_short_book() -> None:
    # alternating long/short with no flat bar: every same-direction pair needs a gap
    pos = np.zeros((40, 1))
    pos[:10], pos[10:25], pos[25:] = 1.0, -1.0, 1.0
    segments = trade_segments(pos)
    for path in range(30):
        out = random_positions(segments, 40, path_rng(2, path))
        assert np.abs(out).sum() == 40
        signs = np.sign(out[:, 0])
        assert np.count_nonzero(np.diff(signs)) == 2  # still three trades


def test_random_entries_gives_a_tiny_p_value_to_a_clairvoyant_strategy() -> None:
    r = PRICES.pct_change().fillna(0.0).to_numpy()
    nxt = np.vstack([np.sign(r[1:]), np.zeros((1, r.shape[1]))])  # knows tomorrow: look-ahead

    class Oracle:
        def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
            return pd.DataFrame(nxt, index=prices.index, columns=prices.columns)

    res = simulate(PRICES, Oracle())
    rep = _run("random_entries", res, n_paths=199)
    assert rep.p_values["sharpe_ratio"] == pytest.approx(1 / 200)
    assert rep.percentile_ranks["sharpe_ratio"] == 100.0
    assert rep.details["n_trades"] == len(res.trades)


def test_random_entries_p_values_are_uniform_for_a_random_strategy() -> None:
    # an observed strategy that is itself a draw from the null: its p-value is uniform
    base = simulate(PRICES, SmaCross(5, 30)).positions.to_numpy()
    segments = trade_segments(base)
    pvals = []
    for i in range(16):
        pos = random_positions(segments, len(PRICES), path_rng(10_000 + i, 0))

        class Fixed:
            def positions(self, prices: pd.DataFrame, pos=pos) -> pd.DataFrame:
                return pd.DataFrame(pos, index=prices.index, columns=prices.columns)

        rep = _run("random_entries", simulate(PRICES, Fixed()), n_paths=79, seed=i)
        pvals.append(rep.p_values["sharpe_ratio"])
    pvals = np.array(pvals)
    assert 0.25 < pvals.mean() < 0.75
    assert pvals.min() < 0.3 and pvals.max() > 0.7


# ---------------------------------------------------------------- synthetic prices


def test_fit_gbm_recovers_drift_and_covariance() -> None:
    mu, cov = np.array([2e-4, -1e-4]), np.array([[1e-4, 3e-5], [3e-5, 4e-4]])
    prices = _gbm(mu, cov, n=600, seed=3)
    lr = np.diff(np.log(prices.to_numpy()), axis=0)
    drift, scale = fit_gbm(prices)
    np.testing.assert_allclose(drift, lr.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scale @ scale.T, np.cov(lr, rowvar=False), rtol=1e-10)


def test_synthetic_prices_buy_and_hold_wealth_is_lognormal_with_the_fitted_moments() -> None:
    prices = PRICES[["A0"]]
    rep = _run(
        "synthetic_prices",
        simulate(prices, BuyAndHold()),
        prices=prices,
        strategy=BuyAndHold(),
        n_paths=1500,
        horizon_bars=253,
    )
    lr = np.diff(np.log(prices["A0"].to_numpy()))
    mu, sigma = lr.mean(), lr.std(ddof=1)
    log_wealth = np.log1p(rep.paths["total_return"].to_numpy())
    # buy-and-hold from the first close: log wealth = sum of 252 fitted normal log returns
    n = 252
    assert abs(log_wealth.mean() - n * mu) < 4 * sigma * np.sqrt(n) / np.sqrt(1500)
    assert log_wealth.std(ddof=1) == pytest.approx(sigma * np.sqrt(n), rel=0.08)
    assert rep.details["volatility_per_bar"]["A0"] == pytest.approx(sigma)
    assert rep.horizon_bars == 253


# ---------------------------------------------------------------- parameter jitter


def test_parameter_jitter_paths_are_backtests_of_their_parameters() -> None:
    strategy = SmaCross(10, 40)
    rep = _run("parameter_jitter", strategy=strategy, jitter={"fast": 0.3, "slow": [30, 40, 60]})
    assert rep.paths["fast"].between(7, 13).all()
    assert set(rep.paths["slow"]) <= {30, 40, 60}
    assert (rep.paths["fast"] < rep.paths["slow"]).all()
    assert rep.paths["fast"].nunique() > 3
    for path in (0, 7, 42):
        row = rep.paths.iloc[path]
        res = simulate(
            PRICES, SmaCross(int(row["fast"]), int(row["slow"])), fee_bps=5.0, slippage_bps=2.0
        )
        assert row["sharpe_ratio"] == pytest.approx(res.metrics["sharpe_ratio"], rel=1e-9)
        assert row["max_drawdown"] == pytest.approx(res.metrics["max_drawdown"], rel=1e-9)
    # the observed result was computed from the strategy since no source was given
    base = simulate(PRICES, strategy, fee_bps=5.0, slippage_bps=2.0)
    assert rep.observed["sharpe_ratio"] == pytest.approx(base.metrics["sharpe_ratio"], rel=1e-9)


def test_parameter_jitter_defaults_to_20_percent_on_numeric_parameters() -> None:
    rep = _run("parameter_jitter", strategy=SmaCross(10, 50), n_paths=40)
    assert rep.details["jitter"] == {"fast": 0.2, "slow": 0.2}
    assert rep.paths["slow"].between(40, 60).all()


@pytest.mark.parametrize(
    ("jitter", "strategy", "key"),
    [
        ({"fastest": 0.2}, SmaCross(10, 50), "montecarlo.jitter.fastest"),
        ({"long_short": 0.2}, SmaCross(10, 50), "montecarlo.jitter.long_short"),
        ({}, BuyAndHold(), "montecarlo.jitter"),
        ({"slow": [5, 8]}, SmaCross(10, 50), "montecarlo.jitter"),
    ],
    ids=["unknown", "not_numeric", "nothing_to_jitter", "no_valid_draw"],
)
def test_parameter_jitter_errors_name_the_key(jitter, strategy, key) -> None:
    with pytest.raises(ConfigError) as err:
        _run("parameter_jitter", strategy=strategy, jitter=jitter, n_paths=3)
    assert err.value.key == key


# ---------------------------------------------------------------- what each method needs


@pytest.mark.parametrize(
    ("method", "kwargs", "key"),
    [
        ("synthetic_prices", {"prices": None, "strategy": SmaCross()}, "montecarlo.method"),
        ("synthetic_prices", {"strategy": None}, "montecarlo.method"),
        ("parameter_jitter", {"strategy": None}, "montecarlo.method"),
        ("random_entries", {"strategy": None}, "montecarlo.method"),
        (
            "random_entries",
            {"strategy": SmaCross(), "horizon_bars": 100},
            "montecarlo.horizon_bars",
        ),
    ],
    ids=[
        "no_prices",
        "synthetic_no_strategy",
        "jitter_no_strategy",
        "random_no_positions",
        "random_horizon",
    ],
)
def test_missing_inputs_give_config_errors(method, kwargs, key) -> None:
    with pytest.raises(ConfigError, match=method if key == "montecarlo.method" else "horizon") as e:
        _run(method, **kwargs)
    assert e.value.key == key


@pytest.mark.parametrize(
    ("method", "n_jobs"),
    [
        ("synthetic_prices", 1),
        ("parameter_jitter", 1),
        ("random_entries", 1),
        ("random_entries", 2),
    ],
    ids=["synthetic", "jitter", "random_entries", "random_entries_2_processes"],
)
def test_strategy_methods_are_identical_whatever_n_jobs_and_chunk_size(
    method: str, n_jobs: int
) -> None:
    strategy = SmaCross(8, 30)
    res = simulate(PRICES, strategy, fee_bps=5.0, slippage_bps=2.0)
    one = _run(method, res, strategy=strategy, n_paths=30)
    two = _run(method, res, strategy=strategy, n_paths=30, n_jobs=n_jobs, chunk_size=7)
    pd.testing.assert_frame_equal(one.paths, two.paths, check_exact=True)
    pd.testing.assert_frame_equal(one.fan, two.fan, check_exact=True)
    assert one.to_dict() == two.to_dict()


def test_random_entries_on_an_out_of_sample_stretch_uses_its_bars() -> None:
    # a walk-forward result covers only its test windows: prices are cut to its bars
    res = simulate(PRICES, SmaCross(5, 30))
    tail = slice(200, None)
    oos = type(res)(
        returns=res.returns.iloc[tail],
        equity=res.equity.iloc[tail],
        positions=res.positions.iloc[tail],
        trades=res.trades[res.trades["entry_time"] >= PRICES.index[200]],
        metrics=res.metrics,
    )
    rep = _run("random_entries", oos, n_paths=20)
    assert rep.horizon_bars == len(PRICES) - 200
    assert rep.details["n_bars"] == len(PRICES) - 200
