"""Figures as PNG files: equity with drawdown, heatmaps, lines, fans, histograms, windows.

Every figure has a title, labelled axes and units (percent, growth of 1 unit, bars or
dates). Figures are drawn on matplotlib's Agg canvas without ``pyplot``, so nothing
opens a window, no global state is touched and worker threads may draw at once;
``matplotlib`` is imported only when a figure is drawn. Files are written atomically.

Other modules (search heatmaps, walk-forward windows, Monte Carlo fans) draw their
figures with these helpers.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from backtest.results import atomic_write_bytes
from backtest.results._summary import is_percent

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    from backtest.engine import BacktestResult

DPI = 110


def new_figure(
    nrows: int = 1,
    *,
    height_ratios: Sequence[float] | None = None,
    figsize: tuple[float, float] = (10.0, 5.5),
    sharex: bool = True,
    layout: str | None = "constrained",
) -> tuple[Figure, list[Axes]]:
    """A figure on the Agg canvas with ``nrows`` stacked axes (no ``pyplot``).

    ``layout=None`` leaves the axes where they are for :func:`fit_column` to place once.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout=layout)
    axes = fig.subplots(
        nrows,
        1,
        sharex=sharex,
        squeeze=False,
        gridspec_kw={"height_ratios": list(height_ratios)} if height_ratios else None,
    )
    return fig, list(axes[:, 0])


# Padding around each axes and the title, in inches (constrained layout's h_pad and w_pad).
_PAD_IN = 0.04167
# Where fit_column measures first (inches): the margins of a typical equity figure.
_TYPICAL_IN = {"left": 0.8, "right": 0.1, "top": 0.5, "bottom": 0.47, "gap": 0.13}


def fit_column(fig: Figure, axes: Sequence[Axes], suptitle: Text | None = None) -> None:
    """Place a column of axes once so that titles, labels and tick labels fit the figure.

    The picture of ``layout="constrained"`` (the same padding) without its cost: constrained
    layout measures every axes twice before ``savefig`` draws, and ``savefig`` then draws
    the figure twice (a sweep job's equity figure took 0.4 s of which 0.2 s was layout).
    Here each axes' extent is measured once, on the Agg renderer that ``savefig`` reuses,
    and the one draw writes the PNG. Heights are set from the measured top, bottom and
    in-between margins, widths from the widest tick labels and axis labels.

    Args:
        fig: A figure made with ``new_figure(..., layout=None)``, everything drawn on it.
        axes: Its axes, top to bottom, in one column.
        suptitle: The figure's title (placed at the top, above the first axes' title).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig.set_dpi(DPI)  # measured at the resolution savefig draws with
    renderer = FigureCanvasAgg(fig).get_renderer()
    pad = _PAD_IN * DPI
    width, height = fig.get_size_inches() * DPI
    _place(fig, len(axes), width, height, **{k: v * DPI for k, v in _TYPICAL_IN.items()})
    # measured where the axes nearly are: their sizes (and so the ticks) barely change
    boxes = [
        (ax.get_window_extent(renderer), ax.get_tightbbox(renderer, for_layout_only=True))
        for ax in axes
    ]
    left = pad + max(box.x0 - tight.x0 for box, tight in boxes)
    right = pad + max(tight.x1 - box.x1 for box, tight in boxes)
    top = pad + boxes[0][1].y1 - boxes[0][0].y1
    if suptitle is not None:
        suptitle.set_y(1.0 - pad / height)  # its top, one pad below the figure's edge
        top += 2 * pad + suptitle.get_window_extent(renderer).height  # as constrained
    bottom = pad + boxes[-1][0].y0 - boxes[-1][1].y0
    gap = max(
        (
            (box.y0 - tight.y0) + (below_tight.y1 - below_box.y1) + 2 * pad
            for (box, tight), (below_box, below_tight) in pairwise(boxes)
        ),
        default=0.0,
    )
    _place(fig, len(axes), width, height, left=left, right=right, top=top, bottom=bottom, gap=gap)


def _place(
    fig: Figure,
    rows: int,
    width: float,
    height: float,
    *,
    left: float,
    right: float,
    top: float,
    bottom: float,
    gap: float,
) -> None:
    """Margins and the gap between rows, in pixels, as the figure's subplot parameters."""
    free = height - top - bottom
    fig.subplots_adjust(
        left=left / width,
        right=1.0 - right / width,
        top=1.0 - top / height,
        bottom=bottom / height,
        hspace=gap * rows / (free - gap * (rows - 1)) if rows > 1 else 0.0,
    )


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG atomically (folders created) and return the path."""
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _format_value(name: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if is_percent(name):
        return f"{value:.1%}"
    if name == "n_trades":
        return f"{value:.0f}"
    return f"{value:.2f}"


def metrics_caption(
    metrics: Mapping[str, Any],
    names: Sequence[str] = (
        "sharpe_ratio",
        "total_return",
        "cagr",
        "max_drawdown",
        "n_trades",
    ),
) -> str:
    """A one-line caption of headline metrics.

    >>> metrics_caption({"sharpe_ratio": 1.234, "total_return": 0.5, "n_trades": 12.0})
    'Sharpe 1.23 · total return 50.0% · trades 12'
    """
    labels = {
        "sharpe_ratio": "Sharpe",
        "total_return": "total return",
        "cagr": "CAGR",
        "max_drawdown": "max drawdown",
        "n_trades": "trades",
    }
    parts = [f"{labels.get(n, n)} {_format_value(n, metrics[n])}" for n in names if n in metrics]
    return " · ".join(parts)


def _x_label(index: pd.Index) -> str:
    return "Date" if isinstance(index, pd.DatetimeIndex) else "Bar"


def _percent_axis(ax: Axes, axis: str = "y") -> None:
    from matplotlib.ticker import PercentFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(1.0))


def drawdown(equity: pd.Series) -> pd.Series:
    """Fall from the running peak as a negative fraction (the initial 1 counts as a peak).

    >>> drawdown(pd.Series([1.1, 0.99, 1.2])).round(3).tolist()
    [0.0, -0.1, 0.0]
    """
    peak = np.maximum(equity.cummax(), 1.0)
    return equity / peak - 1.0


def equity_figure(result: BacktestResult, path: str | Path, *, title: str | None = None) -> Path:
    """Equity curve (growth of 1 unit) above its drawdown from the running peak.

    Args:
        result: A backtest (its ``equity``, ``metrics`` and ``params`` are drawn).
        path: The PNG to write.
        title: Overrides the default title (the strategy parameters).

    Returns:
        ``path``.
    """
    capital = getattr(result, "initial_capital", None)
    scale = 1.0 if capital is None else float(capital)  # in currency with a capital
    equity = result.equity.astype(float) * scale
    fig, (top, bottom) = new_figure(2, height_ratios=(3, 1.3), figsize=(10, 6), layout=None)
    params = ", ".join(f"{k}={v}" for k, v in (result.params or {}).items())
    suptitle = fig.suptitle(
        title or f"Equity and drawdown{': ' + params if params else ''}",
        fontsize=13,
        fontweight="bold",
    )
    top.set_title(metrics_caption(result.metrics), fontsize=10, color="0.3")
    if len(equity):
        top.plot(
            equity.index,
            equity.to_numpy(),
            color="tab:blue",
            linewidth=1.2,
            label="strategy equity",
        )
        bench = getattr(result, "benchmark", None)
        if bench is not None and len(bench):
            bench = bench.astype(float) * scale
            top.plot(bench.index, bench.to_numpy(), color="0.4", linewidth=1.0, label="benchmark")
        top.axhline(scale, color="0.5", linewidth=0.8, linestyle="--", label="initial capital")
        dd = (
            equity - np.maximum(equity.cummax(), scale) if capital is not None else drawdown(equity)
        )
        bottom.fill_between(dd.index, dd.to_numpy(), 0.0, color="tab:red", alpha=0.35, linewidth=0)
        bottom.plot(dd.index, dd.to_numpy(), color="tab:red", linewidth=0.8)
        top.legend(loc="upper left", frameon=False)
    else:
        top.text(0.5, 0.5, "no bars", ha="center", va="center", transform=top.transAxes)
    top.grid(alpha=0.3)
    if capital is None:
        top.set_ylabel("Equity (growth of 1 unit)")
        bottom.set_ylabel("Drawdown (%)")
        _percent_axis(bottom)
    else:
        from matplotlib.ticker import FuncFormatter

        top.set_ylabel(f"Equity (currency; initial {scale:,.0f})")
        bottom.set_ylabel("Drawdown (currency)")
        for axis in (top, bottom):
            axis.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    bottom.grid(alpha=0.3)
    bottom.set_xlabel(_x_label(equity.index))
    fit_column(fig, [top, bottom], suptitle)  # one draw, not constrained layout's three
    return save_figure(fig, path)


def line_figure(
    series: Mapping[str, pd.Series],
    path: str | Path,
    *,
    title: str,
    ylabel: str,
    xlabel: str | None = None,
    percent: bool = False,
    log_scale: bool = False,
) -> Path:
    """Several labelled lines on one axis (out-of-sample equity, cumulative returns, ...).

    Args:
        series: Legend label -> series (its index is the x axis).
        path: The PNG to write.
        title: Figure title.
        ylabel: Y label with its unit, e.g. ``"Equity (growth of 1 unit)"``.
        xlabel: X label; ``Date`` or ``Bar`` from the index when unset.
        percent: Format the y axis as percent (values are fractions).
        log_scale: Logarithmic y axis.
    """
    fig, (ax,) = new_figure(1)
    first = next(iter(series.values()), pd.Series(dtype=float))
    for label, values in series.items():
        ax.plot(values.index, values.to_numpy(dtype=float), linewidth=1.2, label=label)
    ax.set_title(title, fontsize=13, fontweight="bold")
    ax.set_ylabel(ylabel)
    ax.set_xlabel(xlabel or _x_label(first.index))
    if log_scale:
        ax.set_yscale("log")
    if percent:
        _percent_axis(ax)
    if len(series) > 1:  # a fixed corner: "best" searches every point of every line
        ax.legend(loc="upper left", frameon=False)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def heatmap_figure(
    table: pd.DataFrame,
    x: str,
    y: str,
    value: str,
    path: str | Path,
    *,
    title: str | None = None,
    value_label: str | None = None,
    maximize: bool = True,
) -> Path:
    """A parameter-search heatmap: ``value`` over two parameters, the best cell outlined.

    Several rows per (x, y) cell (other parameters varied) are averaged.

    Args:
        table: One row per trial with columns ``x``, ``y`` and ``value``.
        x: Parameter on the horizontal axis.
        y: Parameter on the vertical axis.
        value: The metric coloured (e.g. ``sharpe_ratio``).
        path: The PNG to write.
        title: Figure title.
        value_label: Colour-bar label with unit; ``value`` when unset.
        maximize: Whether the best cell is the largest (else the smallest).
    """
    grid = table.pivot_table(index=y, columns=x, values=value, aggfunc="mean").sort_index()
    grid = grid.reindex(sorted(grid.columns), axis=1)
    data = grid.to_numpy(dtype=float)
    fig, (ax,) = new_figure(1, figsize=(9, 6.5))
    image = ax.imshow(data, origin="lower", aspect="auto", cmap="viridis", interpolation="nearest")
    bar = fig.colorbar(image, ax=ax)
    bar.set_label(value_label or value)
    ax.set_xticks(
        range(len(grid.columns)),
        [str(c) for c in grid.columns],
        rotation=90 if len(grid.columns) > 12 else 0,
    )
    ax.set_yticks(range(len(grid.index)), [str(i) for i in grid.index])
    ax.set_xlabel(f"{x} (parameter value)")
    ax.set_ylabel(f"{y} (parameter value)")
    ax.set_title(title or f"{value} by {x} and {y}", fontsize=13, fontweight="bold")
    if np.isfinite(data).any():
        flat = np.nanargmax(data) if maximize else np.nanargmin(data)
        row, col = np.unravel_index(flat, data.shape)
        from matplotlib.patches import Rectangle

        ax.add_patch(
            Rectangle(
                (col - 0.5, row - 0.5),
                1,
                1,
                fill=False,
                edgecolor="red",
                linewidth=2,
                label=f"best: {x}={grid.columns[col]}, "
                f"{y}={grid.index[row]} ({data[row, col]:.3g})",
            )
        )
        ax.legend(loc="upper left", bbox_to_anchor=(0, -0.12), frameon=False)
        if data.size <= 150:
            for (r, c), v in np.ndenumerate(data):
                if np.isfinite(v):
                    ax.text(
                        c,
                        r,
                        f"{v:.2f}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if v < np.nanmean(data) else "black",
                    )
    return save_figure(fig, path)


def fan_figure(
    quantiles: pd.DataFrame,
    path: str | Path,
    *,
    title: str,
    ylabel: str,
    observed: pd.Series | None = None,
    xlabel: str | None = None,
) -> Path:
    """A fan chart: bands between symmetric quantiles of simulated paths, median line.

    Args:
        quantiles: One column per quantile level in percent (e.g. 5, 25, 50, 75, 95),
            one row per bar.
        path: The PNG to write.
        title: Figure title.
        ylabel: Y label with unit, e.g. ``"Equity (growth of 1 unit)"``.
        observed: The observed path, drawn on top.
        xlabel: X label; ``Date`` or ``Bar`` from the index when unset.
    """
    levels = sorted(float(c) for c in quantiles.columns)
    cols = {float(c): c for c in quantiles.columns}
    fig, (ax,) = new_figure(1)
    x = quantiles.index
    pairs = [(lo, hi) for lo, hi in zip(levels, reversed(levels), strict=True) if lo < hi]
    for i, (lo, hi) in enumerate(pairs):
        ax.fill_between(
            x,
            quantiles[cols[lo]].to_numpy(float),
            quantiles[cols[hi]].to_numpy(float),
            color="tab:blue",
            alpha=0.15 + 0.15 * i,
            linewidth=0,
            label=f"{lo:g}th-{hi:g}th percentile",
        )
    middle = [lv for lv in levels if lv not in {p for pair in pairs for p in pair}]
    for lv in middle:
        ax.plot(
            x,
            quantiles[cols[lv]].to_numpy(float),
            color="tab:blue",
            linewidth=1.3,
            label=f"{lv:g}th percentile (median)" if lv == 50 else f"{lv:g}th percentile",
        )
    if observed is not None:
        ax.plot(
            observed.index, observed.to_numpy(float), color="black", linewidth=1.1, label="observed"
        )
    ax.set_title(title, fontsize=13, fontweight="bold")
    ax.set_ylabel(ylabel)
    ax.set_xlabel(xlabel or _x_label(x))
    ax.legend(loc="upper left", frameon=False)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def histogram_figure(
    values: Sequence[float] | np.ndarray | pd.Series,
    path: str | Path,
    *,
    title: str,
    xlabel: str,
    observed: float | None = None,
    bins: int = 50,
    percent: bool = False,
) -> Path:
    """A histogram of simulated values with the observed value marked.

    Args:
        values: The simulated values (NaN dropped).
        path: The PNG to write.
        title: Figure title.
        xlabel: X label with unit, e.g. ``"Max drawdown (%)"``.
        observed: The observed value, drawn as a vertical line.
        bins: Number of bins.
        percent: Format the x axis as percent (values are fractions).
    """
    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data)]
    fig, (ax,) = new_figure(1, figsize=(9, 5))
    ax.hist(
        data,
        bins=bins,
        color="tab:blue",
        alpha=0.75,
        edgecolor="white",
        linewidth=0.4,
        label=f"{len(data):,} simulated paths",
    )
    if observed is not None and math.isfinite(observed):
        ax.axvline(
            observed,
            color="black",
            linewidth=1.5,
            linestyle="--",
            label=f"observed: {observed:.1%}" if percent else f"observed: {observed:.3g}",
        )
    ax.set_title(title, fontsize=13, fontweight="bold")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Number of paths")
    if percent:
        _percent_axis(ax, "x")
    ax.legend(loc="best", frameon=False)  # named: an unnamed "best" warns past 1 s of load
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def windows_figure(
    folds: pd.DataFrame,
    path: str | Path,
    *,
    title: str = "Walk-forward windows",
    label: str | None = None,
) -> Path:
    """Train and test windows of a walk-forward, one row per fold.

    Args:
        folds: Columns ``train_start``, ``train_end``, ``test_start``, ``test_end``
            (dates or bar numbers), one row per fold.
        path: The PNG to write.
        title: Figure title.
        label: Column whose value is written on each test window (e.g. chosen params).
    """
    fig, (ax,) = new_figure(1, figsize=(10, max(3.0, 0.35 * len(folds) + 1.5)))
    dates = pd.api.types.is_datetime64_any_dtype(folds["train_start"])
    for i, row in enumerate(folds.itertuples(index=False)):
        f = row._asdict()
        y = len(folds) - 1 - i
        for start, end, colour, name in (
            (f["train_start"], f["train_end"], "tab:blue", "train"),
            (f["test_start"], f["test_end"], "tab:orange", "test"),
        ):
            ax.barh(
                y,
                end - start,
                left=start,
                height=0.6,
                color=colour,
                alpha=0.8,
                label=name if i == 0 else None,
            )
        if label is not None:
            ax.text(f["test_end"], y, f"  {f[label]}", va="center", fontsize=7)
    ax.set_yticks(range(len(folds)), [f"fold {len(folds) - 1 - i}" for i in range(len(folds))])
    ax.set_xlabel("Date" if dates else "Bar")
    ax.set_ylabel("Fold")
    if label is not None:
        ax.set_xmargin(0.15)  # room for the text after the last test window
    ax.set_title(title, fontsize=13, fontweight="bold")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.grid(alpha=0.3, axis="x")
    return save_figure(fig, path)
