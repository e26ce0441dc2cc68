"""The rq launcher prepares a sweep's jobs without composing each one from scratch."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.types import HydraContext, RunMode
from omegaconf import OmegaConf

from hydra_plugins.backtest_rq_launcher._core import _value_sweep_config

CONF = str(Path(__file__).resolve().parent.parent / "conf")
TASK = ["+experiment=sma_cross", "data.n_bars=300", "tracking=none"]
BASE = [*TASK, "hydra/launcher=rq"]  # the sweeper hands the launcher the task overrides


def launcher_for(overrides: list[str]) -> tuple[Any, Any]:
    from hydra import initialize_config_dir

    GlobalHydra.instance().clear()
    initialize_config_dir(config_dir=CONF, version_base="1.3")
    loader = GlobalHydra.instance().config_loader()
    master = loader.load_configuration("config", overrides, run_mode=RunMode.MULTIRUN)
    str(master.hydra.sweep.dir)  # resolved first, as the launcher does (fills the cache)
    ctx = HydraContext(config_loader=loader, callbacks=None)  # type: ignore[arg-type]
    return SimpleNamespace(config=master, hydra_context=ctx), loader


@pytest.fixture(autouse=True)
def _clear() -> Any:
    yield
    GlobalHydra.instance().clear()


@pytest.mark.parametrize(
    ("sweep", "job"),
    [
        (["strategy.fast=5,10,20"], ["strategy.fast=10"]),
        (["strategy.fast=5,10", "engine.fee_bps=1,2.5"], ["strategy.fast=5", "engine.fee_bps=2.5"]),
        (["strategy.fast=range(2,40)", "strategy.long_short=true,false"],
         ["strategy.fast=7", "strategy.long_short=false"]),
    ],
    ids=["one-key", "int-and-float", "range-and-bool"],
)  # fmt: skip
def test_a_value_sweep_job_gets_exactly_the_config_hydra_composes(
    sweep: list[str], job: list[str]
) -> None:
    launcher, loader = launcher_for([*BASE, *sweep])
    fast = _value_sweep_config(launcher, [*TASK, *job])
    slow = loader.load_sweep_config(launcher.config, [*TASK, *job])
    assert fast is not None
    as_dict = OmegaConf.to_container
    assert as_dict(fast, resolve=False) == as_dict(slow, resolve=False)
    assert str(fast.hydra.sweep.dir) == str(slow.hydra.sweep.dir)  # one cache: one dir


@pytest.mark.parametrize(
    ("sweep", "job"),
    [
        (["strategy=sma_cross,momentum"], ["strategy=momentum"]),  # a group choice
        (["strategy.fast=5,10"], ["strategy.fast=5", "+extra=1"]),  # an added key
    ],
    ids=["group", "added-key"],
)
def test_anything_but_values_is_composed_by_hydra(sweep: list[str], job: list[str]) -> None:
    launcher, _ = launcher_for([*BASE, *sweep])
    assert _value_sweep_config(launcher, [*TASK, *job]) is None


def test_preparing_a_value_sweep_job_never_composes_a_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fast path is what makes queueing cheap: Hydra's composition (about a third of
    a second a job) is not run for any job of a value sweep. Asserted on the behaviour
    (composition is refused outright), not on a quiet machine's timings."""
    launcher, loader = launcher_for([*BASE, "strategy.fast=range(2,42)"])
    expected = {
        fast: OmegaConf.to_container(
            loader.load_sweep_config(launcher.config, [*TASK, f"strategy.fast={fast}"]),
            resolve=False,
        )
        for fast in (2, 7, 11)
    }

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a value sweep job was composed by Hydra")

    monkeypatch.setattr(type(loader), "load_sweep_config", refuse)
    monkeypatch.setattr(type(loader), "load_configuration", refuse)
    for fast, composed in expected.items():
        fast_cfg = _value_sweep_config(launcher, [*TASK, f"strategy.fast={fast}"])
        assert fast_cfg is not None
        assert OmegaConf.to_container(fast_cfg, resolve=False) == composed


def test_the_sweeps_own_overrides_respelled_by_the_basic_sweeper_take_the_fast_path() -> None:
    """``summary=false`` reaches the launcher as ``summary=False``: still only a value sweep."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    task = [*TASK, "summary=false", "figures=false", "engine.fee_bps=1", "strategy.fast=5,10"]
    launcher, loader = launcher_for([*task, "hydra/launcher=rq"])
    parsed = OverridesParser.create().parse_overrides(task)
    (batch,) = BasicSweeper.split_arguments(parsed, None)
    job = list(batch[1])
    assert "summary=False" in job  # what the sweeper hands the launcher
    fast = _value_sweep_config(launcher, job)
    slow = loader.load_sweep_config(launcher.config, job)
    assert fast is not None
    as_dict = OmegaConf.to_container
    assert as_dict(fast, resolve=False) == as_dict(slow, resolve=False)
