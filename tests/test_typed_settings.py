"""``typed_settings`` keeps the last config's settings: a run types its config once.

The reference is the merge itself (``backtest.tasks._typed_settings``, what
``typed_settings`` did on every call before).
"""

from __future__ import annotations

import copy

import pytest
from omegaconf import OmegaConf

import backtest.tasks as tasks
from backtest.app import compose
from backtest.errors import ConfigError
from backtest.tasks._jobs import plain_config


@pytest.fixture
def merges(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The configs merged into the schemas from here on (none kept from before)."""
    seen: list[object] = []
    merge = tasks._typed_settings

    def counting(config):  # type: ignore[no-untyped-def]
        seen.append(config)
        return merge(config)

    monkeypatch.setattr(tasks, "_typed_settings", counting)
    monkeypatch.setattr(tasks, "_last_settings", None)
    return seen


@pytest.mark.parametrize("experiment", ["sma_grid", "wf_momentum", "xs_universe"])
def test_a_run_types_its_config_once_and_gets_what_the_merge_gives(
    experiment: str, merges: list[object]
) -> None:
    cfg = compose(f"+experiment={experiment}", "tracking=none")
    job_config = plain_config(cfg)  # check_space_keys(cfg), then prepare(), type it
    first = tasks.typed_settings(plain_config(cfg))
    second = tasks.typed_settings(job_config)
    assert len(merges) == 1
    assert first == second == tasks._typed_settings(job_config)
    # each call its own copy: prepare() sets engine.periods_per_year on its settings
    assert second is not first and second.engine is not first.engine
    second.engine.periods_per_year = 1.5
    third = tasks.typed_settings(job_config)
    assert third.engine.periods_per_year == first.engine.periods_per_year != 1.5
    assert len(merges) == 1 + 1
    # a DictConfig is typed as before: its strategy stays the schema's dataclass
    assert tasks.typed_settings(cfg) == tasks._typed_settings(cfg) != first
    assert len(merges) == 2 + 2


def test_another_config_is_typed_again(merges: list[object]) -> None:
    config = plain_config(compose("tracking=none"))
    tasks.typed_settings(config)
    for fee in (1, 1.0, True):  # equal in Python, not to the schema's Any field
        other = copy.deepcopy(config)
        other["engine"]["fee_bps"] = fee
        got = tasks.typed_settings(other).engine.fee_bps
        assert type(got) is type(fee) and got == tasks._typed_settings(other).engine.fee_bps
    # masked secrets, as in the job record, are another config
    uri = {**config["tracking"], "uri": "http://u:secret@host:5000"}
    secret = {**config, "tracking": uri}
    masked = plain_config(secret)
    assert masked != secret
    got = tasks.typed_settings(secret), tasks.typed_settings(masked)
    assert got == (tasks._typed_settings(secret), tasks._typed_settings(masked))
    assert got[0] != got[1]
    assert len(merges) == 1 + 3 * 2 + 2 * 2  # each once, plus the references


def test_an_interpolation_is_typed_each_time(merges: list[object]) -> None:
    config = {**plain_config(compose("tracking=none")), "name": "${seed}"}
    assert tasks.typed_settings(config).name == "42"
    tasks.typed_settings(config)
    assert len(merges) == 2


@pytest.mark.parametrize(
    "change",
    [{"seed": "many"}, {"nonsense": 1}, {"engine": {"fee_bpz": 1}}, {"seed": None}],
    ids=["type", "unknown", "nested", "none"],
)
def test_errors_are_those_of_the_merge(change: dict[str, object], merges: list[object]) -> None:
    base = plain_config(compose("tracking=none"))
    bad = {**base, **change}
    with pytest.raises(ConfigError) as expected:
        tasks._typed_settings(bad)
    for config in (bad, OmegaConf.create(bad), bad):  # the second `bad`: nothing was kept
        with pytest.raises(ConfigError) as got:
            tasks.typed_settings(config)
        assert str(got.value) == str(expected.value)
        assert got.value.key == expected.value.key
