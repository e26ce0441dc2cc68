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


def test_every_overfitting_statistic_a_run_records_has_its_one_line_explanation(
    tmp_path: Path,
) -> None:
    """The report explains each statistic it shows; a new one without a sentence fails here."""
    import json

    from backtest.report._search import OVERFITTING_MEANINGS

    proc = subprocess.run(
        [sys.executable, "-m", "backtest", "+experiment=xs_momentum", "tracking=none",
         "figures=false", "report=false", "data.n_bars=1300", "~montecarlo", "output_dir=wf"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    of = json.loads((tmp_path / "wf" / "result.json").read_text())["overfitting"]
    shown = [k for k, v in of.items() if isinstance(v, int | float) or v is None]
    assert "spa_pvalue" in shown or "reality_check_pvalue" in shown
    assert [k for k in shown if not OVERFITTING_MEANINGS.get(k)] == []
