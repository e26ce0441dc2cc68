"""Size bounds: a named ConfigError with the memory estimate, before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backtest.errors import ConfigError
from backtest.tasks import execute_job
from backtest.tasks._bounds import human, machine_memory
from backtest.tasks._jobs import BacktestJob

HUGE = 10**11


@pytest.mark.parametrize(
    ("overrides", "edit", "key"),
    [
        (["data.n_bars=" + str(HUGE)], None, "data.n_bars"),
        (
            ["montecarlo=stationary_bootstrap", f"montecarlo.n_paths={HUGE}"],
            None,
            "montecarlo.n_paths",
        ),
        (
            ["search=grid"],
            {"fast": {"low": 1, "high": 10**6}, "slow": {"low": 1, "high": 10**6}},
            "search.space",
        ),
    ],
    ids=["n_bars", "n_paths", "grid"],
)
def test_sizes_beyond_memory_are_refused_by_name_before_the_run(
    compose: Any, tmp_path: Path, overrides: list[str], edit: Any, key: str
) -> None:
    run_dir = tmp_path / "run"
    cfg = compose(
        "+experiment=sma_cross",
        "data.n_bars=300",
        "tracking=none",
        f"output_dir={run_dir}",
        *overrides,
    )
    job = BacktestJob.from_config(cfg)
    if edit is not None:
        job.config["search"]["space"] = edit
    with pytest.raises(ConfigError, match=rf"^{key}=[\d,]+ needs about [\d.]+ [KMGTP]iB") as info:
        execute_job(job)
    assert info.value.key == key
    assert f"this machine has {human(machine_memory())}" in str(info.value)
    assert not run_dir.exists()


@pytest.mark.slow
def test_sizes_within_memory_run(compose: Any, tmp_path: Path) -> None:
    cfg = compose(
        "+experiment=sma_cross",
        "data.n_bars=300",
        "tracking=none",
        f"output_dir={tmp_path}/r",
        "montecarlo=stationary_bootstrap",
        "montecarlo.n_paths=50",
    )
    assert execute_job(BacktestJob.from_config(cfg)).metrics


def test_synthetic_bars_past_the_last_representable_date_are_refused(
    compose: Any, tmp_path: Path
) -> None:
    cfg = compose("+experiment=sma_cross", "data.n_bars=800000", f"output_dir={tmp_path}/r")
    with pytest.raises(ConfigError, match=r"data.n_bars=800,000 business days .* at most [\d,]+"):
        execute_job(BacktestJob.from_config(cfg))
