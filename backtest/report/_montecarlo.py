"""Monte Carlo: the equity fan, metric histograms with the observed value, loss and ruin."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from backtest.report._page import (
    COLORS,
    Page,
    dates,
    figure_spec,
    key_values,
    note,
    num,
    thin_positions,
)

HISTOGRAM_METRICS = ("sharpe_ratio", "max_drawdown", "cagr")
N_BINS = 50


def montecarlo_section(
    page: Page,
    record: Mapping[str, Any],
    tables: Mapping[str, pd.DataFrame],
    index: pd.Index | None = None,
) -> None:
    """The fan of simulated equity, histograms, probabilities of loss and ruin.

    ``index``: the dates of the analysed returns (the run's equity table), for the fan's
    date axis.
    """
    mc = record.get("montecarlo") or {}
    parts = [
        key_values(
            [
                ("method", mc.get("method")),
                ("paths", mc.get("n_paths")),
                ("horizon (bars)", mc.get("horizon_bars")),
                ("seed", mc.get("seed")),
                ("prob_loss", mc.get("prob_loss")),
                ("prob_ruin", mc.get("prob_ruin")),
                ("ruin drawdown", f"{float(mc.get('ruin_drawdown') or 0):.0%}"),
            ],
            key="montecarlo",
        ),
        note(
            "Probability of loss: share of simulated paths that end below their start. "
            "Probability of ruin: share whose drawdown reaches the ruin level."
        ),
    ]
    fan = tables.get("montecarlo_fan")
    paths = tables.get("montecarlo_paths")
    if (fan is not None and len(fan)) or (paths is not None and len(paths)):
        when = index if mc.get("unit", "bar") == "bar" else None
        figure = montecarlo_figure(
            fan.set_index("bar") if fan is not None and "bar" in fan.columns else fan,
            paths,
            mc.get("observed") or {},
            mc.get("percentile_ranks") or {},
            dates_of=when,
            unit=str(mc.get("unit", "bar")),
        )
        parts.append(page.add(figure))
        parts.append(
            note(
                "Top: the simulated equity's percentiles at each step and the observed "
                "equity. Bottom: histograms of the paths' metrics; dashed line: the observed "
                "value, its percentile is the share of simulated paths below it."
            )
        )
    page.section("montecarlo", "Monte Carlo", *parts)


def fan_dates(index: pd.Index | None, n_steps: int) -> list[str] | None:
    """Dates of a fan's steps: step 0 one bar before the first return, step k at its k-th bar.

    Steps past the end of ``index`` continue at its median spacing. ``None`` when the
    index is not dates (or too short to give a spacing).
    """
    if not isinstance(index, pd.DatetimeIndex) or len(index) < 2:
        return None
    step = pd.Series(index).diff().median()
    extra = max(0, n_steps - 1 - len(index))
    after = [index[-1] + step * (k + 1) for k in range(extra)]
    stamps = pd.DatetimeIndex([index[0] - step, *index[: n_steps - 1], *after])
    return dates(stamps)


def montecarlo_figure(
    fan: pd.DataFrame | None,
    paths: pd.DataFrame | None,
    observed: Mapping[str, Any],
    ranks: Mapping[str, Any],
    *,
    dates_of: pd.Index | None = None,
    unit: str = "bar",
) -> dict[str, Any]:
    """The equity fan (top) over histograms of Sharpe, max drawdown and CAGR (bottom).

    Args:
        fan: Equity percentiles per step (index: the step; columns ``p5``... and
            ``observed``), as ``MonteCarloReport.fan``.
        paths: One row per path with the metrics of ``HISTOGRAM_METRICS``.
        observed: The observed value of each metric (the dashed line).
        ranks: The observed value's percentile rank among the paths.
        dates_of: The dates of the analysed returns: the fan's x axis becomes dates
            (:func:`fan_dates`); else it counts steps.
        unit: What a step is (``bar`` or ``trade``).

    Returns:
        The figure: the fan's band, percentile lines and ``observed`` line, then one bar
        trace per histogram (named by its metric) with the observed value as a shape.
    """
    traces: list[dict[str, Any]] = []
    layout: dict[str, Any] = {"hovermode": "closest", "bargap": 0, "shapes": [],
                              "annotations": []}  # fmt: skip
    metrics = [
        m for m in HISTOGRAM_METRICS if paths is not None and len(paths) and m in paths.columns
    ]
    has_fan = fan is not None and len(fan) > 0
    top = [0.5, 1.0] if metrics and has_fan else [0.0, 1.0]
    if has_fan:
        assert fan is not None
        x_dates = fan_dates(dates_of, len(fan)) if unit == "bar" else None
        traces.extend(_fan_traces(fan, x_dates))
        layout["xaxis"] = {"domain": [0.0, 1.0], "anchor": "y",
                           **({"type": "date"} if x_dates else
                              {"title": {"text": unit + "s"}})}  # fmt: skip
        layout["yaxis"] = {"domain": top, "title": {"text": "equity"}}
    width = 1.0 / max(1, len(metrics))
    for i, metric in enumerate(metrics):
        assert paths is not None
        k = i + 2 if has_fan else i + 1
        ax = "" if k == 1 else str(k)
        lo, hi = i * width + 0.04, (i + 1) * width - 0.04
        bottom = [0.0, 0.36] if has_fan else [0.0, 1.0]
        hist = _histogram_trace(paths[metric].to_numpy(dtype=np.float64), metric)
        if hist is None:
            continue
        traces.append({**hist, "xaxis": f"x{ax}", "yaxis": f"y{ax}"})
        layout[f"xaxis{ax}"] = {
            "domain": [lo, hi],
            "anchor": f"y{ax}",
            "tickformat": ".0%" if metric in ("max_drawdown", "cagr") else "",
        }
        layout[f"yaxis{ax}"] = {"domain": bottom, "anchor": f"x{ax}"}
        title = metric
        value = observed.get(metric)
        if value is not None:
            layout["shapes"].append(
                {"type": "line", "x0": value, "x1": value, "xref": f"x{ax}",
                 "yref": f"y{ax} domain", "y0": 0, "y1": 1,
                 "line": {"color": COLORS[3], "dash": "dash", "width": 2}}
            )  # fmt: skip
            title = f"{metric}: observed {float(value):.3g}"
            if ranks.get(metric) is not None:
                title += f", percentile {float(ranks[metric]):.1f}"
        layout["annotations"].append(
            {"text": title, "showarrow": False, "xref": "paper", "yref": "paper",
             "x": (lo + hi) / 2, "y": bottom[1] + 0.02, "xanchor": "center",
             "yanchor": "bottom", "font": {"size": 12}}
        )  # fmt: skip
    height = 420 + (300 if metrics and has_fan else 0)
    return figure_spec(traces, layout, height=height)


def _fan_traces(fan: pd.DataFrame, x_dates: list[str] | None) -> list[dict[str, Any]]:
    bands = [c for c in fan.columns if c.startswith("p") and c[1:].replace(".", "").isdigit()]
    bands.sort(key=lambda c: float(c[1:]))
    pos = thin_positions(len(fan), fan[bands[len(bands) // 2]].to_numpy() if bands else None)
    x: list[Any] = [x_dates[i] for i in pos] if x_dates else num(fan.index.to_numpy()[pos])
    traces: list[dict[str, Any]] = []
    lo, hi = (bands[0], bands[-1]) if len(bands) >= 2 else (None, None)
    if lo and hi:
        traces.append(
            {"type": "scatter", "x": x, "y": num(fan[lo].to_numpy()[pos]), "name": lo,
             "line": {"width": 0.5, "color": "rgba(31,119,180,0.4)"}}
        )  # fmt: skip
        traces.append(
            {"type": "scatter", "x": x, "y": num(fan[hi].to_numpy()[pos]), "name": f"{lo}-{hi}",
             "fill": "tonexty", "fillcolor": "rgba(31,119,180,0.18)",
             "line": {"width": 0.5, "color": "rgba(31,119,180,0.4)"}}
        )  # fmt: skip
    for band in bands[1:-1]:
        traces.append(
            {"type": "scatter", "x": x, "y": num(fan[band].to_numpy()[pos]), "name": band,
             "line": {"color": COLORS[0], "width": 1.2}}
        )  # fmt: skip
    if "observed" in fan.columns:
        traces.append(
            {"type": "scatter", "x": x, "y": num(fan["observed"].to_numpy()[pos]),
             "name": "observed", "line": {"color": "#111827", "width": 1.5}}
        )  # fmt: skip
    return traces


def _histogram_trace(values: np.ndarray, metric: str) -> dict[str, Any] | None:
    vals = values[np.isfinite(values)]
    if not len(vals):
        return None
    counts, edges = np.histogram(vals, bins=N_BINS)
    centers = (edges[:-1] + edges[1:]) / 2
    return {"type": "bar", "x": num(centers), "y": counts.tolist(), "name": metric,
            "width": float(edges[1] - edges[0]), "marker": {"color": COLORS[0]},
            "showlegend": False}  # fmt: skip
