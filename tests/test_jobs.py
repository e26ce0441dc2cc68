"""Job records, run_backtest end to end, idempotency and the result files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest import BacktestJob, ConfigError, ResultPathMissing, load_result, run_backtest
from backtest.engine import simulate
from backtest.errors import BacktestError
from backtest.results import has_result, write_result
from backtest.strategies import SmaCross
from backtest.tasks import load_backtest
from backtest.tasks._jobs import config_hash


def small_config(compose, tmp_path: Path, *overrides: str):  # type: ignore[no-untyped-def]
    cfg = compose(
        "tracking=none",
        "data.n_bars=400",
        "data.n_assets=2",
        f"output_dir={tmp_path / 'run'}",
        *overrides,
    )
    return cfg


def test_job_round_trips_through_json(compose, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    job = BacktestJob.from_config(small_config(compose, tmp_path))
    again = BacktestJob.from_json(job.to_json())
    assert again == job
    assert job.task == "backtest"
    assert job.job_id == f"backtest-{job.config_hash[:16]}"
    json.loads(job.to_json())  # plain JSON


def test_same_experiment_gives_same_job_id_and_changes_change_it(compose, tmp_path) -> None:  # type: ignore[no-untyped-def]
    a = BacktestJob.from_config(small_config(compose, tmp_path))
    b = BacktestJob.from_config(small_config(compose, tmp_path / "elsewhere"))
    c = BacktestJob.from_config(small_config(compose, tmp_path, "strategy.fast=11"))
    assert a.job_id == b.job_id  # output_dir is not part of what is computed
    assert a.job_id != c.job_id


@pytest.mark.parametrize(
    "bad",
    ["../etc", "a b", "x" * 200, "-leading", "a/b"],
    ids=["dots", "space", "long", "dash", "slash"],
)
def test_unsafe_job_ids_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="job id"):
        BacktestJob(config={"name": "x"}, job_id=bad)


def test_unknown_fields_in_a_record_are_named() -> None:
    with pytest.raises(ConfigError, match="surprise"):
        BacktestJob.from_dict({"config": {}, "surprise": 1})


def test_run_backtest_writes_a_complete_result(compose, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = small_config(compose, tmp_path)
    result = run_backtest(cfg)
    run_dir = Path(result.run_dir)
    stored = load_result(run_dir)
    rec = stored.record
    for key in ("task", "params", "metrics", "seed", "config_hash", "data_fingerprint", "version"):
        assert key in rec, key
    assert rec["config_hash"] == config_hash(cfg)
    assert rec["params"] == {"fast": 10, "slow": 50, "long_short": False}
    assert {"equity", "trades", "positions"} <= set(stored.tables)
    assert (run_dir / "config.yaml").is_file()
    # the stored numbers are the engine's numbers for the same data and params
    from backtest.data import synthetic_prices

    prices = synthetic_prices(400, 2, seed=42)
    direct = simulate(prices, SmaCross(10, 50), fee_bps=1.0, slippage_bps=1.0)
    np.testing.assert_allclose(
        stored.table("equity")["equity"].to_numpy(), direct.equity.to_numpy(), rtol=1e-12
    )
    assert rec["metrics"]["sharpe_ratio"] == pytest.approx(direct.metrics["sharpe_ratio"])
    assert not list(run_dir.glob("*.tmp")) and not list(run_dir.glob(".*"))


def test_run_backtest_is_idempotent(compose, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = small_config(compose, tmp_path)
    first = run_backtest(cfg)
    stamp = (Path(first.run_dir) / "result.json").stat().st_mtime_ns
    second = run_backtest(BacktestJob.from_config(cfg))
    assert (Path(first.run_dir) / "result.json").stat().st_mtime_ns == stamp
    pd.testing.assert_series_equal(first.returns, second.returns, check_freq=False)
    assert first.metrics == pytest.approx(second.metrics, nan_ok=True)


def test_a_different_config_never_overwrites_a_result(compose, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_backtest(small_config(compose, tmp_path))
    with pytest.raises(BacktestError, match="another config"):
        run_backtest(small_config(compose, tmp_path, "strategy.fast=12"))


def test_load_result_names_the_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ResultPathMissing, match="nowhere") as err:
        load_result(tmp_path / "nowhere")
    assert err.value.path == tmp_path / "nowhere"
    assert isinstance(err.value, FileNotFoundError)


def test_result_json_is_written_last(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A crash while writing tables leaves no result.json, so nothing looks complete."""

    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        write_result(tmp_path / "r", {"task": "backtest"}, tables={"x": pd.DataFrame({"a": [1]})})
    assert not has_result(tmp_path / "r")
    assert not list((tmp_path / "r").iterdir())


def test_load_backtest_round_trips(compose, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run_backtest(small_config(compose, tmp_path))
    again = load_backtest(result.run_dir)
    pd.testing.assert_frame_equal(
        again.trades.reset_index(drop=True), result.trades.reset_index(drop=True), check_dtype=False
    )
