"""Every switch switches: ``walkforward=null``, ``montecarlo=null``, ``search=none`` and their
``~`` forms, on every shipped experiment, through the same composition as the CLI."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest

from backtest.app import compose
from backtest.errors import ConfigError
from backtest.tasks import prepare
from backtest.tasks._jobs import BacktestJob

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
SMALL = ["tracking=none", "data.n_bars=1400", "figures=false", "report=false"]
SWITCHES = {
    "walkforward=null": "walkforward",
    "~walkforward": "walkforward",
    "montecarlo=null": "montecarlo",
    "~montecarlo": "montecarlo",
    "search=none": "search",
    "~search": "search",
}


@functools.cache
def _walks_forward(experiment: str) -> bool:
    """Whether the experiment, as shipped, has a walk-forward (composed once per process:
    both search switches of an experiment ask, and a composition is most of their cost)."""
    return bool(compose(f"+experiment={experiment}", *SMALL).get("walkforward"))


@pytest.mark.parametrize("switch", list(SWITCHES))
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_switch_switches_on_every_experiment(experiment: str, switch: str) -> None:
    overrides = [f"+experiment={experiment}", *SMALL, switch]
    group = SWITCHES[switch]
    if group == "search" and _walks_forward(experiment):
        # a walk-forward re-optimises with its search on every fold: off alone is refused
        with pytest.raises(ConfigError, match="~walkforward"):
            compose(*overrides)
        overrides.append("~walkforward")
    cfg = compose(*overrides)
    if group == "search":
        assert getattr(cfg.search.method, "value", cfg.search.method) == "none"
    else:
        assert cfg.get(group) is None
    job = BacktestJob.from_config(cfg)
    assert job.task not in (group, "search" if group == "search" else "")
    if group == "walkforward" or group == "search":
        assert job.task != "walkforward"
    prepare(job)  # and the rest of the experiment still prepares (validates) as before


def test_a_switched_off_walkforward_runs_no_folds_from_the_command_line(tmp_path: Path) -> None:
    """``xs_momentum`` also sets walkforward values: they no longer bring it back."""
    proc = subprocess.run(
        [sys.executable, "-m", "backtest", "+experiment=xs_momentum", *SMALL, "~montecarlo",
         "walkforward=null"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "task=search" in proc.stderr + proc.stdout
    assert "walk-forward" not in proc.stderr


def test_windows_that_do_not_fit_fail_before_a_run_folder(tmp_path: Path) -> None:
    for args, words in [
        (["+experiment=wf_momentum", "data.n_bars=800"], "too short for one fold"),
        (["+experiment=mc_sma_cross", "montecarlo.n_paths=0"], "montecarlo.n_paths"),
        (["+experiment=sma_cross", "data.n_bars=40", "strategy.slow=60", "strategy.fast=5"],
         "nothing would trade"),
    ]:  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-m", "backtest", *args, "tracking=none"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert words in proc.stderr and "Traceback" not in proc.stderr
        assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    "space",
    [
        ["+search.space={fast: [5, 10], engine.stop_loss: [0.02, 0.05]}"],
        ["+search.space.fast=[5,10]", "+search.space.engine.stop_loss=[0.02,0.05]"],
    ],
    ids=["one-liner", "nested-keys"],
)
def test_engine_keys_are_searched_from_the_command_line_in_either_spelling(
    space: list[str],
) -> None:
    cfg = compose("+experiment=sma_cross", "search=grid", *SMALL, *space)
    assert dict(cfg.search.space) == {"fast": [5, 10], "engine.stop_loss": [0.02, 0.05]}
    prepare(BacktestJob.from_config(cfg))  # a valid search: the keys are known


def test_setting_a_key_of_the_empty_space_says_to_add_it(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "backtest", "+experiment=sma_cross", "search=grid",
         "search.space={fast: [5, 10]}", "tracking=none"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "'+search.space={fast: ...}'" in proc.stderr and "Traceback" not in proc.stderr


def test_a_searched_engine_key_is_a_headline_parameter(tmp_path: Path) -> None:
    import json

    proc = subprocess.run(
        [sys.executable, "-m", "backtest", "+experiment=sma_cross", "search=grid",
         "+search.space={fast: [5, 20], engine.stop_loss: [0.02, 0.1]}", *SMALL,
         "output_dir=run"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    chosen = record["search"]["best_params"]["engine.stop_loss"]
    assert record["params"]["engine.stop_loss"] == chosen
    assert f"engine.stop_loss={chosen}" in proc.stdout  # the printed headline
