"""The ``search`` task end to end: config -> search -> best backtest -> run directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import open_dict

from backtest.app import run
from backtest.data import load_prices
from backtest.engine import simulate
from backtest.errors import ConfigError
from backtest.results import load_result
from backtest.strategies import MeanReversion, SmaCross
from backtest.tasks import typed_settings


def small(cfg, tmp_path: Path, **search):  # type: ignore[no-untyped-def]
    with open_dict(cfg):
        cfg.data.n_bars = 800
        cfg.data.n_assets = 2
        cfg.tracking.enabled = False
        cfg.figures = True  # the PNGs are checked here (by default only tracked runs draw them)
        cfg.tracking.max_child_runs = 3
        cfg.output_dir = str(tmp_path / "run")
        cfg.summary = False
        for key, value in search.items():
            cfg.search[key] = value
    return cfg


def test_sma_grid_experiment_writes_trials_best_backtest_and_heatmap(compose, tmp_path):
    cfg = small(
        compose("+experiment=sma_grid"),
        tmp_path,
        space={"fast": [5, 10, 20], "slow": {"low": 10, "high": 60, "step": 25}},
        keep_returns=50,
    )
    objective = run(cfg)
    stored = load_result(tmp_path / "run")
    record = stored.record
    section = record["search"]
    assert section["method"] == "grid"
    assert section["n_trials"] == 7  # 3 x 3 minus (10, 10) and (20, 10)
    assert section["n_failed"] == 0
    trials = stored.table("trials")
    assert len(trials) == 7 and (trials["fast"] < trials["slow"]).all()
    best = trials.loc[trials["sharpe_ratio"].idxmax()]
    assert section["best_params"] == {"fast": int(best["fast"]), "slow": int(best["slow"])}
    assert objective == pytest.approx(section["best_score"]) == pytest.approx(best["sharpe_ratio"])
    # the headline backtest is simulate() of the best parameters over all the data
    settings = typed_settings(cfg)
    prices = load_prices(settings.data)
    single = simulate(prices, SmaCross(int(best["fast"]), int(best["slow"])), fee_bps=10.0)
    assert record["params"] == {
        "fast": int(best["fast"]),
        "slow": int(best["slow"]),
        "long_short": False,
    }
    assert record["metrics"]["sharpe_ratio"] == pytest.approx(
        single.metrics["sharpe_ratio"], rel=1e-12
    )
    assert (tmp_path / "run" / "figures" / "heatmap.png").read_bytes()[:4] == b"\x89PNG"
    of = record["overfitting"]
    assert 0.0 <= of["pbo"] <= 1.0
    # the SPA of the kept trials and the DSR with the effective number of trials
    kept = stored.table("trials")  # all 7 trials were kept (keep_returns=50)
    assert 1.0 <= of["effective_trials"] <= len(kept)
    assert of["deflated_sharpe_effective"] >= of["deflated_sharpe"]
    assert 0.0 <= of["spa_pvalue"] <= of["reality_check_pvalue"] <= 1.0


def test_children_are_the_best_k_trials(compose, tmp_path):
    from backtest.tasks import _search
    from backtest.tasks._context import TaskContext

    cfg = small(
        compose("+experiment=sma_grid"),
        tmp_path,
        space={"fast": [3, 5, 8, 13], "slow": [21, 34, 55]},
    )
    settings = typed_settings(cfg)
    prices = load_prices(settings.data)
    from backtest.tasks._jobs import BacktestJob

    ctx = TaskContext(
        job=BacktestJob.from_config(cfg),
        settings=settings,
        prices=prices,
        strategy_cls=SmaCross,
        strategy_params={"fast": 10, "slow": 50, "long_short": False},
        run_dir=tmp_path / "ctx",
        data_fingerprint="x",
    )
    out = _search.run(ctx)
    trials = out.tables["trials"]
    top = trials.sort_values("sharpe_ratio", ascending=False).head(3)
    assert [c["name"] for c in out.children] == [f"trial {t}" for t in top["trial"]]
    assert out.children[0]["params"] == {
        "fast": int(top["fast"].iloc[0]),
        "slow": int(top["slow"].iloc[0]),
    }
    assert out.children[0]["metrics"]["sharpe_ratio"] == out.objective
    assert out.record["search"]["direction"] == "maximize"
    assert any(label == "best trial" for label, _ in out.summary)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["search=grid"], "search.space"),
        (["search=random", "+search.space.nope=[1,2]"], "search.space.nope"),
        (["walkforward=rolling", "search=grid"], "search.space"),
        (["walkforward=rolling", "search=grid", "+search.space.nope=[1,2]"], "search.space.nope"),
    ],
    ids=["empty-space", "unknown-parameter", "walkforward-empty", "walkforward-unknown"],
)
def test_bad_search_config_names_the_key(compose, tmp_path, overrides, key):
    cfg = small(compose(*overrides), tmp_path)
    with pytest.raises(ConfigError) as info:
        run(cfg)
    assert info.value.key == key


def test_tpe_experiment_and_fixed_parameters(compose, tmp_path):
    cfg = small(
        compose("+experiment=sma_tpe", "strategy.long_short=true"),
        tmp_path,
        n_iter=12,
        space={"fast": {"low": 2, "high": 30}, "slow": {"low": 40, "high": 200}},
    )
    run(cfg)
    record = load_result(tmp_path / "run").record
    assert record["search"]["method"] == "tpe" and record["search"]["n_trials"] == 12
    assert record["params"]["long_short"] is True  # not searched: kept from the strategy config


def test_strategy_without_fused_kernel_is_searched_through_the_generic_path(compose, tmp_path):
    cfg = small(
        compose("strategy=mean_reversion", "search=random"),
        tmp_path,
        n_iter=6,
        seed=4,
        space={"lookback": {"low": 10, "high": 40}, "entry_z": {"low": 1.0, "high": 2.5}},
    )
    run(cfg)
    stored = load_result(tmp_path / "run")
    trials = stored.table("trials")
    assert len(trials) == 6
    prices = load_prices(typed_settings(cfg).data)
    row = trials.iloc[0]
    single = simulate(
        prices,
        MeanReversion(int(row["lookback"]), float(row["entry_z"]), 0.5),
        fee_bps=1.0,
        slippage_bps=1.0,
    )
    np.testing.assert_allclose(row["total_return"], single.metrics["total_return"], rtol=1e-12)
