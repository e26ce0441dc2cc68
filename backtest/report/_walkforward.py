"""Walk-forward: fold windows, parameters per fold, IS vs OOS, efficiency, stability."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from backtest.report._page import COLORS, Page, dates, key_values, note, num, table

_MS_PER_DAY = 86_400_000


def walkforward_section(page: Page, record: Mapping[str, Any], folds: pd.DataFrame) -> None:
    """Everything a walk-forward adds to the headline (stitched out-of-sample) result."""
    wf = record.get("walkforward") or {}
    metric = str(wf.get("metric", "sharpe_ratio"))
    params = [p for p in (record.get("params") or {}) if p in folds.columns]
    parts = [
        key_values(
            [
                ("splitter", wf.get("splitter")),
                ("folds", wf.get("n_folds", len(folds))),
                ("metric", f"{metric} ({wf.get('direction', 'maximize')})"),
                ("walk-forward efficiency (CAGR)", wf.get("efficiency")),
                ("walk-forward efficiency (Sharpe)", wf.get("sharpe_efficiency")),
            ],
            key="walkforward",
        ),
        note(
            "Walk-forward efficiency: out-of-sample performance over in-sample performance "
            "(near 1: the chosen parameters kept their edge on unseen data). The equity "
            "curve above is the stitched out-of-sample equity: each fold's test window "
            "traded with the parameters chosen on its train window."
        ),
    ]
    if {"train_start", "train_end", "test_start", "test_end"} <= set(folds.columns):
        parts.append(_windows(page, folds))
    parts.append(_scores(page, folds, metric))
    columns = [
        c
        for c in ["fold", "train_start", "train_end", "test_start", "test_end", "test_groups"]
        if c in folds.columns
    ]
    columns += params + [
        c for c in ("n_trials", "is_score", f"oos_{metric}", "is_dsr", "pbo") if c in folds.columns
    ]
    columns += [c for c in folds.columns if c.startswith("oos_") and c not in columns]
    rows = [[_plain(v) for v in row] for row in folds[columns].itertuples(index=False)]
    parts.append("<h3>Folds: chosen parameters, in-sample and out-of-sample scores</h3>")
    parts.append(f'<div class="scroll">{table(columns, rows, key="folds")}</div>')
    stability = wf.get("stability") or {}
    if stability:
        rows = [
            [
                name,
                s.get("mode"),
                s.get("mode_share"),
                s.get("change_rate"),
                s.get("relative_step"),
                ", ".join(f"{k}: {v}" for k, v in (s.get("counts") or {}).items()),
            ]
            for name, s in stability.items()
        ]
        parts.append("<h3>Parameter stability</h3>")
        parts.append(
            table(
                ["parameter", "most chosen", "share", "change rate", "relative step", "counts"],
                rows,
                key="stability",
            )
        )
        parts.append(
            note(
                "Stable parameters are chosen in most folds (high share) and change rarely "
                "and by small steps between consecutive folds."
            )
        )
    page.section("walkforward", "Walk-forward", *parts)


def _windows(page: Page, folds: pd.DataFrame) -> str:
    """Train and test windows per fold as horizontal bars on a date axis."""
    traces: list[dict[str, Any]] = []
    labels = [f"fold {int(f)}" for f in folds["fold"]]
    for kind, color in (("train", COLORS[0]), ("test", COLORS[1])):
        start = pd.to_datetime(folds[f"{kind}_start"])
        end = pd.to_datetime(folds[f"{kind}_end"])
        width = ((end - start) / pd.Timedelta(milliseconds=1)).to_numpy(dtype=np.float64)
        traces.append(
            {"type": "bar", "orientation": "h", "name": kind, "y": labels,
             "base": dates(start), "x": num(width + _MS_PER_DAY, 12),
             "marker": {"color": color}, "hoverinfo": "name+y"}
        )  # fmt: skip
    layout = {
        "barmode": "overlay",
        "xaxis": {"type": "date"},
        "yaxis": {"autorange": "reversed", "type": "category"},
        "hovermode": "closest",
    }
    return page.figure(traces, layout, height=max(200, 34 * len(folds) + 90))


def _scores(page: Page, folds: pd.DataFrame, metric: str) -> str:
    labels = [f"fold {int(f)}" for f in folds["fold"]]
    traces = [
        {"type": "bar", "name": f"in-sample {metric}", "x": labels, "y": num(folds["is_score"]),
         "marker": {"color": COLORS[0]}},
    ]  # fmt: skip
    if f"oos_{metric}" in folds.columns:
        traces.append(
            {"type": "bar", "name": f"out-of-sample {metric}", "x": labels,
             "y": num(folds[f"oos_{metric}"]), "marker": {"color": COLORS[1]}}
        )  # fmt: skip
    layout = {"barmode": "group", "yaxis": {"title": {"text": metric}}, "hovermode": "closest"}
    return page.figure(traces, layout, height=320)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
