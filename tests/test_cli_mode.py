"""``backtest run`` composes the config once, unless a config could set ``hydra.mode``.

Hydra 1.3 composes the whole config in MULTIRUN mode only to read ``hydra.mode``
(``Hydra.get_mode``), then again to run; :mod:`backtest.cli._run` skips that first
composition when no YAML file on the search path and no override could set the mode.
The commands run in a process of their own (Hydra configures logging and its global
state), with ``backtest.app.run`` replaced by a recorder: what is checked is what Hydra
composes and which jobs it starts, not the backtests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from backtest.cli import _run

ROOT = Path(__file__).resolve().parent.parent

# argv[1]: the command line as JSON; argv[2]: "skip-always" makes get_mode return None
# whatever the configs say (what the check must not do)
_SCRIPT = """
import json, sys
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.hydra_config import HydraConfig
import backtest.app
from backtest.cli import _run, main

composed = []
load = ConfigLoaderImpl.load_configuration
def counting(self, *args, **kwargs):
    composed.append(kwargs.get("run_mode", args[2] if len(args) > 2 else None).name)
    return load(self, *args, **kwargs)
ConfigLoaderImpl.load_configuration = counting
jobs = []
def record(cfg):
    jobs.append({"fast": cfg.strategy.fast, "mode": HydraConfig.get().mode.name})
    return 0.0
backtest.app.run = record
if sys.argv[2] == "skip-always":
    _run._may_set_mode = lambda hydra_app, overrides: False
code = main(json.loads(sys.argv[1]))
print(json.dumps({"code": code, "composed": composed, "jobs": jobs}))
"""


def _command(cwd: Path, *args: str, skip_always: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(["run", *args]),
         "skip-always" if skip_always else "as-shipped"],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=300, check=False,
    )  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"code": proc.returncode, "stderr": proc.stderr, "jobs": None}
    return dict(json.loads(lines[-1]), stderr=proc.stderr)


def test_a_plain_run_composes_once_and_a_sweep_still_sweeps(tmp_path: Path) -> None:
    plain = _command(tmp_path, "tracking=none", "strategy.fast=7")
    assert plain["code"] == 0, plain["stderr"]
    assert plain["jobs"] == [{"fast": 7, "mode": "RUN"}]
    assert plain["composed"] == ["RUN"]  # Hydra's get_mode composed it in MULTIRUN first

    sweep = _command(tmp_path, "-m", "tracking=none", "strategy.fast=5,10")
    assert sweep["code"] == 0, sweep["stderr"]
    assert sweep["jobs"] == [{"fast": 5, "mode": "MULTIRUN"}, {"fast": 10, "mode": "MULTIRUN"}]
    # the sweep's config (then its jobs' in RUN mode); none only to read the mode
    assert sweep["composed"].count("MULTIRUN") == 1


def test_an_experiment_that_sets_hydra_mode_still_sweeps_without_the_flag(tmp_path: Path) -> None:
    mine = tmp_path / "conf" / "experiment" / "mine.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("# @package _global_\nhydra:\n  mode: MULTIRUN\n")
    args = ("+experiment=mine", "strategy.fast=5,10", "tracking=none", "report=false")

    ran = _command(tmp_path, *args)
    assert ran["code"] == 0, ran["stderr"]
    assert ran["jobs"] == [{"fast": 5, "mode": "MULTIRUN"}, {"fast": 10, "mode": "MULTIRUN"}]

    # had the mode been taken as unset, Hydra would run it once and refuse the sweep
    skipped = _command(tmp_path, *args, skip_always=True)
    assert not skipped["jobs"]
    assert "strategy.fast=5,10" in skipped["stderr"], skipped["stderr"]


def _app(*elements: str) -> SimpleNamespace:
    paths = [SimpleNamespace(provider="test", path=e) for e in elements]
    loader = SimpleNamespace(get_search_path=lambda: SimpleNamespace(get_path=lambda: paths))
    return SimpleNamespace(config_loader=loader)


@pytest.fixture
def folders(tmp_path: Path) -> SimpleNamespace:
    plain = tmp_path / "plain"
    (plain / "strategy").mkdir(parents=True)
    (plain / "strategy" / "mine.yaml").write_text("fast: 5\nmodel: x\nx_mode: 1\n")
    (plain / "strategy" / "notes.txt").write_text("mode: MULTIRUN\n")  # not a config
    moded = tmp_path / "moded"
    (moded / "experiment").mkdir(parents=True)
    (moded / "experiment" / "deep.yml").write_text('hydra: {"mode": MULTIRUN}\n')
    return SimpleNamespace(plain=plain, moded=moded)


def test_what_could_set_the_mode(folders: SimpleNamespace) -> None:
    safe = ("pkg://hydra.conf", "structured://", f"file://{folders.plain}", str(folders.plain))
    assert not _run._may_set_mode(_app(*safe), ["strategy.fast=5,10", "hydra.job.chdir=true"])
    assert not _run._may_set_mode(_app(*safe, f"file://{folders.plain}/absent"), [])
    # a folder of configs where one mentions a mode key, named in the search path or by
    # hydra.searchpath in any form
    assert _run._may_set_mode(_app(*safe, f"file://{folders.moded}"), [])
    assert _run._may_set_mode(_app(*safe), [f"hydra.searchpath=[file://{folders.moded}]"])
    assert _run._may_set_mode(_app(*safe), [f"+hydra.searchpath=[{folders.moded}]"])
    assert not _run._may_set_mode(_app(*safe), [f"hydra.searchpath=[file://{folders.plain}]"])
    # an override of the mode, another package's configs, a config that adds folders
    for override in ("hydra.mode=RUN", "++hydra.mode=MULTIRUN", "~hydra.mode"):
        assert _run._may_set_mode(_app(*safe), [override])
    assert _run._may_set_mode(_app(*safe, "pkg://someone.conf"), [])
    (folders.plain / "config.yaml").write_text("hydra:\n  searchpath: [pkg://someone.conf]\n")
    assert _run._may_set_mode(_app(*safe), [f"hydra.searchpath=[file://{folders.plain}]"])
    # an override Hydra will refuse: its own get_mode runs (and Hydra reports it)
    assert _run._may_set_mode(_app(*safe), ["strategy.fast=[5,"])


def test_hydra_get_mode_is_restored_after_the_command() -> None:
    from hydra._internal.hydra import Hydra

    original = Hydra.get_mode
    with _run._mode_without_compose():
        assert Hydra.get_mode is not original
    assert Hydra.get_mode is original
    with pytest.raises(RuntimeError), _run._mode_without_compose():
        raise RuntimeError
    assert Hydra.get_mode is original
