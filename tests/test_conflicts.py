"""Settings that contradict each other are refused, naming both keys (check_conflicts)."""

from __future__ import annotations

import pytest

from backtest.config._conflicts import check_conflicts
from backtest.errors import ConfigError
from backtest.tasks import prepare
from backtest.tasks._jobs import BacktestJob

WF = {"splitter": "rolling", "train_bars": None, "test_bars": None, "step_bars": None}


@pytest.mark.parametrize(
    ("config", "keys"),
    [
        (
            {"walkforward": {**WF, "train_bars": 504, "train_period": "3Y"}},
            ("train_bars", "train_period"),
        ),
        (
            {"walkforward": {**WF, "test_bars": 252, "test_period": "1Y"}},
            ("test_bars", "test_period"),
        ),
        (
            {"walkforward": {**WF, "step_bars": 21, "step_period": "1M"}},
            ("step_bars", "step_period"),
        ),
        (
            {"walkforward": {**WF, "splitter": "cpcv", "train_bars": 504}},
            ("train_bars", "splitter"),
        ),
        (
            {"montecarlo": {"method": "iid_bootstrap", "jitter": {"fast": 0.2}}},
            ("jitter", "method"),
        ),
        ({"data": {"source": "synthetic", "path": "prices.csv"}}, ("data.path", "data.source")),
        (
            {"search": {"method": "none", "space": {"fast": [5, 10]}}},
            ("search.space", "search.method"),
        ),
    ],
    ids=["train", "test", "step", "cpcv-bars", "jitter", "path-synthetic", "space-no-method"],
)
def test_conflicting_pairs_name_both_keys(config: dict, keys: tuple[str, str]) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as info:
        check_conflicts(config)
    assert all(k in str(info.value) for k in keys)
    assert all(k in str(info.value.key) for k in keys)


@pytest.mark.parametrize(
    "config",
    [
        {"walkforward": {**WF, "train_bars": 504, "test_bars": 126}},
        {"walkforward": {**WF, "train_period": "3Y", "test_period": "1Y"}},
        {"walkforward": {**WF, "splitter": "cpcv"}},
        {"walkforward": None, "montecarlo": None},
        {"montecarlo": {"method": "parameter_jitter", "jitter": {"fast": 0.2}}},
        {"data": {"source": "csv", "path": "prices.csv"}},
        {"search": {"method": "grid", "space": {"fast": [5, 10]}}},
        {"search": {"method": "none", "space": {"fast": [5]}}, "walkforward": {**WF}},
    ],
    ids=["bars", "periods", "cpcv", "none", "jitter", "csv", "grid", "walkforward-space"],
)
def test_consistent_settings_pass(config: dict) -> None:  # type: ignore[type-arg]
    check_conflicts(config)


def test_the_composed_command_of_the_issue_is_refused(compose) -> None:  # type: ignore[no-untyped-def]
    """wf_momentum sets calendar periods; adding bars used to keep the periods silently."""
    cfg = compose("+experiment=wf_momentum", "walkforward.train_bars=504", "tracking=none")
    with pytest.raises(
        ConfigError, match=r"walkforward.train_bars=504 and walkforward.train_period=3Y"
    ):
        prepare(BacktestJob.from_config(cfg))
    anchored = compose(
        "+experiment=wf_momentum",
        "walkforward=anchored",
        "walkforward.train_bars=504",
        "tracking=none",
    )
    assert BacktestJob.from_config(anchored).config["walkforward"]["train_period"] is None
    check_conflicts(BacktestJob.from_config(anchored).config)
