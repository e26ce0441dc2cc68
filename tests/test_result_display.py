"""Results in a notebook: one-line reprs, compact HTML, figures one call away.

Each result (a backtest, a grid search, a walk-forward, a Monte Carlo report) is made by
a real run on small synthetic data. The figures shown are checked against plain loops
over the result's own series (compounded returns, running peaks), not against the code
that drew them.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
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
from tests import configs


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


# --- plot() ---------------------------------------------------------------------------


def _traces(fig: Any) -> dict[str, Any]:
    return {t.name: t for t in fig.data}


def test_backtest_plot_draws_equity_marks_benchmark_and_drawdown(made: dict[str, Any]) -> None:
    bt = made["backtest"]
    fig = bt.plot()
    names = [t.name for t in fig.data]
    assert names[0] == "strategy" and names[-1] == "drawdown"
    assert {"benchmark", "entries", "exits"} <= set(names)
    assert fig.layout.xaxis.type == "date"
    by_date = {d.strftime("%Y-%m-%d"): v for d, v in bt.equity.items()}
    strategy = _traces(fig)["strategy"]
    assert strategy.x[-1] == bt.equity.index[-1].strftime("%Y-%m-%d")  # thinned, last kept
    for x, y in zip(strategy.x, strategy.y, strict=True):
        assert y == pytest.approx(by_date[x], rel=1e-5)
    entries = _traces(fig)["entries"]
    assert len(entries.x) == len(bt.trades)
    for x, y in zip(entries.x, entries.y, strict=True):  # each mark sits on the curve
        assert y == pytest.approx(by_date[x], rel=1e-5)
    drawdown = _traces(fig)["drawdown"]
    assert -min(drawdown.y) == pytest.approx(_loop_max_drawdown(bt.returns), rel=1e-5)
    bench = _traces(fig)["benchmark"]
    close = synthetic_prices(900, 2, seed=11).iloc[:, 0]
    assert bench.y[-1] / bench.y[0] == pytest.approx(close.iloc[-1] / close.iloc[0], rel=1e-4)


def test_search_heatmap_cell_of_the_best_set_is_the_best_score(made: dict[str, Any]) -> None:
    res = made["search"]
    fig = res.plot()
    (heat,) = fig.data
    assert heat.type == "heatmap"
    assert fig.layout.xaxis.title.text == "fast" and fig.layout.yaxis.title.text == "slow"
    z = np.asarray(heat.z, dtype=float)
    i = list(heat.y).index(res.best_params["slow"])
    j = list(heat.x).index(res.best_params["fast"])
    assert z[i, j] == pytest.approx(res.best_score, rel=1e-5)
    assert np.nanmax(z) == pytest.approx(res.best_score, rel=1e-5)
    swapped = res.plot(x="slow", y="fast").data[0]
    assert list(swapped.x) == sorted(set(res.trials["slow"]))


def test_search_beyond_two_parameters_parallel_and_best_over_the_rest(
    made: dict[str, Any],
) -> None:
    res = made["search3"]
    (lines,) = res.plot().data
    assert lines.type == "parcoords"
    labels = [d.label for d in lines.dimensions]
    assert labels == ["fast", "slow", "long_short", "sharpe_ratio"]
    assert len(lines.dimensions[0].values) == len(res.trials)
    heat = res.plot(x="fast", y="slow").data[0]
    for i, slow in enumerate(heat.y):
        for j, fast in enumerate(heat.x):
            best = -math.inf
            for row in res.trials.itertuples():  # plain loop: best over long_short
                if row.fast == fast and row.slow == slow:
                    best = max(best, row.sharpe_ratio)
            assert heat.z[i][j] == pytest.approx(best, rel=1e-5)


def test_walkforward_plot_draws_folds_and_the_stitched_curve_on_dates(
    made: dict[str, Any],
) -> None:
    wf = made["walkforward"]
    fig = wf.plot()
    traces = _traces(fig)
    assert fig.layout.xaxis.type == "date"
    equity = traces["stitched out-of-sample equity"]
    assert equity.x[0] == wf.equity.index[0].strftime("%Y-%m-%d")
    assert equity.y[-1] == pytest.approx(1.0 + _loop_total_return(wf.returns), rel=1e-5)
    for kind in ("train", "test"):
        bars = traces[kind]
        assert len(bars.y) == len(wf.folds)
        starts = [d.strftime("%Y-%m-%d") for d in wf.folds[f"{kind}_start"]]
        assert list(bars.base) == starts


def test_montecarlo_plot_draws_the_fan_on_dates_and_the_histograms(made: dict[str, Any]) -> None:
    mc, bt = made["mc"], made["backtest"]
    fig = mc.plot(dates=bt)
    assert fig.layout.xaxis.type == "date"
    observed = _traces(fig)["observed"]
    assert observed.x[-1] == bt.returns.index[-1].strftime("%Y-%m-%d")
    by_date = {d.strftime("%Y-%m-%d"): v for d, v in bt.equity.items()}
    assert observed.x[0] not in by_date and observed.y[0] == 1.0  # the start, before bar 0
    for x, y in zip(observed.x[1:], observed.y[1:], strict=True):  # step k: its bar's date
        assert y == pytest.approx(by_date[x], rel=1e-5)
    assert observed.y[-1] == pytest.approx(1.0 + _loop_total_return(bt.returns), rel=1e-5)
    hists = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in hists] == ["sharpe_ratio", "max_drawdown", "cagr"]
    for trace, shape in zip(hists, fig.layout.shapes, strict=True):
        assert sum(trace.y) == int(np.isfinite(mc.paths[trace.name]).sum())
        assert shape.x0 == pytest.approx(mc.observed[trace.name])
    assert mc.plot().layout.xaxis.title.text == "bars"  # no dates given: steps


def test_plotly_is_imported_only_by_plot() -> None:
    import subprocess
    import sys

    code = (
        "import sys, backtest\n"
        "from backtest.data import synthetic_prices\n"
        "from backtest.strategies import SmaCross\n"
        "assert 'plotly' not in sys.modules\n"
        "r = backtest.simulate(synthetic_prices(300, 1, seed=1), SmaCross(fast=5, slow=20))\n"
        "repr(r); r._repr_html_()\n"
        "assert 'plotly' not in sys.modules, 'simulate imported plotly'\n"
        "r.plot()\n"
        "assert 'plotly' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


# --- report() and load_result --------------------------------------------------------


@pytest.mark.parametrize("kind", ["backtest", "search", "walkforward", "mc"])
def test_report_writes_a_run_that_load_result_plots_the_same(
    made: dict[str, Any], kind: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backtest import load_result

    monkeypatch.chdir(tmp_path)
    live = made[kind]
    page = live.report()
    assert page.name == "report.html" and page.is_relative_to(tmp_path / "outputs" / "notebook")
    text = page.read_text()
    section = {"backtest": "equity", "search": "search", "walkforward": "walkforward"}
    assert f'data-section="{section.get(kind, "montecarlo")}"' in text
    stored = load_result(page.parent)
    assert stored.plot().to_dict() == live.plot().to_dict()
    assert stored.record["task"] == ("montecarlo" if kind == "mc" else kind)
    assert "\n" not in repr(stored) and "Sharpe" in repr(stored)
    other = tmp_path / "elsewhere" / "page.html"
    assert live.report(other) == other and other.read_text().count("data-figure=") >= 1


def test_load_result_of_a_cli_run_plots_what_the_live_result_plots(tmp_path: Any) -> None:
    from backtest import ConfigError, load_result, run_backtest
    from backtest.results import StoredResult

    run_dir = tmp_path / "run"
    cfg = configs.compose(f"output_dir={run_dir}", "tracking=none", "figures=false",
                          "summary=false", "data.n_bars=400", "montecarlo=stationary_bootstrap",
                          "montecarlo.n_paths=100")  # fmt: skip
    live = run_backtest(cfg)
    stored = load_result(run_dir)
    assert isinstance(stored, StoredResult) and stored.kinds == ("backtest", "montecarlo")
    assert stored.plot("backtest").to_dict() == live.plot().to_dict()
    fan = stored.plot()  # the run's Monte Carlo, its fan on the run's dates
    assert fan.layout.xaxis.type == "date"
    observed = next(t for t in fan.data if t.name == "observed")
    assert observed.x[-1] == live.returns.index[-1].strftime("%Y-%m-%d")
    with pytest.raises(ConfigError, match=r"no 'search' figure.*backtest, montecarlo"):
        stored.plot("search")
    before = (run_dir / "report.html").read_bytes()
    assert live.report() == run_dir / "report.html"  # a run's result rebuilds its own page
    assert len((run_dir / "report.html").read_bytes()) == len(before)


def test_montecarlo_report_with_dates_draws_the_observed_equity_and_a_dated_fan(
    made: dict[str, Any], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backtest import load_result

    monkeypatch.chdir(tmp_path)
    mc, bt = made["mc"], made["backtest"]
    stored = load_result(mc.report(dates=bt).parent)
    assert stored.kinds == ("backtest", "montecarlo")
    assert stored.plot().to_dict() == mc.plot(dates=bt).to_dict()
    equity = stored.table("equity")["equity"]
    growth = 1.0
    for day, r in bt.returns.items():  # plain loop: the observed equity is the backtest's
        growth *= 1.0 + r
        assert equity[day] == pytest.approx(growth, rel=1e-9)
