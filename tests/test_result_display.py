"""Results in a notebook: one-line reprs, compact HTML, figures one call away.

Each result (a backtest, a grid search, a walk-forward, a Monte Carlo report) is made by
a real run on small synthetic data. The figures shown are checked against plain loops
over the result's own series (compounded returns, running peaks), not against the code
that drew them.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import pytest

from backtest import (
    MonteCarloConfig,
    MonteCarloSimulator,
    StrategyEvaluator,
    WalkForwardConfig,
    WalkForwardOptimizer,
    grid_search,
    simulate,
)
from backtest.data import synthetic_prices
from backtest.strategies import SmaCross


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    return synthetic_prices(900, 2, seed=11)


@pytest.fixture(scope="module")
def made(prices: pd.DataFrame) -> dict[str, Any]:
    """One result of each kind, from real runs."""
    bt = simulate(prices, SmaCross(fast=5, slow=30), fee_bps=5, benchmark=str(prices.columns[0]))
    evaluator = StrategyEvaluator(prices, SmaCross, fee_bps=5)
    space = {"fast": [3, 5, 10, 20], "slow": [30, 60, 90]}
    search = grid_search(space, evaluator, progress=False)
    search3 = grid_search(
        {**space, "long_short": [False, True]}, StrategyEvaluator(prices, SmaCross), progress=False
    )
    wf = WalkForwardOptimizer(WalkForwardConfig(train_bars=300, test_bars=150)).run(
        evaluator, {"fast": [3, 5, 10], "slow": [30, 60]}
    )
    mc = MonteCarloSimulator(
        MonteCarloConfig(method="stationary_bootstrap", n_paths=200, seed=3)
    ).run(bt)
    return {"backtest": bt, "search": search, "search3": search3, "walkforward": wf, "mc": mc}


def _loop_total_return(returns: pd.Series) -> float:
    growth = 1.0
    for r in returns:
        growth *= 1.0 + r
    return growth - 1.0


def _loop_max_drawdown(returns: pd.Series) -> float:
    growth, peak, worst = 1.0, 1.0, 0.0
    for r in returns:
        growth *= 1.0 + r
        peak = max(peak, growth)
        worst = max(worst, 1.0 - growth / peak)
    return worst


def _pct(text: str, label: str) -> float:
    found = re.search(rf"{label} (-?[\d,.]+)%", text)
    assert found, (label, text)
    return float(found.group(1).replace(",", "")) / 100.0


def _num(text: str, label: str) -> float:
    found = re.search(rf"{label} (-?[\d,.]+)", text)
    assert found, (label, text)
    return float(found.group(1).replace(",", ""))


# --- repr and HTML ------------------------------------------------------------------


def test_backtest_repr_is_one_line_with_the_headline_figures(made: dict[str, Any]) -> None:
    bt = made["backtest"]
    text = repr(bt)
    assert "\n" not in text and len(text) < 300
    assert text.startswith("<BacktestResult fast=5, slow=30")
    assert _num(text, "Sharpe") == pytest.approx(bt.metrics["sharpe_ratio"], abs=5e-4)
    assert _pct(text, "total return") == pytest.approx(_loop_total_return(bt.returns), abs=5e-5)
    assert _pct(text, "max drawdown") == pytest.approx(_loop_max_drawdown(bt.returns), abs=5e-5)
    assert f"{len(bt.trades)} trades" in text
    assert f"{len(bt.returns):,} bars" in text


def test_backtest_html_is_the_report_metrics_table_with_the_benchmark(
    made: dict[str, Any],
) -> None:
    bt = made["backtest"]
    page = bt._repr_html_()
    assert "dataframe" not in page and len(page) < 8000  # no DataFrame dumped
    rows = re.findall(r'<tr><td class="t">([a-z_]+)</td>(.*?)</tr>', page)
    assert [name for name, _ in rows] == list(bt.metrics)
    cells = dict(rows)
    growth = _loop_total_return(bt.returns)
    assert f">{growth:.2%}<" in cells["total_return"]  # percent, as in the report
    assert "<th>benchmark</th>" in page


def test_search_repr_and_html_name_the_best_set(made: dict[str, Any]) -> None:
    res = made["search"]
    text = repr(res)
    assert "\n" not in text
    assert f"best fast={res.best_params['fast']}, slow={res.best_params['slow']}" in text
    assert _num(text, "Sharpe") == pytest.approx(res.best_score, abs=5e-4)
    assert f"{len(res.trials)} trials (0 failed)" in text
    page = res._repr_html_()
    assert "dataframe" not in page and len(page) < 8000
    top = re.search(r'data-table="top_trials">.*?</table>', page)
    assert top is not None and top.group(0).count("<tr>") == 1 + 5
    best_row = top.group(0).split("<tbody>")[1].split("</tr>")[0]
    assert f">{res.best_trial}<" in best_row


def test_walkforward_repr_and_html_show_the_out_of_sample_figures(made: dict[str, Any]) -> None:
    wf = made["walkforward"]
    text = repr(wf)
    assert "\n" not in text
    assert f"rolling, {len(wf.folds)} folds" in text
    assert _num(text, "out-of-sample Sharpe") == pytest.approx(wf.metrics["sharpe_ratio"], abs=5e-4)
    assert _pct(text, "total return") == pytest.approx(_loop_total_return(wf.returns), abs=5e-5)
    assert f"{wf.overfitting.n_trials} trials" in text
    page = wf._repr_html_()
    assert "dataframe" not in page
    folds = re.search(r'data-table="folds">.*?</table>', page)
    assert folds is not None and folds.group(0).count("<tr>") == 1 + len(wf.folds)


def test_montecarlo_repr_and_html_show_loss_and_ruin(made: dict[str, Any]) -> None:
    mc = made["mc"]
    text = repr(mc)
    assert "\n" not in text
    assert f"{mc.n_paths} paths" in text
    losses = sum(1 for v in mc.paths["total_return"] if v < 0)
    assert _pct(text, r"P\(loss\)") == pytest.approx(losses / mc.n_paths, abs=5e-5)
    page = mc._repr_html_()
    assert "dataframe" not in page
    assert page.count('<tr><td class="t">') >= len(mc.summary()) + 4
