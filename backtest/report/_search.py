"""A parameter search: the metric surface over two parameters, top trials, overfitting."""

from __future__ import annotations

import html
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from backtest.report._page import Page, cell, figure_spec, key_values, note, num, table

TOP_N = 20
MAX_PAIRS = 15
MAX_CELLS = 25  # per axis: a parameter with more distinct values is binned for the heatmap

# Each overfitting statistic with one sentence saying what it means.
OVERFITTING_MEANINGS: dict[str, str] = {
    "deflated_sharpe": (
        "Deflated Sharpe ratio: the probability that the best Sharpe ratio is above zero "
        "after accounting for how many trials were run (near 1: unlikely to be luck)."
    ),
    "deflated_sharpe_effective": (
        "Deflated Sharpe ratio counting only the effective number of independent trials "
        "(correlated trials count as fewer)."
    ),
    "effective_trials": (
        "Effective number of independent trials: how many uncorrelated strategies the "
        "search was really worth."
    ),
    "n_trials": "Trials run: the number of parameter sets the deflation accounts for.",
    "pbo": (
        "Probability of backtest overfitting: how often the best in-sample choice ranks "
        "below the median out of sample (near 0 good, above 0.5 worse than chance)."
    ),
    "spa_pvalue": (
        "Hansen's SPA test p-value: the chance that no strategy beats the benchmark and "
        "the best result is data snooping (small: a real edge)."
    ),
    "reality_check_pvalue": (
        "White's Reality Check p-value: SPA's older, more conservative form (it lets poor "
        "strategies raise the bar); small: the best result is not data snooping."
    ),
    "spa_pvalue_max": (
        "Largest SPA p-value over the walk-forward folds: the fold whose best choice is the "
        "most likely to be data snooping."
    ),
    "deflated_sharpe_min": "Lowest deflated Sharpe ratio over the walk-forward folds.",
    "pbo_walkforward": (
        "Share of folds whose in-sample choice ranked below the median out of sample."
    ),
    "probabilistic_sharpe": (
        "Probabilistic Sharpe ratio: the probability that the true Sharpe ratio is above "
        "zero, given the track record's length, skew and kurtosis."
    ),
    "oos_probabilistic_sharpe": (
        "Probabilistic Sharpe ratio of the stitched out-of-sample returns."
    ),
    "expected_max_sharpe_annual": (
        "The best annual Sharpe ratio expected from this many trials of pure noise."
    ),
    "best_sharpe_annual": "The best annual Sharpe ratio found in sample.",
    "min_track_record_years": (
        "Minimum track record length: years of returns needed for the Sharpe ratio to be "
        "significantly above zero."
    ),
    "degradation_slope": (
        "Slope of out-of-sample on in-sample score over folds (negative: the better a "
        "fold looked in sample, the worse it did out of sample)."
    ),
    "degradation_r_squared": "How much of the out-of-sample score the in-sample one explains.",
    "oos_loss_share": "Share of folds that lost money out of sample.",
}


def search_section(page: Page, record: Mapping[str, Any], trials: pd.DataFrame) -> None:
    """Metric surface (heatmap with a pair picker) and the top trials of a search."""
    search = record.get("search") or {}
    metric = str(search.get("metric", "sharpe_ratio"))
    maximize = search.get("direction", "maximize") != "minimize"
    params = [p for p in (search.get("space") or {}) if p in trials.columns]
    if "status" in trials.columns:
        trials = trials[trials["status"].astype(str).isin(["ok", "complete", "COMPLETE"])]
    if metric not in trials.columns or trials.empty:
        return
    facts = [
        ("method", search.get("method")),
        ("trials", search.get("n_trials")),
        ("failed", search.get("n_failed")),
        ("best trial", search.get("best_trial")),
        ("best score", search.get("best_score")),
        ("metric", f"{metric} ({'maximize' if maximize else 'minimize'})"),
        ("elapsed (s)", search.get("elapsed_s")),
    ]
    parts = [
        key_values(facts, key="search"),
        surface(page, trials, params, metric, maximize),
    ]
    top = trials.sort_values(metric, ascending=not maximize, kind="stable").head(TOP_N)
    columns = [
        c
        for c in ["trial", *params, metric]
        + [c for c in trials.columns if c not in ("trial", "seed", "status", "error", *params)]
        if c in top.columns
    ]
    columns = list(dict.fromkeys(columns))
    rows = [[_plain(v) for v in row] for row in top[columns].itertuples(index=False)]
    parts.append(f"<h3>Top {len(top)} trials by {metric}</h3>")
    parts.append(f'<div class="scroll">{table(columns, rows, key="top_trials")}</div>')
    page.section("search", "Parameter search", *parts)


def surface(
    page: Page, trials: pd.DataFrame, params: list[str], metric: str, maximize: bool
) -> str:
    """Heatmap of the metric over two parameters (best over the others), a picker for more."""
    numeric = [p for p in params if pd.api.types.is_numeric_dtype(trials[p])]
    if len(numeric) == 1:
        return page.add(line_figure(trials, numeric[0], metric, maximize))
    pairs = list(itertools.combinations(numeric, 2))[:MAX_PAIRS]
    if not pairs:
        return ""
    binned = [p for p in numeric if trials[p].nunique() > MAX_CELLS]
    traces = [
        heatmap_trace(trials, px, py, metric, maximize, visible=i == 0)
        for i, (px, py) in enumerate(pairs)
    ]
    layout: dict[str, Any] = {
        "xaxis": {"title": {"text": pairs[0][0]}},
        "yaxis": {"title": {"text": pairs[0][1]}},
        "hovermode": "closest",
    }
    if len(pairs) > 1:
        buttons = [
            {
                "label": f"{px} x {py}",
                "method": "update",
                "args": [
                    {"visible": [j == i for j in range(len(pairs))]},
                    {"xaxis.title.text": px, "yaxis.title.text": py},
                ],
            }
            for i, (px, py) in enumerate(pairs)
        ]
        layout["updatemenus"] = [{"buttons": buttons, "x": 0.0, "y": 1.2, "xanchor": "left"}]
    text = (
        f"Each cell: the {'best' if maximize else 'lowest'} {metric} over the trials with "
        "those two parameter values (the other parameters at their best)."
        + (" Pick another pair of parameters in the menu." if len(pairs) > 1 else "")
        + (
            f" {', '.join(binned)} binned into {MAX_CELLS} equal ranges (cell: the range's middle)."
            if binned
            else ""
        )
    )
    return page.add(figure_spec(traces, layout, height=460)) + note(text)


def search_figure(
    trials: pd.DataFrame,
    params: list[str],
    metric: str,
    maximize: bool,
    *,
    x: str | None = None,
    y: str | None = None,
    kind: str | None = None,
    cells: Callable[[str, str], tuple[pd.DataFrame, str]] | None = None,
) -> dict[str, Any]:
    """The figure of a search: a heatmap of two parameters, parallel coordinates, or a line.

    A heatmap of ``x`` and ``y`` (the first two parameters by default), each cell the
    best over the other parameters; with more than two parameters and neither ``x``
    nor ``y``, parallel coordinates; with one parameter, the metric over it.

    Args:
        trials: The trials table (parameters, metrics, ``status``).
        params: The searched parameters, in order.
        metric: The metric drawn.
        maximize: The best is the highest.
        x: Parameter on the horizontal axis.
        y: Parameter on the vertical axis.
        kind: ``"heatmap"`` or ``"parallel"`` (default: as above).
        cells: ``(x, y) -> (cells, title)``, the heatmap's values (a live search's
            ``heatmap_cells``); default: :func:`heatmap_cells` of ``trials``.

    Raises:
        ConfigError: an unknown ``kind``, or ``x``/``y`` not a searched parameter.
    """
    from backtest.errors import ConfigError

    if kind not in (None, "heatmap", "parallel"):
        raise ConfigError(f"kind must be 'heatmap' or 'parallel', got {kind!r}", key="kind")
    for name in (x, y):
        if name is not None and name not in params:
            raise ConfigError(
                f"{name!r} is not a searched parameter ({', '.join(params)})", key=name
            )
    if kind == "parallel" or (kind is None and x is None and y is None and len(params) > 2):
        return parallel_figure(trials, params, metric, maximize)
    if len(params) == 1:
        return line_figure(trials, params[0], metric, maximize)
    x = x or next(n for n in params if n != y)
    y = y or next(n for n in params if n != x)
    if cells is None:
        found, title = heatmap_cells(trials, params, x, y, metric, maximize)
    else:
        found, title = cells(x, y)
    return heatmap_figure(found, x, y, metric, maximize, title)


def heatmap_trace(
    cells: pd.DataFrame, x: str, y: str, metric: str, maximize: bool, visible: bool = True
) -> dict[str, Any]:
    """One heatmap of ``metric`` over ``x`` and ``y``: each cell the best of its rows.

    Args:
        cells: Trials, or cells already reduced (``SearchResult.heatmap_cells``): columns
            ``x``, ``y`` and ``metric``. A numeric parameter with more than
            ``MAX_CELLS`` distinct values is binned into that many equal ranges.
        x: Parameter on the horizontal axis.
        y: Parameter on the vertical axis.
        metric: The metric drawn.
        maximize: The best is the highest (else the lowest).
        visible: Shown at first (a pair picker shows one heatmap at a time).
    """
    binned = [p for p in (x, y) if _is_numeric(cells[p]) and cells[p].nunique() > MAX_CELLS]
    cells = cells.assign(**{p: _bin(cells[p]) for p in binned})
    best = _best(cells, [x, y], metric, maximize)
    grid = best.pivot_table(index=y, columns=x, values=metric, aggfunc="first")
    hover = f"{x}=%{{x}}<br>{y}=%{{y}}<br>{metric}=%{{z}}<extra></extra>"
    return {"type": "heatmap", "x": _axis(grid.columns), "y": _axis(grid.index),
            "z": [num(row) for row in grid.to_numpy()], "visible": visible,
            "colorscale": "Viridis", "reversescale": not maximize, "name": f"{x} x {y}",
            "colorbar": {"title": {"text": metric}}, "hovertemplate": hover}  # fmt: skip


def heatmap_figure(
    cells: pd.DataFrame, x: str, y: str, metric: str, maximize: bool, title: str = ""
) -> dict[str, Any]:
    """The metric over two parameters (:func:`heatmap_trace`), axes named, as a figure."""
    layout = {
        "title": {"text": title, "font": {"size": 13}},
        "xaxis": {"title": {"text": x}, "type": _axis_type(cells[x])},
        "yaxis": {"title": {"text": y}, "type": _axis_type(cells[y])},
        "hovermode": "closest",
    }
    return figure_spec([heatmap_trace(cells, x, y, metric, maximize)], layout, height=460)


def heatmap_cells(
    trials: pd.DataFrame, params: list[str], x: str, y: str, metric: str, maximize: bool
) -> tuple[pd.DataFrame, str]:
    """Cells and title of a stored search's heatmap, as ``SearchResult.heatmap_cells`` gives."""
    best = _best(ok_trials(trials), [x, y], metric, maximize)
    others = [p for p in params if p not in (x, y)]
    agg = "max" if maximize else "min"
    over = f", {agg} over {', '.join(others)}" if others else ""
    return best, f"{metric} by {x} and {y} ({len(trials)} trials{over})"


def line_figure(trials: pd.DataFrame, param: str, metric: str, maximize: bool) -> dict[str, Any]:
    """The metric over one parameter (the best trial at each value)."""
    best = _best(ok_trials(trials), [param], metric, maximize)
    trace = {"type": "scatter", "mode": "lines+markers", "x": _axis(best[param]),
             "y": num(best[metric]), "name": metric}  # fmt: skip
    layout = {"xaxis": {"title": {"text": param}}, "yaxis": {"title": {"text": metric}}}
    return figure_spec([trace], layout, height=360)


def parallel_figure(
    trials: pd.DataFrame, params: list[str], metric: str, maximize: bool
) -> dict[str, Any]:
    """Parallel coordinates: one line per successful trial through its parameters and metric.

    A parameter that is not a number (``True``/``False``, names) gets an axis of its
    values. The line colour is the metric (brighter: better).
    """
    ok = ok_trials(trials)
    ok = ok[np.isfinite(ok[metric].to_numpy(dtype=np.float64))]
    dims: list[dict[str, Any]] = []
    for p in [*params, metric]:
        col = ok[p]
        if _is_numeric(col):
            dims.append({"label": p, "values": num(col)})
        else:
            labels = sorted({str(v) for v in col})
            code = {v: i for i, v in enumerate(labels)}
            dims.append({"label": p, "values": [code[str(v)] for v in col],
                         "tickvals": list(range(len(labels))), "ticktext": labels})  # fmt: skip
    trace = {"type": "parcoords", "dimensions": dims, "name": metric,
             "line": {"color": num(ok[metric]), "colorscale": "Viridis",
                      "reversescale": not maximize, "showscale": True,
                      "colorbar": {"title": {"text": metric}}}}  # fmt: skip
    layout = {
        "title": {"text": f"{metric} of {len(ok):,} trials over {', '.join(params)}",
                  "font": {"size": 13}},
        "margin": {"l": 60, "r": 60, "t": 80, "b": 30},
    }  # fmt: skip
    return figure_spec([trace], layout, height=460)


def ok_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials that ran (``status`` ok)."""
    if "status" not in trials.columns:
        return trials
    return trials[trials["status"].astype(str).isin(["ok", "complete", "COMPLETE"])]


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _axis(values: Any) -> list[Any]:
    values = pd.Index(values)
    return num(values) if _is_numeric(values.to_series()) else [str(v) for v in values]


def _axis_type(values: pd.Series) -> str:
    return "linear" if _is_numeric(values) else "category"


def _bin(values: pd.Series) -> pd.Series:
    """Values replaced by the middle of their range among ``MAX_CELLS`` equal ranges."""
    x = values.to_numpy(dtype=np.float64)
    lo, hi = np.nanmin(x), np.nanmax(x)
    edges = np.linspace(lo, hi, MAX_CELLS + 1)
    index = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, MAX_CELLS - 1)
    return pd.Series((edges[index] + edges[index + 1]) / 2, index=values.index)


def _best(trials: pd.DataFrame, by: list[str], metric: str, maximize: bool) -> pd.DataFrame:
    grouped = trials.groupby(by, sort=True)[metric]
    return (grouped.max() if maximize else grouped.min()).reset_index()


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def overfitting_section(page: Page, record: Mapping[str, Any]) -> None:
    """DSR (raw and effective trials), PBO, SPA p-value and the rest, each with its meaning."""
    of = record.get("overfitting")
    if not isinstance(of, Mapping) or not of:
        return
    first = ["deflated_sharpe", "deflated_sharpe_effective", "effective_trials", "pbo"]
    first.append("spa_pvalue")
    keys = [k for k in first if k in of] + [k for k in of if k not in first]
    rows = "".join(
        f'<tr><td class="t">{html.escape(k)}</td>{cell(k, of[k], exact=True)}'
        f'<td class="t wrap">{html.escape(OVERFITTING_MEANINGS.get(k, ""))}</td></tr>'
        for k in keys
        if isinstance(of[k], int | float) or of[k] is None
    )
    body = (
        '<table data-table="overfitting"><thead><tr><th>statistic</th><th>value</th>'
        f'<th class="t">what it means</th>'
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )
    page.section("overfitting", "Overfitting", body)
