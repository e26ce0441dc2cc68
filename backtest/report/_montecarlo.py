"""Monte Carlo: the equity fan, metric histograms with the observed value, loss and ruin."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from backtest.report._page import COLORS, Page, key_values, note, num, thin_positions

HISTOGRAM_METRICS = ("sharpe_ratio", "max_drawdown", "cagr")
N_BINS = 50


def montecarlo_section(
    page: Page, record: Mapping[str, Any], tables: Mapping[str, pd.DataFrame]
) -> None:
    """The fan of simulated equity, histograms, probabilities of loss and ruin."""
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
    if fan is not None and len(fan):
        parts.append(_fan(page, fan))
    paths = tables.get("montecarlo_paths")
    if paths is not None and len(paths):
        observed = mc.get("observed") or {}
        ranks = mc.get("percentile_ranks") or {}
        figs = [
            _histogram(page, paths[m].to_numpy(), m, observed.get(m), ranks.get(m))
            for m in HISTOGRAM_METRICS
            if m in paths.columns
        ]
        parts.append('<div class="cols">' + "".join(f"<div>{f}</div>" for f in figs) + "</div>")
        parts.append(
            note(
                "Dashed line: the observed value; its percentile is the share of simulated "
                "paths below it."
            )
        )
    page.section("montecarlo", "Monte Carlo", *parts)


def _fan(page: Page, fan: pd.DataFrame) -> str:
    bands = [c for c in fan.columns if c.startswith("p") and c[1:].replace(".", "").isdigit()]
    bands.sort(key=lambda c: float(c[1:]))
    x_all = fan["bar"].to_numpy() if "bar" in fan.columns else np.arange(len(fan))
    pos = thin_positions(len(fan), fan[bands[len(bands) // 2]].to_numpy() if bands else None)
    x = num(x_all[pos])
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
    layout = {"xaxis": {"title": {"text": "bar"}}, "yaxis": {"title": {"text": "equity"}}}
    return page.figure(traces, layout, height=400)


def _histogram(page: Page, values: np.ndarray, metric: str, observed: Any, rank: Any) -> str:
    vals = values[np.isfinite(values)]
    if not len(vals):
        return ""
    counts, edges = np.histogram(vals, bins=N_BINS)
    centers = (edges[:-1] + edges[1:]) / 2
    traces = [
        {"type": "bar", "x": num(centers), "y": counts.tolist(), "name": metric,
         "width": float(edges[1] - edges[0]), "marker": {"color": COLORS[0]}},
    ]  # fmt: skip
    title = metric
    shapes = []
    if observed is not None:
        shapes.append(
            {"type": "line", "x0": observed, "x1": observed, "yref": "paper", "y0": 0, "y1": 1,
             "line": {"color": COLORS[3], "dash": "dash", "width": 2}}
        )  # fmt: skip
        title = f"{metric}: observed {float(observed):.3g}"
        if rank is not None:
            title += f", percentile {float(rank):.1f}"
    layout = {
        "title": {"text": title, "font": {"size": 13}},
        "width": 370,
        "margin": {"l": 50, "r": 10, "t": 70, "b": 40},
        "shapes": shapes,
        "bargap": 0,
        "showlegend": False,
        "hovermode": "closest",
        "xaxis": {"tickformat": ".0%" if metric in ("max_drawdown", "cagr") else ""},
    }
    return page.figure(traces, layout, height=300)
