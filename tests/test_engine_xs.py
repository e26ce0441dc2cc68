"""CrossSectionalMomentum, the batched path over strategy and engine parameters, xs_momentum."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import open_dict

from backtest.app import run
from backtest.config import DataConfig
from backtest.data import load_bars
from backtest.engine import simulate, simulate_batch
from backtest.errors import ConfigError
from backtest.results import load_result
from backtest.strategies import CrossSectionalMomentum, SmaCross


def _plain_xs(
    close: pd.DataFrame, lookback: int, skip: int, top_n: int, long_short: bool
) -> np.ndarray:
    """A plain loop: rank each bar's trailing returns, weight the top (and bottom) n."""
    c = close.to_numpy()
    n, a = c.shape
    out = np.zeros((n, a))
    for t in range(lookback + skip, n):
        score = [c[t - skip, j] / c[t - skip - lookback, j] - 1 for j in range(a)]
        order = sorted(range(a), key=lambda j: (-score[j], j))
        size = 0.5 / top_n if long_short else 1.0 / top_n
        for j in order[:top_n]:
            out[t, j] = size
        if long_short:
            for j in sorted(range(a), key=lambda j: (score[j], j))[:top_n]:
                out[t, j] = -size
    return out


@pytest.mark.parametrize(("top_n", "long_short"), [(1, False), (3, False), (2, True)])
def test_xs_momentum_weights_equal_a_plain_ranking(top_n: int, long_short: bool) -> None:
    bars = load_bars(DataConfig(n_bars=400, n_assets=6, seed=9))
    strategy = CrossSectionalMomentum(lookback=60, skip=5, top_n=top_n, long_short=long_short)
    w = strategy.positions(bars.close).to_numpy()
    np.testing.assert_array_equal(w, _plain_xs(bars.close, 60, 5, top_n, long_short))
    batch = CrossSectionalMomentum.batch_weights(
        bars.close.to_numpy(),
        {"lookback": np.array([60, 20]), "skip": np.array([5, 0]),
         "top_n": np.array([top_n, 1]), "long_short": np.array([long_short, False])},
    )  # fmt: skip
    np.testing.assert_array_equal(batch[:, :, 0], w)
    np.testing.assert_array_equal(batch[:, :, 1], _plain_xs(bars.close, 20, 0, 1, False))


def test_xs_momentum_refuses_a_universe_too_small() -> None:
    bars = load_bars(DataConfig(n_bars=50, n_assets=3, seed=1))
    with pytest.raises(ConfigError, match="top_n") as info:
        CrossSectionalMomentum(top_n=2, long_short=True).positions(bars.close)
    assert info.value.key == "top_n"


OPTIONS = {"fee_bps": 5.0, "slippage_bps": 2.0, "execution": "next_open", "borrow_rate": 0.02,
           "financing_rate": 0.04, "max_gross_leverage": 1.5}  # fmt: skip


CHECKED = (
    "sharpe_ratio", "max_drawdown", "n_trades", "win_rate", "exposure", "turnover", "cost_fees",
    "cost_borrow", "cost_financing", "limit_scaled_fraction",
)  # fmt: skip


def test_batch_over_strategy_and_engine_parameters_equals_simulate() -> None:
    """Each set of a mixed grid (strategy x engine.rebalance x engine.target_volatility)."""
    bars = load_bars(DataConfig(n_bars=700, n_assets=5, seed=4))
    sets = pd.DataFrame(
        [
            {"lookback": lb, "skip": 5, "top_n": tn, "long_short": ls,
             "engine.rebalance": rb, "engine.target_volatility": tv}
            for lb in (60, 120) for tn, ls in ((1, False), (2, True))
            for rb in ("W", "M", 10) for tv in (None, 0.15)
        ]
    )  # fmt: skip
    batch = simulate_batch(bars, CrossSectionalMomentum, sets, keep_returns=True, **OPTIONS)
    assert batch.returns is not None
    for i, row in sets.iterrows():
        engine = {"rebalance": row["engine.rebalance"]}
        if row["engine.target_volatility"] == row["engine.target_volatility"]:
            engine["target_volatility"] = row["engine.target_volatility"]
        strategy = CrossSectionalMomentum(
            int(row["lookback"]), 5, int(row["top_n"]), bool(row["long_short"])
        )
        single = simulate(bars, strategy, **OPTIONS, **engine)
        np.testing.assert_allclose(
            batch.returns[:, i], single.returns.to_numpy(), rtol=0, atol=1e-12
        )
        for name in CHECKED:
            assert batch.metrics.loc[i, name] == pytest.approx(
                single.metrics[name], rel=1e-9, nan_ok=True
            ), name


def test_batch_of_a_legacy_strategy_with_engine_columns_equals_simulate() -> None:
    bars = load_bars(DataConfig(source="sample"))
    sets = pd.DataFrame(
        {
            "fast": [10, 20, 10],
            "slow": [50, 100, 50],
            "engine.rebalance": ["bar", "M", "W"],
            "engine.long_only": [True, False, False],
        }
    )
    batch = simulate_batch(
        bars, SmaCross, sets.assign(long_short=True), fee_bps=3.0, keep_returns=True
    )
    assert batch.returns is not None
    for i, row in sets.iterrows():
        single = simulate(
            bars, SmaCross(int(row["fast"]), int(row["slow"]), long_short=True), fee_bps=3.0,
            rebalance=row["engine.rebalance"], long_only=bool(row["engine.long_only"]),
        )  # fmt: skip
        np.testing.assert_allclose(
            batch.returns[:, i], single.returns.to_numpy(), rtol=0, atol=1e-12
        )
        assert batch.metrics.loc[i, "n_trades"] == single.metrics["n_trades"]


def test_an_unknown_engine_column_is_named() -> None:
    bars = load_bars(DataConfig(n_bars=100, n_assets=2, seed=1))
    with pytest.raises(ConfigError, match=r"engine\.rebalanse") as info:
        simulate_batch(
            bars, SmaCross, pd.DataFrame({"fast": [5], "slow": [20], "engine.rebalanse": ["M"]})
        )
    assert info.value.key == "engine.rebalanse"


def _xs_config(compose, tmp_path: Path, *extra: str):  # type: ignore[no-untyped-def]
    cfg = compose("+experiment=xs_momentum", f"output_dir={tmp_path}", *extra)
    with open_dict(cfg):
        cfg.data.n_bars = 1300
        cfg.data.n_assets = 4
        if cfg.get("montecarlo"):
            cfg.montecarlo.n_paths = 200
        cfg.tracking.enabled = False
        cfg.figures = False
    return cfg


@pytest.mark.slow
def test_xs_momentum_experiment_runs_search_walkforward_and_monte_carlo(
    compose, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    cfg = _xs_config(
        compose, tmp_path / "wf", "walkforward.train_period=2Y", "walkforward.test_period=1Y"
    )
    run(cfg)
    stored = load_result(tmp_path / "wf")
    record = stored.record
    assert record["task"] == "walkforward"
    assert record["periods_per_year"] == 252
    assert "montecarlo" in record
    folds = stored.table("folds")
    assert {"engine.rebalance", "engine.target_volatility"} <= set(folds.columns)
    assert set(folds["engine.rebalance"]) <= {"W", "M"}
    # the equal-weight benchmark over the out-of-sample bars, bought at their first close
    equity = stored.table("equity")
    closes = load_result(tmp_path / "wf").table("prices")
    oos = closes.loc[equity.index[0] : equity.index[-1]]
    bench_total = (oos.iloc[-1] / oos.iloc[0]).mean() - 1.0  # plain buy and hold
    assert equity["benchmark"].iloc[-1] - 1.0 == pytest.approx(bench_total, rel=1e-9)
    assert record["benchmark_metrics"]["total_return"] == pytest.approx(bench_total, rel=1e-9)
    # the search task alone: the best set's engine options reach the headline backtest
    cfg = _xs_config(compose, tmp_path / "search")
    with open_dict(cfg):
        cfg.walkforward = None
        cfg.montecarlo = None
    run(cfg)
    stored = load_result(tmp_path / "search")
    assert stored.record["task"] == "search"
    trials = stored.table("trials")
    assert len(trials) == 16
    assert "benchmark" in stored.table("equity").columns
    costs = stored.table("costs")
    assert costs["fees"].sum() > 0
    assert (
        stored.record["benchmark_metrics"]["sharpe_ratio"]
        == stored.record["benchmark_metrics"]["sharpe_ratio"]
    )
    best = trials.sort_values("sharpe_ratio", ascending=False).iloc[0]
    assert stored.record["metrics"]["sharpe_ratio"] == pytest.approx(best["sharpe_ratio"], rel=1e-9)


@pytest.mark.slow
def test_monthly_xs_book_equals_vectorbt_from_orders() -> None:
    """The cash/units book equals vectorbt's targetpercent orders with cash sharing.

    To 1e-6 relative over 11 years of the sample (the issue's bar); the residual (8e-7
    observed) has not been traced to a convention yet.
    """
    vbt = pytest.importorskip("vectorbt")
    from backtest.engine._schedule import rebalance_flags

    bars = load_bars(DataConfig(source="sample"))
    close = bars.close
    strategy = CrossSectionalMomentum(lookback=63, skip=0, top_n=1)
    options = {"fee_bps": 10.0, "rebalance": "M", "max_gross_leverage": 0.98}
    ours = simulate(close, strategy, **options)
    size = strategy.positions(close).to_numpy() * 0.98
    size[~rebalance_flags(close.index, "M")] = np.nan
    # fees per column (the same fee), passed as test_engine_asset_costs passes its own: vectorbt
    # compiles simulate_from_orders_nb once for both tests, not once more for a scalar fee
    pf = vbt.Portfolio.from_orders(
        close, pd.DataFrame(size, index=close.index, columns=close.columns),
        size_type="targetpercent", fees=np.full((1, close.shape[1]), 0.001), group_by=True,
        cash_sharing=True, call_seq="auto", init_cash=1.0, freq="1D",
    )  # fmt: skip
    np.testing.assert_allclose(ours.equity.to_numpy(), pf.value().to_numpy(), rtol=1e-6)
    assert len(pf.orders.records) > 20
