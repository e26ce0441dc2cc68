"""The public surface: every name exported, documented, and `import backtest` stays light."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import backtest

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = [
    "BacktestJob",
    "run_backtest",
    "BacktestJobQueue",
    "BacktestWorker",
    "MonteCarloSimulator",
    "MonteCarloConfig",
    "WalkForwardOptimizer",
    "grid_search",
    "random_search",
    "SearchResult",
    "JobNotFound",
    "ResultPathMissing",
    "StrategyEvaluator",
]


def test_required_names_are_exported() -> None:
    missing = [n for n in REQUIRED if n not in backtest.__all__]
    assert not missing


@pytest.mark.parametrize("name", backtest.__all__, ids=backtest.__all__)
def test_every_public_name_resolves_and_is_documented(name: str) -> None:
    value = getattr(backtest, name)
    if name in ("BacktestJobQueue", "BacktestWorker") and value is None:
        pytest.skip("rq is not installed")
    if name == "__version__":
        assert isinstance(value, str)
        return
    assert inspect.getdoc(value), f"{name} has no docstring"


def _run(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_import_backtest_is_light() -> None:
    out = _run("""
        import sys, backtest
        heavy = ["mlflow", "rq", "redis", "optuna", "matplotlib", "hydra", "sqlalchemy"]
        print(",".join(m for m in heavy if m in sys.modules))
    """)
    assert out == ""
