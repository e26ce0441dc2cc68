"""Figures: every one has a title, labelled axes, and draws the numbers it claims to."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from backtest.engine import simulate
from backtest.metrics import max_drawdown
from backtest.report import _png as plots
from backtest.strategies import SmaCross


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every Figure saved during the test (they are still written to disk)."""
    figures: list[Any] = []
    real = plots.save_figure

    def keep(fig: Any, path: str | Path) -> Path:
        figures.append(fig)
        return real(fig, path)

    monkeypatch.setattr(plots, "save_figure", keep)
    return figures


def assert_readable(fig: Any, path: Path) -> None:
    """A title, and a label on both axes of every plotting area; a valid PNG without leftovers."""
    title = fig._suptitle.get_text() if fig._suptitle is not None else ""
    main_axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert title or all(ax.get_title() for ax in main_axes)
    for ax in main_axes:
        assert ax.get_ylabel(), ax
        assert ax.get_xlabel() or ax.get_shared_x_axes().get_siblings(ax) != [ax], ax
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 600
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(".")) == []


def prices(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    index = pd.bdate_range("2020-01-01", periods=n)
    return pd.DataFrame(
        100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n, 2)), axis=0)),
        index=index,
        columns=["A", "B"],
    )


def test_equity_figure_draws_equity_and_its_drawdown(tmp_path: Path, drawn: list[Any]) -> None:
    result = simulate(prices(), SmaCross(fast=5, slow=20), fee_bps=5)
    path = plots.equity_figure(result, tmp_path / "figures" / "equity.png")
    (fig,) = drawn
    assert_readable(fig, path)
    top, bottom = fig.axes
    assert "fast=5" in fig._suptitle.get_text() and "Sharpe" in top.get_title()
    assert top.get_ylabel() == "Equity (growth of 1 unit)"
    assert bottom.get_ylabel() == "Drawdown (%)" and bottom.get_xlabel() == "Date"
    np.testing.assert_allclose(top.lines[0].get_ydata(), result.equity.to_numpy())
    peak, expected = 1.0, []
    for value in result.equity:  # reference drawdown: a plain running-peak loop
        peak = max(peak, value)
        expected.append(value / peak - 1.0)
    np.testing.assert_allclose(bottom.lines[0].get_ydata(), expected, atol=1e-12)
    assert -min(expected) == pytest.approx(max_drawdown(result.returns), rel=1e-9)


def _equity_figure(
    tmp_path: Path, drawn: list[Any], name: str, capital: float | None, bars: bool
) -> Any:
    result = simulate(prices(), SmaCross(fast=5, slow=20), fee_bps=5)
    if bars:  # a bar axis (integers) instead of dates
        result = replace(result, equity=result.equity.reset_index(drop=True), benchmark=None)
    plots.equity_figure(replace(result, initial_capital=capital), tmp_path / f"{name}.png")
    return drawn[-1]


def _layout(fig: Any) -> np.ndarray:
    """Where the axes and the title are, in pixels of the PNG."""
    width, height = fig.get_size_inches() * plots.DPI
    boxes = [np.array(ax.get_position().bounds) * (width, height, width, height) for ax in fig.axes]
    title = fig._suptitle  # placed by its top (va="top") in both layouts
    assert title.get_va() == "top"
    return np.array([*np.concatenate(boxes), title.get_position()[1] * height])


@pytest.mark.parametrize(("capital", "bars"), [(None, False), (1e6, False), (None, True)])
def test_equity_figure_is_drawn_once_where_constrained_layout_puts_it(
    tmp_path: Path,
    drawn: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    capital: float | None,
    bars: bool,
) -> None:
    """The equity figure (one per run and per sweep job) is laid out by measuring each axes
    once and drawn once; constrained layout measured twice and savefig drew twice more.
    The picture is constrained layout's: the axes and the title land on the same pixels,
    with wide currency tick labels (capital) or a bar axis too."""
    from matplotlib.figure import Figure

    draws: list[Any] = []
    real_draw = Figure.draw

    def counted(fig: Any, renderer: Any) -> None:
        draws.append(fig)
        real_draw(fig, renderer)

    monkeypatch.setattr(Figure, "draw", counted)
    fig = _equity_figure(tmp_path, drawn, "fit", capital, bars)
    assert len(draws) == 1 and fig.get_layout_engine() is None
    assert_readable(fig, tmp_path / "fit.png")
    # the reference: the same figure laid out by matplotlib's constrained layout
    real_new = plots.new_figure
    monkeypatch.setattr(plots, "fit_column", lambda *args, **kwargs: None)
    monkeypatch.setattr(
        plots, "new_figure", lambda *a, **k: real_new(*a, **{**k, "layout": "constrained"})
    )
    reference = _equity_figure(tmp_path, drawn, "constrained", capital, bars)
    assert len(draws) == 3  # the reference: one draw to lay out, one to write
    np.testing.assert_allclose(_layout(fig), _layout(reference), atol=1.5)


def test_heatmap_marks_the_best_cell(tmp_path: Path, drawn: list[Any]) -> None:
    rng = np.random.default_rng(1)
    grid = pd.DataFrame(
        [(f, s, rng.normal()) for f in (5, 10, 20) for s in (50, 100, 150, 200) for _ in range(2)],
        columns=["fast", "slow", "sharpe_ratio"],
    )
    path = plots.heatmap_figure(
        grid,
        "slow",
        "fast",
        "sharpe_ratio",
        tmp_path / "h.png",
        value_label="Sharpe ratio (annualised)",
    )
    (fig,) = drawn
    assert_readable(fig, path)
    ax = fig.axes[0]
    means = grid.groupby(["fast", "slow"])["sharpe_ratio"].mean()
    best_fast, best_slow = means.idxmax()
    (box,) = ax.patches
    col, row = box.get_x() + 0.5, box.get_y() + 0.5
    assert (sorted(grid.slow.unique())[int(col)], sorted(grid.fast.unique())[int(row)]) == (
        best_slow,
        best_fast,
    )
    assert f"slow={best_slow}, fast={best_fast}" in box.get_label()
    assert fig.axes[1].get_ylabel() == "Sharpe ratio (annualised)"
    assert ax.get_xlabel() == "slow (parameter value)"


def test_fan_histogram_line_and_windows_figures(tmp_path: Path, drawn: list[Any]) -> None:
    rng = np.random.default_rng(2)
    paths = np.cumprod(1 + rng.normal(0.0005, 0.01, (500, 252)), axis=1)
    levels = [5, 25, 50, 75, 95]
    fan = pd.DataFrame(np.percentile(paths, levels, axis=0).T, columns=levels)
    plots.fan_figure(
        fan,
        tmp_path / "fan.png",
        title="Monte Carlo equity fan",
        ylabel="Equity (growth of 1 unit)",
        observed=pd.Series(paths[0]),
    )
    final = paths[:, -1] - 1
    plots.histogram_figure(
        final,
        tmp_path / "hist.png",
        title="Total return of simulated paths",
        xlabel="Total return (%)",
        observed=0.1,
        percent=True,
    )
    plots.line_figure(
        {"out-of-sample": pd.Series(paths[0], index=pd.bdate_range("2020-01-01", periods=252))},
        tmp_path / "line.png",
        title="Out-of-sample equity",
        ylabel="Equity (growth of 1 unit)",
    )
    folds = pd.DataFrame(
        {
            "train_start": pd.to_datetime(["2010-01-01", "2011-01-01"]),
            "train_end": pd.to_datetime(["2012-12-31", "2013-12-31"]),
            "test_start": pd.to_datetime(["2013-01-01", "2014-01-01"]),
            "test_end": pd.to_datetime(["2013-12-31", "2014-12-31"]),
            "params": ["lookback=20", "lookback=60"],
        }
    )
    plots.windows_figure(folds, tmp_path / "folds.png", label="params")
    fan_fig, hist_fig, _, win_fig = drawn
    for fig, name in zip(drawn, ["fan", "hist", "line", "folds"], strict=True):
        assert_readable(fig, tmp_path / f"{name}.png")
    fan_ax = fan_fig.axes[0]
    assert len(fan_ax.collections) == 2  # 5th-95th and 25th-75th bands
    np.testing.assert_allclose(fan_ax.lines[0].get_ydata(), np.median(paths, axis=0))
    assert sum(p.get_height() for p in hist_fig.axes[0].patches) == len(final)
    assert len(win_fig.axes[0].patches) == 2 * len(folds)
    assert win_fig.axes[0].get_xlabel() == "Date"


def test_metrics_caption_formats_percent_metrics() -> None:
    caption = plots.metrics_caption({"sharpe_ratio": float("nan"), "max_drawdown": 0.1234})
    assert caption == "Sharpe n/a · max drawdown 12.3%"


class _SlowClock:
    """``time`` as matplotlib's legend module sees it on a loaded machine: every reading
    is two seconds after the last, so each "best" legend search seems to take 2 s."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 2.0
        return self.now


def test_no_figure_warns_of_a_slow_legend_on_a_loaded_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """matplotlib warns when an unnamed ``loc="best"`` legend takes over a second: a busy
    machine alone did that (a walk-forward test failed on the warning). Every legend of
    ours names its place, so no load makes a figure warn."""
    import warnings

    import matplotlib.legend

    from backtest.config import MonteCarloConfig
    from backtest.data import synthetic_prices
    from backtest.montecarlo import MonteCarloSimulator

    monkeypatch.setattr(matplotlib.legend, "time", _SlowClock())
    rng = np.random.default_rng(4)
    index = pd.bdate_range("2020-01-01", periods=252)
    result = simulate(synthetic_prices(300, 1, seed=2), SmaCross(10, 50))
    report = MonteCarloSimulator(
        MonteCarloConfig(method="stationary_bootstrap", n_paths=20, seed=1), progress=False
    ).run(result)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.histogram_figure(rng.normal(0, 0.1, 200), tmp_path / "h.png", title="t",
                               xlabel="x", observed=0.05, percent=True)  # fmt: skip
        plots.line_figure(
            {name: pd.Series(rng.normal(1, 0.1, 252), index) for name in ("a", "b")},
            tmp_path / "l.png",
            title="t",
            ylabel="y",
        )
        written = report.save_figures(tmp_path / "mc")
    assert len(written) == 2 and all(p.stat().st_size > 0 for p in written)
