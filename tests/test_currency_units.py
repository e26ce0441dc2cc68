"""Units as a PM reads them (issue 25 item 5): with ``initial_capital``, the book in currency.

Equity, drawdown and the report's equity chart are in currency; the metrics in
``result.json`` stay fractions beside them; the summary prints returns, alpha, tracking
error and costs as percentages and the capital, final equity and drawdown in currency.
Every figure is checked against a plain loop written here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest.data import synthetic_prices
from backtest.engine import simulate
from backtest.report._performance import equity_figure, equity_frame
from backtest.results._summary import capital_section, currency_rows
from backtest.strategies import SmaCross
from tests.cli_run import run_cli

ROOT = Path(__file__).resolve().parent.parent
CAPITAL = 250_000.0


def _loop_drawdowns(value: np.ndarray, start: float) -> tuple[np.ndarray, float, float]:
    """Per bar: value less the highest value so far (the start counts); the worst fall."""
    peak, worst, worst_share = start, 0.0, 0.0
    out = np.empty(len(value))
    for t, v in enumerate(value):
        peak = max(peak, v)
        out[t] = v - peak
        if peak - v > worst:
            worst, worst_share = peak - v, (peak - v) / peak
    return out, worst, worst_share


_cli = run_cli


def test_a_run_with_initial_capital_is_in_currency_beside_its_fractions(tmp_path: Path) -> None:
    proc = _cli(
        tmp_path, "+experiment=sma_cross", "data.n_bars=400", "strategy.slow=50",
        "engine.fee_bps=5", f"engine.initial_capital={CAPITAL:g}", "engine.benchmark=equal_weight",
        "output_dir=run",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    record = json.loads((run / "result.json").read_text())
    equity = pd.read_parquet(run / "equity.parquet")
    # the fractions stay: growth of 1 and the metrics
    growth = (1.0 + equity["returns"]).cumprod().to_numpy()
    np.testing.assert_allclose(equity["equity"].to_numpy(), growth, rtol=1e-12)
    assert record["metrics"]["total_return"] == pytest.approx(growth[-1] - 1.0, rel=1e-9)
    # beside them, in currency
    value = CAPITAL * growth
    np.testing.assert_allclose(equity["equity_value"].to_numpy(), value, rtol=1e-12)
    drawdowns, worst, share = _loop_drawdowns(value, CAPITAL)
    np.testing.assert_allclose(equity["drawdown_value"].to_numpy(), drawdowns, atol=1e-6)
    capital = record["capital"]
    assert capital["initial_capital"] == CAPITAL
    assert capital["final_equity"] == pytest.approx(value[-1], rel=1e-12)
    assert capital["pnl"] == pytest.approx(value[-1] - CAPITAL, rel=1e-9)
    assert capital["max_drawdown_value"] == pytest.approx(worst, rel=1e-9)
    assert capital["max_drawdown_value_of_peak"] == pytest.approx(share, rel=1e-9)
    assert worst > 0  # the data has a drawdown: the check above is not vacuous
    # the summary: currency rows, and every return-like figure as a percentage
    lines = proc.stdout.splitlines()

    def row(name: str) -> str:
        (line,) = [ln for ln in lines if ln.startswith(name + " ")]
        return line[len(name) :].strip()

    assert row("initial capital") == f"{CAPITAL:,.2f}"
    assert row("final equity") == f"{value[-1]:,.2f} ({value[-1] / CAPITAL - 1:+.2%})"
    assert row("max drawdown (currency)").startswith(f"{worst:,.2f} ({share:.2%}")
    for key in ("total_return", "cagr", "max_drawdown", "alpha", "tracking_error", "cost_fees"):
        assert row(key).split()[0] == f"{record['metrics'][key]:.2%}", key
    # the report's equity chart: its axis and lines in currency
    page = (run / "report.html").read_text()
    assert "equity (currency; initial capital 250,000)" in page
    assert "drawdown (currency)" in page
    assert f"final equity {value[-1]:,.2f}" in page  # the headline's note, in currency


def test_without_initial_capital_results_stay_fractions(tmp_path: Path) -> None:
    proc = _cli(
        tmp_path, "+experiment=sma_cross", "data.n_bars=300", "strategy.slow=50",
        "report=false", "output_dir=run",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert "capital" not in record
    columns = set(pd.read_parquet(tmp_path / "run" / "equity.parquet").columns)
    assert columns == {"returns", "equity"}
    assert "initial capital" not in proc.stdout


def test_the_equity_figure_draws_currency_and_the_benchmark_from_the_same_capital() -> None:
    close = synthetic_prices(300, 3, seed=8)
    result = simulate(
        close, SmaCross(10, 40), initial_capital=CAPITAL, benchmark="SYN1", fee_bps=3.0
    )
    assert result.initial_capital == CAPITAL
    frame = equity_frame(result.returns, result.equity, result.benchmark, capital=CAPITAL)
    spec = equity_figure(frame, result.trades)
    traces = {t["name"]: t for t in spec["data"]}
    value = CAPITAL * (1.0 + result.returns).cumprod().to_numpy()
    np.testing.assert_allclose(traces["strategy"]["y"], value, rtol=1e-5)  # 6 digits drawn
    bench = close["SYN1"].to_numpy() / close["SYN1"].iloc[0] * CAPITAL
    np.testing.assert_allclose(traces["benchmark"]["y"], bench, rtol=1e-5)
    drawdowns, _, _ = _loop_drawdowns(value, CAPITAL)
    np.testing.assert_allclose(traces["drawdown"]["y"], drawdowns, rtol=1e-5, atol=1e-6)
    shares = np.array([np.nan if v is None else v for v in traces["drawdown"]["customdata"]])
    peaks = value - drawdowns
    np.testing.assert_allclose(shares, drawdowns / peaks, rtol=1e-5, atol=1e-12)
    layout = spec["layout"]
    assert layout["yaxis"]["title"]["text"].startswith("equity (currency")
    assert layout["yaxis2"]["tickformat"] == ",.0f"
    # the same figure from the Python API (plotly): currency on its axis
    fig = result.plot()
    assert fig.layout.yaxis.title.text.startswith("equity (currency")
    # without a capital: growth of 1 and a percentage drawdown, as before
    plain = equity_figure(equity_frame(result.returns, result.equity, result.benchmark))
    assert plain["layout"]["yaxis2"]["tickformat"] == ".0%"
    assert max(plain["data"][0]["y"]) < 10


def test_capital_section_and_its_summary_rows_against_a_plain_loop() -> None:
    rng = np.random.default_rng(3)
    growth = np.cumprod(1.0 + rng.normal(0.0003, 0.01, 500))
    section = capital_section(growth, 1e6)
    _, worst, share = _loop_drawdowns(1e6 * growth, 1e6)
    assert section["max_drawdown_value"] == pytest.approx(worst, rel=1e-12)
    assert section["max_drawdown_value_of_peak"] == pytest.approx(share, rel=1e-12)
    assert section["final_equity"] == pytest.approx(1e6 * growth[-1], rel=1e-12)
    assert capital_section(growth, None) == {}
    rows = dict(currency_rows(section))
    assert rows["initial capital"] == "1,000,000.00"
    assert rows["final equity"].endswith(f"({growth[-1] - 1:+.2%})")
    shown = float(rows["final equity"].split()[0].replace(",", ""))
    assert math.isclose(shown, 1e6 * growth[-1], abs_tol=0.005)  # to the cent


@pytest.mark.parametrize("rebalance", ["bar", "M"], ids=["sleeves", "units"])
def test_costs_are_fractions_of_the_initial_capital_whatever_its_size(rebalance: str) -> None:
    """The same book with and without a capital: equal cost fractions, the table in currency."""
    from backtest.engine import simulate_batch

    close = synthetic_prices(300, 3, seed=6)
    opts = {"fee_bps": 4.0, "slippage_bps": 1.0, "rebalance": rebalance}
    plain = simulate(close, SmaCross(10, 40), **opts)
    rich = simulate(close, SmaCross(10, 40), initial_capital=CAPITAL, **opts)
    assert plain.costs is not None and rich.costs is not None
    for name in ("fees", "slippage"):
        assert plain.metrics[f"cost_{name}"] > 0
        assert rich.metrics[f"cost_{name}"] == pytest.approx(plain.metrics[f"cost_{name}"], 1e-9)
        np.testing.assert_allclose(rich.costs[name], CAPITAL * plain.costs[name], rtol=1e-9)
    batch = simulate_batch(
        close, SmaCross, {"fast": [10], "slow": [40]}, initial_capital=CAPITAL, **opts
    )
    assert batch.metrics["cost_fees"].iloc[0] == pytest.approx(plain.metrics["cost_fees"], 1e-9)
