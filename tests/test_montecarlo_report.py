"""Monte Carlo: config validation, inputs, every method from config, report output."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

import backtest.config
from backtest.config import EngineConfig, MonteCarloMethod
from backtest.data import synthetic_prices
from backtest.engine import simulate
from backtest.errors import ConfigError, DataValidationError
from backtest.montecarlo import MonteCarloConfig, MonteCarloReport, MonteCarloSimulator
from backtest.strategies import SmaCross

CONF = Path(__file__).resolve().parent.parent / "conf" / "montecarlo"
PRICES = synthetic_prices(400, 2, seed=8)
STRATEGY = SmaCross(5, 20)
RESULT = simulate(PRICES, STRATEGY, fee_bps=2.0)
RETURNS = RESULT.returns


def _sim(**kw) -> MonteCarloSimulator:
    return MonteCarloSimulator(MonteCarloConfig(**{"n_paths": 40, "seed": 1, **kw}), progress=False)


def test_config_is_the_shared_schema() -> None:
    assert MonteCarloConfig is backtest.config.MonteCarloConfig


@pytest.mark.parametrize(
    ("field", "value", "key"),
    [
        ("method", "bootstrap", "montecarlo.method"),
        ("n_paths", 0, "montecarlo.n_paths"),
        ("n_paths", "many", "montecarlo.n_paths"),
        ("block_size", 0.5, "montecarlo.block_size"),
        ("block_size", float("nan"), "montecarlo.block_size"),
        ("horizon_bars", 1, "montecarlo.horizon_bars"),
        ("confidence", [], "montecarlo.confidence"),
        ("confidence", [5, 150], "montecarlo.confidence"),
        ("ruin_drawdown", 0.0, "montecarlo.ruin_drawdown"),
        ("ruin_drawdown", 1.5, "montecarlo.ruin_drawdown"),
        ("n_jobs", 0, "montecarlo.n_jobs"),
        ("chunk_size", 0, "montecarlo.chunk_size"),
        ("seed", -3, "montecarlo.seed"),
        ("jitter", {"fast": -0.1}, "montecarlo.jitter.fast"),
        ("jitter", {"fast": []}, "montecarlo.jitter.fast"),
    ],
    ids=lambda v: str(v),
)
def test_bad_config_values_name_the_key(field: str, value: object, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        _sim(**{field: value}).run(RETURNS)
    assert err.value.key == key
    assert key in str(err.value)


@pytest.mark.parametrize(
    ("method", "source", "key"),
    [
        ("iid_bootstrap", RESULT.trades, "montecarlo.method"),
        ("trade_reshuffle", RETURNS, "montecarlo.method"),
        ("stationary_bootstrap", None, "montecarlo.method"),
    ],
    ids=["trades_for_bars", "bars_for_trades", "no_source"],
)
def test_a_source_the_method_cannot_use_is_a_config_error(method, source, key) -> None:
    with pytest.raises(ConfigError) as err:
        _sim(method=method).run(source)
    assert err.value.key == key


def test_trade_reshuffle_cannot_draw_more_trades_than_exist() -> None:
    with pytest.raises(ConfigError) as err:
        _sim(method="trade_reshuffle", horizon_bars=len(RESULT.trades) + 1).run(RESULT)
    assert err.value.key == "montecarlo.horizon_bars"


@pytest.mark.parametrize(
    ("bad", "what"), [(np.nan, "missing"), (-1.5, "below -100%")], ids=["nan", "below_minus_1"]
)
def test_bad_returns_name_column_timestamp_and_count(bad: float, what: str) -> None:
    returns = RETURNS.copy()
    returns.iloc[[10, 30]] = bad
    with pytest.raises(DataValidationError, match=what) as err:
        _sim(method="iid_bootstrap").run(returns)
    assert err.value.column == "returns"
    assert err.value.timestamp == RETURNS.index[10]
    assert err.value.count == 2


def test_trades_without_a_return_column_are_refused() -> None:
    with pytest.raises(DataValidationError) as err:
        _sim(method="trade_bootstrap").run(RESULT.trades.drop(columns="return"))
    assert err.value.column == "return"


# ---------------------------------------------------------------- every method from config


def test_every_method_has_a_yaml() -> None:
    assert {p.stem for p in CONF.glob("*.yaml")} == {m.value for m in MonteCarloMethod}


@pytest.mark.parametrize("name", sorted(m.value for m in MonteCarloMethod))
def test_every_method_runs_from_config(compose, name: str) -> None:
    cfg = compose(f"montecarlo={name}", "montecarlo.n_paths=30", "seed=9")
    mc = OmegaConf.to_object(cfg.montecarlo)
    assert isinstance(mc, MonteCarloConfig)
    assert mc.method is MonteCarloMethod(name)
    assert mc.seed == 9
    engine = OmegaConf.to_object(cfg.engine)
    report = MonteCarloSimulator(mc, progress=False).run(
        RESULT, prices=PRICES, strategy=STRATEGY, engine=engine
    )
    assert report.method == name
    assert report.n_paths == 30
    assert report.paths["max_drawdown"].between(0, 1).all()
    json.dumps(report.to_dict(), allow_nan=False)


@pytest.mark.parametrize("name", sorted(m.value for m in MonteCarloMethod))
def test_every_method_runs_from_python(name: str) -> None:
    report = _sim(method=MonteCarloMethod(name), n_paths=25).run(
        RESULT, prices=PRICES, strategy=STRATEGY, engine=EngineConfig(fee_bps=2.0)
    )
    assert report.paths.shape[0] == 25
    assert report.fan.index[-1] == report.horizon_bars
    if name not in ("trade_reshuffle", "trade_bootstrap", "synthetic_prices"):
        assert report.observed["sharpe_ratio"] == pytest.approx(RESULT.metrics["sharpe_ratio"])


# ---------------------------------------------------------------- progress and output


def test_progress_is_one_log_line_off_a_terminal_and_can_be_disabled(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Off a terminal (here: captured), no bar is drawn; one line says what was done."""
    cfg = MonteCarloConfig(method="iid_bootstrap", n_paths=50, chunk_size=10, seed=1)
    with caplog.at_level("INFO", logger="backtest.progress"):
        MonteCarloSimulator(cfg, progress=True).run(RETURNS)
    assert capsys.readouterr().err == ""  # no bar redrawn into a log
    (line,) = [r.getMessage() for r in caplog.records if r.name == "backtest.progress"]
    assert line.startswith("Monte Carlo (iid_bootstrap): 50 paths in ")
    caplog.clear()
    with caplog.at_level("INFO", logger="backtest.progress"):
        MonteCarloSimulator(cfg, progress=False).run(RETURNS)
    assert capsys.readouterr().err == "" and not caplog.records


def test_report_is_frozen_and_serialisable(tmp_path: Path) -> None:
    report = _sim(method="stationary_bootstrap", n_paths=200).run(RETURNS)
    assert isinstance(report, MonteCarloReport)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.prob_loss = 0.0  # type: ignore[misc]
    record = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert record["percentiles"]["max_drawdown"]["p95"] == pytest.approx(
        report.percentiles.loc[95.0, "max_drawdown"]
    )
    assert record["p_values"]["sharpe_ratio"] == pytest.approx(report.p_values["sharpe_ratio"])
    summary = report.summary()
    assert summary.loc["total_return", "p50"] == pytest.approx(
        report.paths["total_return"].median()
    )


def test_write_puts_tables_and_figures_in_the_run_directory(tmp_path: Path) -> None:
    report = _sim(method="trade_reshuffle", n_paths=100).run(RESULT)
    written = report.write(tmp_path)
    paths = pd.read_parquet(written["montecarlo_paths"])
    pd.testing.assert_frame_equal(paths.set_index("path"), report.paths)
    fan = pd.read_parquet(written["montecarlo_fan"]).set_index("bar")
    pd.testing.assert_frame_equal(fan, report.fan)
    for name in ("montecarlo_fan.png", "montecarlo_histograms.png"):
        png = written[name]
        assert png.parent == tmp_path / "figures"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 20_000


def test_importing_montecarlo_stays_light() -> None:
    code = "import sys, backtest.montecarlo; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("n_assets", "weights", "long_short"),
    [(2, None, False), (4, {"SYN0": 0.4, "SYN1": 0.3, "SYN2": 0.2, "SYN3": 0.1}, True)],
    ids=["2-assets-equal", "4-assets-weighted-long-short"],
)
@pytest.mark.parametrize("method", ["trade_reshuffle", "trade_bootstrap"])
def test_trade_methods_observe_the_backtests_own_figures_with_several_assets(
    method: str, n_assets: int, weights: dict[str, float] | None, long_short: bool
) -> None:
    prices = synthetic_prices(600, n_assets, seed=3)
    res = simulate(prices, SmaCross(5, 20, long_short=long_short), fee_bps=5.0, weights=weights)
    assert res.trades["entry_time"].duplicated().any() or n_assets > 1  # overlapping trades
    engine = EngineConfig(fee_bps=5.0, weights=weights or {})
    report = _sim(method=method, n_paths=60).run(res, engine=engine)
    for name in ("total_return", "cagr"):
        assert report.observed[name] == pytest.approx(res.metrics[name], rel=1e-12, abs=1e-15)
    if method == "trade_reshuffle":  # a reordering of the same steps ends at the same wealth
        np.testing.assert_allclose(
            report.paths["total_return"], res.metrics["total_return"], rtol=1e-12
        )


def test_portfolio_steps_of_one_asset_are_its_trades() -> None:
    from backtest.montecarlo._inputs import portfolio_steps

    prices = synthetic_prices(500, 1, seed=4)
    res = simulate(prices, SmaCross(5, 20), fee_bps=5.0)
    trades = res.trades.sort_values("exit_time")
    np.testing.assert_allclose(
        portfolio_steps(res.returns, trades), trades["return"].to_numpy(), rtol=1e-12
    )
    # a bare trades table is used as given
    as_given = _sim(method="trade_reshuffle").run(RESULT.trades)
    np.testing.assert_allclose(
        1 + as_given.paths["total_return"], np.prod(1 + RESULT.trades["return"]), rtol=1e-12
    )


def test_rank_and_p_value_treat_rounding_noise_as_ties() -> None:
    from backtest.montecarlo._report import rank_and_p_value

    sims = np.array([1.0, 1.0 + 1e-15, 1.0 - 1e-15, np.nan])
    assert rank_and_p_value(sims, 1.0, "total_return") == (100.0, 1.0)
    sims = np.array([0.1, 0.2, 0.3, 0.4])
    rank, p = rank_and_p_value(sims, 0.25, "max_drawdown")  # lower is better
    assert rank == 50.0
    assert p == pytest.approx((1 + 2) / (1 + 4))
    assert np.isnan(rank_and_p_value(sims, 0.25, "annual_volatility")[1])  # no direction


def test_trade_methods_need_no_positions_table() -> None:
    # a result read back from disk may lack positions: the portfolio returns suffice
    loaded = dataclasses.replace(RESULT, positions=pd.DataFrame())
    report = _sim(method="trade_reshuffle").run(loaded)
    np.testing.assert_allclose(
        1 + report.paths["total_return"], 1 + RESULT.metrics["total_return"], rtol=1e-12
    )
