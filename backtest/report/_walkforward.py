"""Walk-forward: fold windows, parameters per fold, IS vs OOS, efficiency, stability."""

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
    table,
    thin_positions,
)

_MS_PER_DAY = 86_400_000
WINDOW_COLUMNS = frozenset({"train_start", "train_end", "test_start", "test_end"})


def walkforward_section(
    page: Page, record: Mapping[str, Any], folds: pd.DataFrame, equity: pd.Series | None = None
) -> None:
    """Everything a walk-forward adds to the headline (stitched out-of-sample) result."""
    wf = record.get("walkforward") or {}
    metric = str(wf.get("metric", "sharpe_ratio"))
    searched = [*(wf.get("last_params") or {}), *(record.get("params") or {})]
    params = [p for p in dict.fromkeys(searched) if p in folds.columns]  # chosen per fold
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
    if equity is not None or set(folds.columns) >= WINDOW_COLUMNS:
        parts.append(page.add(walkforward_figure(equity, folds)))
    parts.append(_scores(page, folds, metric))
    # the chosen parameters first, next to the fold number: what a reader looks for
    columns = ["fold"] if "fold" in folds.columns else []
    columns += params
    columns += [
        c
        for c in ["train_start", "train_end", "test_start", "test_end", "test_groups"]
        if c in folds.columns
    ]
    columns += [
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


def walkforward_figure(equity: pd.Series | None, folds: pd.DataFrame) -> dict[str, Any]:
    """The stitched out-of-sample equity over each fold's train and test windows (dates).

    Args:
        equity: The stitched out-of-sample equity (growth of 1) on its date index.
        folds: The folds table: ``fold`` and ``train_start``, ``train_end``, ``test_start``,
            ``test_end`` (the windows are drawn when it has them).

    Returns:
        The figure: a ``stitched out-of-sample equity`` line, then ``train`` and ``test``
        horizontal bars (one per fold) on the same date axis.
    """
    traces: list[dict[str, Any]] = []
    has_windows = set(folds.columns) >= WINDOW_COLUMNS
    if equity is not None and len(equity):
        eq = equity.astype(np.float64)
        pos = thin_positions(len(eq), (eq / eq.cummax()).to_numpy())
        traces.append(
            {"type": "scatter", "x": dates(eq.index[pos]), "y": num(eq.to_numpy()[pos]),
             "name": "stitched out-of-sample equity", "line": {"color": "#111827", "width": 1.5}}
        )  # fmt: skip
    if has_windows:
        labels = [f"fold {int(f)}" for f in folds["fold"]]
        for kind, color in (("train", COLORS[0]), ("test", COLORS[1])):
            start = pd.to_datetime(folds[f"{kind}_start"])
            end = pd.to_datetime(folds[f"{kind}_end"])
            width = ((end - start) / pd.Timedelta(milliseconds=1)).to_numpy(dtype=np.float64)
            traces.append(
                {"type": "bar", "orientation": "h", "name": kind, "y": labels,
                 "base": dates(start), "x": num(width + _MS_PER_DAY, 12), "yaxis": "y2",
                 "marker": {"color": color}, "hoverinfo": "name+y"}
            )  # fmt: skip
    split = bool(traces) and traces[0]["type"] == "scatter" and has_windows
    n_folds = len(folds) if has_windows else 0
    layout: dict[str, Any] = {
        "barmode": "overlay",
        "xaxis": {"type": "date", "anchor": "y2" if has_windows else "y"},
        "yaxis": {"domain": [0.45, 1.0] if split else [0.0, 1.0],
                  "title": {"text": "out-of-sample equity"}},
        "hovermode": "closest",
    }  # fmt: skip
    if has_windows:
        layout["yaxis2"] = {
            "domain": [0.0, 0.38] if split else [0.0, 1.0],
            "autorange": "reversed",
            "type": "category",
        }
    height = 300 + (max(120, 22 * n_folds) if split else 0)
    return figure_spec(traces, layout, height=height)


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
