"""Statistics read right: one unit convention for every figure, a p-value only where it tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from backtest.report._page import PERCENT_KEYS
from backtest.results._summary import format_value, is_percent


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("total_return", 0.1234, "12.34%"),
        ("alpha", 0.031, "3.10%"),
        ("tracking_error", 0.052, "5.20%"),
        ("cost_fees", 0.0042, "0.42%"),
        ("benchmark_cagr", 0.07, "7.00%"),
        ("beta", 0.8, "0.800"),
        ("information_ratio", 0.5, "0.500"),
    ],
)
def test_returns_alpha_tracking_error_and_costs_print_as_percentages(
    name: str, value: float, shown: str
) -> None:
    assert format_value(name, value) == shown
    assert (name in PERCENT_KEYS or is_percent(name)) == shown.endswith("%")  # the report too


def _mc(tmp_path: Path, method: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "backtest", "+experiment=sma_cross", f"+montecarlo={method}",
         "montecarlo.n_paths=60", "tracking=none", "figures=false", "report=false",
         "data.n_bars=400", "strategy.slow=30"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("mc sharpe_ratio")]
    return line


def test_a_bootstrap_of_the_own_returns_prints_a_percentile_not_a_p_value(tmp_path: Path) -> None:
    line = _mc(tmp_path, "stationary_bootstrap")
    assert "p-value" not in line and "percentile (a spread, not a test)" in line


def test_random_entries_test_a_null_and_print_its_p_value(tmp_path: Path) -> None:
    line = _mc(tmp_path, "random_entries")
    assert "observed p-value" in line and "null: random entries" in line
