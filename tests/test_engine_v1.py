"""Same results where nothing changed: today's metrics of every built-in experiment.

``tests/fixtures/engine_v1_metrics.json`` was written by ``scripts/make_engine_fixture.py``
from the engine as it was before engine v2 (the per-asset sleeve formula, rebalanced
every bar, proportional costs only). With the default engine options the current engine
must reproduce every metric of every experiment and strategy, single and batched.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = json.loads((ROOT / "tests" / "fixtures" / "engine_v1_metrics.json").read_text())


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "make_engine_fixture", ROOT / "scripts" / "make_engine_fixture.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _same(actual: dict, expected: dict) -> None:  # type: ignore[type-arg]
    assert set(expected) <= set(actual), sorted(set(expected) - set(actual))
    for name, value in expected.items():
        if value is None:
            assert actual[name] is None, name
        else:
            assert actual[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_fixture_covers_every_experiment() -> None:
    experiments = {p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")}
    stored = {
        k.split("/")[0].removeprefix("experiment=") for k in FIXTURE if k.startswith("experiment=")
    }
    # experiments added after engine v1 (new options) are not in the fixture
    assert {
        "sma_cross",
        "sma_grid",
        "sma_tpe",
        "wf_momentum",
        "momentum_random",
        "mc_sma_cross",
    } <= stored
    assert stored <= experiments


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(FIXTURE), ids=sorted(FIXTURE))
def test_defaults_reproduce_engine_v1_metrics(case: str) -> None:
    stored = FIXTURE[case]
    now = _script().compute(stored["overrides"], stored["data"])
    _same(now["metrics"], stored["metrics"])
    assert now["n_trades_table"] == stored["n_trades_table"]
    assert len(now["batch_metrics"]) == len(stored["batch_metrics"])
    for actual, expected in zip(now["batch_metrics"], stored["batch_metrics"], strict=True):
        _same(actual, expected)
