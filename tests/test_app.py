"""Every experiment composes and runs end to end; the CLI reports bad config clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from backtest.app import format_summary, run
from backtest.results import load_result
from tests.cli_run import backtest_command

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


def shrink(cfg):  # type: ignore[no-untyped-def]
    """Small data and few Monte Carlo paths, so every experiment runs in seconds."""
    with open_dict(cfg):
        cfg.data.n_bars = min(int(cfg.data.n_bars), 1300)
        cfg.data.n_assets = min(int(cfg.data.n_assets), 2)
        if cfg.get("montecarlo"):
            cfg.montecarlo.n_paths = 200
        cfg.tracking.enabled = False
    return cfg


@pytest.mark.parametrize("name", EXPERIMENTS, ids=EXPERIMENTS)
def test_every_experiment_composes_and_runs(name: str, compose, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cfg = shrink(compose(f"+experiment={name}", f"output_dir={tmp_path / name}"))
    assert cfg.name == name
    objective = run(cfg)
    record = load_result(tmp_path / name).record
    assert record["name"] == name
    assert record["task"] in ("backtest", "search", "walkforward", "montecarlo")
    out = capsys.readouterr().out
    assert "sharpe_ratio" in out and name in out
    if objective is not None:
        assert objective == pytest.approx(record["objective"])


def test_summary_prints_na_for_undefined_metrics() -> None:
    text = format_summary(
        {
            "name": "x",
            "task": "backtest",
            "n_bars": 3,
            "symbols": ["A"],
            "params": {},
            "metrics": {"sharpe_ratio": None, "cagr": 0.1},
        }
    )
    assert "n/a" in text and "10.00%" in text


def test_summary_prints_periods_per_year_and_exit_reasons() -> None:
    record = {
        "name": "x",
        "task": "backtest",
        "n_bars": 3,
        "symbols": ["A"],
        "params": {},
        "periods_per_year": 52.0,
        "metrics": {"cagr": 0.1},
        "summary": [["exits", "signal 3, stop_loss 2"]],
    }
    lines = format_summary(record).splitlines()
    assert any(line.split() == ["periods_per_year", "52"] for line in lines)
    assert any(line.split()[:1] == ["exits"] and "stop_loss 2" in line for line in lines)
    assert "periods_per_year" not in format_summary({**record, "periods_per_year": None})


def test_cli_runs_an_experiment_into_outputs(tmp_path: Path) -> None:
    proc = backtest_command(
        "+experiment=sma_cross",
        "tracking=none",
        "data.n_bars=300",
        "strategy.fast=5",
        "strategy.slow=20",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    runs = list((tmp_path / "outputs" / "sma_cross").glob("*/result.json"))
    assert len(runs) == 1
    assert "sharpe_ratio" in proc.stdout


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("strategy.fsat=3", "strategy.fsat"),
        ("strategy.fast=abc", "strategy.fast"),
        ("engine.fee_bps=cheap", "engine.fee_bps"),
        ("data.sorce=csv", "data.sorce"),
        ("strategy.fast=80", "fast"),
    ],
    ids=["typo", "wrong-type", "wrong-type-engine", "typo-data", "fast>=slow"],
)
def test_cli_bad_config_names_the_key(tmp_path: Path, override: str, needle: str) -> None:
    proc = backtest_command("tracking=none", "data.n_bars=100", override, cwd=tmp_path)
    assert proc.returncode != 0
    assert needle in proc.stderr + proc.stdout


def test_config_yaml_has_no_experiment_default() -> None:
    """`+experiment=` must not fail with "Multiple values for experiment"."""
    cfg = OmegaConf.load(ROOT / "conf" / "config.yaml")
    assert not any("experiment" in str(d) for d in cfg.defaults)


def test_figures_follow_tracking_unless_set_and_keep_the_job_identity(compose, tmp_path: Path):  # type: ignore[no-untyped-def]
    """PNGs are MLflow's static copies: drawn by default only when tracking is on."""
    from backtest import BacktestJob

    common = ("data.n_bars=300",)
    on = compose("tracking=none", *common, "figures=true", f"output_dir={tmp_path / 'on'}")
    off = compose("tracking=none", *common, "figures=false", f"output_dir={tmp_path / 'off'}")
    auto = compose("tracking=none", *common, f"output_dir={tmp_path / 'auto'}")
    tracked = compose(
        *common, f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", f"output_dir={tmp_path / 't'}"
    )
    for cfg in (on, off, auto, tracked):
        run(cfg)
    assert list((tmp_path / "on" / "figures").glob("*.png"))
    assert list((tmp_path / "t" / "figures").glob("*.png"))
    assert not list((tmp_path / "off").rglob("*.png"))
    assert not list((tmp_path / "auto").rglob("*.png"))
    assert (tmp_path / "auto" / "report.html").exists()  # the interactive figures stay
    assert BacktestJob.from_config(on).job_id == BacktestJob.from_config(off).job_id
