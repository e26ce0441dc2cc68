"""Monte Carlo methods that re-run a strategy: synthetic prices, jitter, random entries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.config import EngineConfig
from backtest.engine import simulate
from backtest.errors import ConfigError
from backtest.montecarlo import MonteCarloConfig, MonteCarloSimulator
from backtest.montecarlo._entries import displacement_range, return_order
from backtest.montecarlo._strategy import (
    fit_gbm,
    path_rng,
    portfolio_returns,
    reordered_returns,
    strategy_positions,
)
from backtest.strategies import BuyAndHold, SmaCross

INDEX = pd.bdate_range("2012-01-02", periods=600, name="date")
ENGINE = EngineConfig(fee_bps=5.0, slippage_bps=2.0)


def _gbm(mu: np.ndarray, cov: np.ndarray, n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lr = rng.multivariate_normal(mu, cov, n - 1)
    close = 100 * np.exp(np.vstack([np.zeros(len(mu)), np.cumsum(lr, axis=0)]))
    return pd.DataFrame(close, index=INDEX[:n], columns=[f"A{i}" for i in range(len(mu))])


PRICES = _gbm(np.array([3e-4, 1e-4]), np.array([[1e-4, 4e-5], [4e-5, 2.25e-4]]))


def _run(method: str, source=None, *, prices=PRICES, strategy=None, engine_free=False, **kw):
    cfg = MonteCarloConfig(method=method, **{"n_paths": 120, "seed": 5, **kw})
    return MonteCarloSimulator(cfg, progress=False).run(
        source, prices=prices, strategy=strategy, engine=EngineConfig() if engine_free else ENGINE
    )


def test_portfolio_returns_equal_the_engine() -> None:
    strategy = SmaCross(5, 30, long_short=True)
    res = simulate(PRICES, strategy, fee_bps=5.0, slippage_bps=2.0)
    pos = strategy_positions(strategy, PRICES)
    got = portfolio_returns(PRICES.to_numpy(), pos, ENGINE, PRICES.columns)
    np.testing.assert_array_equal(got, res.returns.to_numpy())


# ---------------------------------------------------------------- random entries


@pytest.mark.parametrize(("block", "lo", "hi"), [(20, 69, 440), (1, 2, 598), (7, 300, 320)])
def test_return_orders_are_permutations_within_the_displacement_range(
    block: int, lo: int, hi: int
) -> None:
    n = 500 if block == 20 else 600
    hi = min(hi, n - 1)
    for path in range(50):
        src = return_order(n, block, lo, hi, path_rng(4, path))
        np.testing.assert_array_equal(np.sort(src), np.arange(n))  # every return once
        moved = (np.arange(n) - src) % n
        assert ((moved >= lo) & (moved <= hi)).all()
    assert not np.array_equal(
        return_order(n, block, lo, hi, path_rng(4, 0)),
        return_order(n, block, lo, hi, path_rng(4, 1)),
    )


def test_displacements_skip_the_warm_up_and_one_trade() -> None:
    pos = np.zeros((100, 2))
    pos[30:40, 0], pos[50:70, 1] = 1.0, -1.0  # first position at bar 30; trades of 10 and 20
    assert displacement_range(pos) == (31, 99 - 15 - 1)  # 99 bar returns
    assert displacement_range(pos, warmup_bars=50) == (51, 83)  # a declared warm-up wins
    assert displacement_range(pos, warmup_bars=90) == (91, 98)  # trades too long to clear
    with pytest.raises(ConfigError, match="cannot hold") as err:
        displacement_range(pos, warmup_bars=98)
    assert err.value.key == "montecarlo.method"


def test_random_entries_keep_the_positions_and_the_total_growth() -> None:
    # Always long one asset, no costs: a reordering of its returns compounds to the same
    # total return on every path (the drift is the observed one; only timing differs).
    prices = PRICES[["A0"]]
    res = simulate(prices, BuyAndHold())
    rep = _run("random_entries", res, prices=prices, n_paths=30, engine_free=True)
    np.testing.assert_allclose(rep.paths["total_return"], res.metrics["total_return"], rtol=1e-9)
    assert rep.details["exposure"] == pytest.approx(np.abs(res.positions.to_numpy()).mean())
    # A strategy that trades: each path pays exactly the observed costs on the same trades.
    strategy = SmaCross(5, 30, long_short=True)
    res = simulate(PRICES, strategy, fee_bps=5.0, slippage_bps=2.0)
    pos = res.positions.to_numpy()
    lo, hi = displacement_range(pos)
    orders = np.column_stack(
        [return_order(len(PRICES) - 1, 20, lo, hi, path_rng(9, p)) for p in range(3)]
    )
    got = reordered_returns(PRICES.to_numpy(), pos, orders, ENGINE, PRICES.columns)
    flat = reordered_returns(np.ones_like(PRICES.to_numpy()), pos, orders, ENGINE, PRICES.columns)
    # with flat prices only costs remain: the same on every path, the engine's costs
    no_moves = portfolio_returns(np.ones_like(PRICES.to_numpy()), pos, ENGINE, PRICES.columns)
    for c in range(3):
        np.testing.assert_array_equal(flat[:, c], no_moves)
    assert not np.allclose(got[:, 0], res.returns.to_numpy())


def test_random_entries_gives_a_tiny_p_value_to_a_clairvoyant_strategy() -> None:
    r = PRICES.pct_change().fillna(0.0).to_numpy()
    nxt = np.vstack([np.sign(r[1:]), np.zeros((1, r.shape[1]))])  # knows tomorrow: look-ahead

    class Oracle:
        def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
            return pd.DataFrame(nxt, index=prices.index, columns=prices.columns)

    res = simulate(PRICES, Oracle(), check_lookahead=False)  # (it looks ahead on purpose)
    rep = _run("random_entries", res, n_paths=199)
    assert rep.p_values["sharpe_ratio"] == pytest.approx(1 / 200)
    assert rep.percentile_ranks["sharpe_ratio"] == 100.0
    assert rep.details["n_trades"] == len(res.trades)


def test_random_entries_p_values_are_uniform_for_a_random_strategy() -> None:
    # positions from a coin of their own (independent of the prices): no skill, so the
    # p-value is uniform; the calibration file checks the rate at 5% over 1,000 cases
    pvals = []
    for i in range(16):
        rng = np.random.default_rng(10_000 + i)
        regime = np.sign(np.sin(np.arange(len(PRICES)) / 9.0 + rng.uniform(0, 6, (1, 2)).T)).T
        pos = np.where(np.arange(len(PRICES))[:, None] < 30, 0.0, regime)

        class Fixed:
            def positions(self, prices: pd.DataFrame, pos=pos) -> pd.DataFrame:
                return pd.DataFrame(pos[: len(prices)], index=prices.index, columns=prices.columns)

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
