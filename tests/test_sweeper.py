"""Hydra multiruns: the sweep summary callback and our Optuna sweeper plugin.

The sweeper runs inside real Hydra apps (basic launcher, and a threaded test launcher
plugin that records when each job starts and ends), against in-memory and SQLite
Optuna storages.
"""

from __future__ import annotations

import math
import sys
import textwrap
import threading
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from hydra.core.global_hydra import GlobalHydra

from backtest.cli._callbacks import summarize_sweep

APP_CONFIG = """\
defaults:
  - override hydra/sweeper: optuna
  - _self_
x: 0
y: 0.0
hydra:
  sweep:
    dir: {sweep_dir}
  sweeper:
    n_trials: 10
    seed: 0
    params:
      x: range(0, 10)
      y: interval(0, 1)
"""

LAUNCHER = '''\
import threading, time
from dataclasses import dataclass
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from omegaconf import OmegaConf, open_dict

EVENTS = []
LOCK = threading.Lock()

@dataclass
class ThreadTestLauncherConf:
    _target_: str = "hydra_plugins.thread_test_launcher.thread_launcher.ThreadTestLauncher"

ConfigStore.instance().store(group="hydra/launcher", name="thread_test",
                             node=ThreadTestLauncherConf, provider="tests")

class ThreadTestLauncher(Launcher):
    """Runs the task function directly (no run_job), sleeping per job number."""
    def __init__(self, **kwargs):
        self.config = None
    def setup(self, *, hydra_context, task_function, config):
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config
    def launch(self, job_overrides, initial_job_idx):
        out = []
        for i, overrides in enumerate(job_overrides):
            num = initial_job_idx + i
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with LOCK:
                EVENTS.append(("start", num, time.monotonic()))
            time.sleep(1.0 if num == 0 else 0.05)
            task_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
            ret = JobReturn(overrides=list(overrides), cfg=task_cfg, hydra_cfg=cfg)
            ret.status = JobStatus.COMPLETED
            ret.return_value = self.task_function(task_cfg)
            with LOCK:
                EVENTS.append(("end", num, time.monotonic()))
            out.append(ret)
        return out
'''


def objective(cfg):  # type: ignore[no-untyped-def]
    """A peak at x = 6; x = 3 raises, x = 4 returns NaN."""
    if cfg.x == 3:
        raise ValueError("x=3 breaks")
    if cfg.x == 4:
        return math.nan
    return -((cfg.x - 6) ** 2) + float(cfg.y)


def run_app(conf_dir: Path, overrides: list[str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import hydra

    GlobalHydra.instance().clear()
    app = hydra.main(version_base="1.3", config_path=str(conf_dir), config_name="config")(objective)
    monkeypatch.setattr(
        sys, "argv", ["app", "-m", "hydra/hydra_logging=none", "hydra/job_logging=none", *overrides]
    )
    try:
        app()
    finally:
        GlobalHydra.instance().clear()


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "config.yaml").write_text(APP_CONFIG.format(sweep_dir=tmp_path / "sweep"))
    return tmp_path


def results_of(sweep_dir: Path) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())


def test_sweeper_runs_trials_and_reports_failures(app_dir, monkeypatch):
    run_app(app_dir / "conf", ["hydra.sweeper.n_trials=25"], monkeypatch)
    res = results_of(app_dir / "sweep")
    assert res["n_finished"] == res["n_run_now"] == 25
    assert res["n_complete"] + res["n_failed"] == 25
    reasons = res["failure_reasons"]
    assert res["n_failed"] == sum(reasons.values()) >= 1
    assert set(reasons) <= {"ValueError: x=3 breaks", "objective is nan"}
    assert res["best_params"]["x"] == 6
    assert res["best_value"] == pytest.approx(-(0**2) + res["best_params"]["y"])
    # one Hydra job directory per trial, numbered by the trial
    jobs = sorted(int(p.name) for p in (app_dir / "sweep").iterdir() if p.name.isdigit())
    assert len(jobs) == 25
    # like Hydra's basic sweeper, the sweep's config marks the directory as one sweep
    # (tracking nests its jobs under one parent run by it)
    saved = yaml.safe_load((app_dir / "sweep" / "multirun.yaml").read_text())
    assert saved["hydra"]["sweeper"]["n_trials"] == 25


def test_a_stopped_sweep_resumes_to_its_total(app_dir, monkeypatch):
    db = app_dir / "study.db"
    storage = f"sqlite:///{db}"
    common = [f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=resume"]
    run_app(app_dir / "conf", [*common, "hydra.sweeper.n_trials=4"], monkeypatch)
    assert results_of(app_dir / "sweep")["n_finished"] == 4
    # a sweep killed mid-trial leaves a RUNNING trial behind
    study = optuna.load_study(study_name="resume", storage=storage)
    stale = study.ask()
    stale.set_user_attr("backtest_job", True)
    run_app(app_dir / "conf", [*common, "hydra.sweeper.n_trials=7"], monkeypatch)
    res = results_of(app_dir / "sweep")
    assert (res["n_finished_before"], res["n_run_now"], res["n_finished"]) == (4, 3, 7)
    assert res["n_interrupted"] == 1
    study = optuna.load_study(study_name="resume", storage=storage)
    assert study.trials[stale.number].state == optuna.trial.TrialState.FAIL
    # the total is reached: running again adds nothing
    run_app(app_dir / "conf", [*common, "hydra.sweeper.n_trials=7"], monkeypatch)
    res = results_of(app_dir / "sweep")
    assert (res["n_run_now"], res["n_finished"]) == (0, 7)


def test_constraint_prunes_proposals_that_are_not_trials(app_dir, monkeypatch):
    run_app(
        app_dir / "conf",
        ["hydra.sweeper.n_trials=8", "hydra.sweeper.constraint='x > 5'"],
        monkeypatch,
    )
    res = results_of(app_dir / "sweep")
    assert res["n_finished"] == 8
    study_trials = [p for p in (app_dir / "sweep").iterdir() if p.name.isdigit()]
    for job in study_trials:
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        x = int(next(o for o in overrides if o.startswith("x=")).split("=")[1])
        assert x > 5


def test_new_trials_start_as_soon_as_a_job_finishes(app_dir, monkeypatch):
    plugin = app_dir / "plugins" / "hydra_plugins" / "thread_test_launcher"
    plugin.mkdir(parents=True)
    (plugin / "__init__.py").write_text("")
    (plugin / "thread_launcher.py").write_text(textwrap.dedent(LAUNCHER))
    monkeypatch.syspath_prepend(str(app_dir / "plugins"))
    import hydra_plugins

    monkeypatch.setattr(hydra_plugins, "__path__", [*hydra_plugins.__path__, str(plugin.parent)])
    from hydra.core.plugins import Plugins
    from hydra.core.singleton import Singleton

    Singleton._instances.pop(Plugins, None)  # rescan, now with the test launcher
    try:
        run_app(
            app_dir / "conf",
            ["hydra/launcher=thread_test", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=8"],
            monkeypatch,
        )
        from hydra_plugins.thread_test_launcher.thread_launcher import EVENTS
    finally:
        Singleton._instances.pop(Plugins, None)
    events = sorted(EVENTS, key=lambda e: e[2])
    running, peak = 0, 0
    for kind, _, _ in events:
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak == 2  # never more than n_jobs in flight
    first_end = next(t for kind, num, t in events if kind == "end" and num == 0)
    during = [num for kind, num, t in events if kind == "end" and num != 0 and t < first_end]
    # job 0 takes 1 s; the other slot keeps asking and running trials meanwhile
    assert len(during) >= 3
    assert results_of(app_dir / "sweep")["n_finished"] == 8


def test_sweep_summary_has_one_row_per_job(in_tmp_cwd, monkeypatch):
    from backtest.__main__ import main

    GlobalHydra.instance().clear()
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "backtest",
            "-m",
            "strategy.fast=5,10",
            "strategy.slow=50,100",
            "tracking=none",
            "data.n_bars=400",
            "data.n_assets=1",
            "summary=false",
            "hydra.sweep.dir=sweep",
            "hydra/hydra_logging=none",
            "hydra/job_logging=none",
        ],
    )
    try:
        main()
    finally:
        GlobalHydra.instance().clear()
    sweep = in_tmp_cwd / "sweep"
    table = pd.read_csv(sweep / "summary.csv")
    assert len(table) == 4 and sorted(table["job"]) == [0, 1, 2, 3]
    assert (table["status"] == "ok").all()
    assert table["objective"].is_monotonic_decreasing
    assert (table["objective"] == table["sharpe_ratio"]).all()
    row = table[table["job"] == 2].iloc[0]
    assert "strategy.fast=10" in row["overrides"] and "strategy.slow=50" in row["overrides"]
    assert (row["param.fast"], row["param.slow"]) == (10, 50)
    assert Path(row["run_dir"]).name == "2"
    pd.testing.assert_frame_equal(
        pd.read_parquet(sweep / "summary.parquet"), summarize_sweep(sweep)
    )


def test_summary_marks_jobs_without_a_result_as_failed(tmp_path):
    job = tmp_path / "0" / ".hydra"
    job.mkdir(parents=True)
    (job / "overrides.yaml").write_text("- strategy.fast=500\n")
    table = summarize_sweep(tmp_path)
    assert table[["job", "overrides", "status"]].to_dict("records") == [
        {"job": 0, "overrides": "strategy.fast=500", "status": "failed"}
    ]


def test_plugin_is_registered_for_hydra():
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    names = [f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(Sweeper)]
    assert "hydra_plugins.backtest_optuna_sweeper.optuna_sweeper.BacktestOptunaSweeper" in names
    assert "optuna.yaml" in ConfigStore.instance().list("hydra/sweeper")
    assert threading.active_count() >= 1 and time.monotonic() > 0


def test_sqlite_storage_folder_is_created_and_bad_storage_is_named(tmp_path: Path) -> None:
    from hydra_plugins.backtest_optuna_sweeper._core import _make_sqlite_folder

    _make_sqlite_folder(f"sqlite:///{tmp_path}/new/folder/sweeps.db")
    assert (tmp_path / "new" / "folder").is_dir()
    _make_sqlite_folder("sqlite:///:memory:")
    _make_sqlite_folder(None)
