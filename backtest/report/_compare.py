"""Several runs on one page: a comparison of run directories, and a sweep's jobs."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backtest import results
from backtest.errors import ResultCorrupt
from backtest.report._page import (
    COLORS,
    Page,
    cell,
    dates,
    note,
    num,
    scale_buttons,
    table,
    thin_positions,
)

MAX_OVERLAID = 12
MAX_JOB_ROWS = 500


def _label(stored: results.StoredResult, taken: set[str]) -> str:
    record = stored.record
    params = ", ".join(f"{k}={v}" for k, v in (record.get("params") or {}).items())
    label = f"{record.get('name', stored.path.name)} ({params})" if params else stored.path.name
    base, i = label, 2
    while label in taken:
        label, i = f"{base} #{i}", i + 1
    taken.add(label)
    return label


def _growth(equity: pd.DataFrame) -> pd.Series:
    """Equity as growth of one unit invested at the start."""
    eq = equity["equity"].astype(np.float64)
    start = float(eq.iloc[0]) / (1.0 + float(equity["returns"].fillna(0.0).iloc[0]))
    return eq / start


def _overlay(page: Page, curves: dict[str, pd.Series], title: str) -> str:
    traces = []
    longest = 0
    for i, (label, curve) in enumerate(curves.items()):
        pos = thin_positions(len(curve), curve.to_numpy())
        longest = max(longest, len(curve))
        traces.append(
            {"type": "scatter", "x": dates(curve.index[pos]), "y": num(curve.to_numpy()[pos]),
             "name": label, "line": {"width": 1.3, "color": COLORS[i % len(COLORS)]}}
        )  # fmt: skip
    layout = {
        "yaxis": {"title": {"text": title}, "type": "log"},
        "legend": {"orientation": "h", "y": -0.15},
        "updatemenus": scale_buttons(1.15, first="log"),
    }
    return page.figure(traces, layout, height=480)


def build_comparison(run_dirs: Sequence[str | Path], out_path: str | Path) -> Path:
    """Write a page comparing runs: metrics side by side, equity curves overlaid.

    Args:
        run_dirs: Complete run directories (two or more, any tasks).
        out_path: The HTML file to write (its folder is created).

    Returns:
        ``out_path``.

    Raises:
        ResultPathMissing: one of ``run_dirs`` holds no complete result (named).
    """
    stored = [results.load_result(d) for d in run_dirs]
    taken: set[str] = set()
    labels = [_label(s, taken) for s in stored]
    page = Page(
        title=f"Comparison of {len(stored)} runs",
        data={"kind": "comparison", "records": [s.record for s in stored], "labels": labels},
    )
    rows = [
        [label, s.record.get("task"), s.record.get("start"), s.record.get("end"), str(s.path)]
        for label, s in zip(labels, stored, strict=True)
    ]
    page.section(
        "header", "Runs", table(["run", "task", "start", "end", "run directory"], rows, key="runs")
    )
    names = list(dict.fromkeys(k for s in stored for k in s.metrics))
    body = "".join(
        f'<tr><td class="t">{_esc(name)}</td>'
        + "".join(_metric_cell(name, s.metrics.get(name)) for s in stored)
        + "</tr>"
        for name in names
    )
    head = "".join(f"<th>{_esc(c)}</th>" for c in ["metric", *labels])
    page.section(
        "metrics",
        "Metrics side by side",
        f'<div class="scroll"><table data-table="metrics"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>",
    )
    curves = {
        label: _growth(s.table("equity"))
        for label, s in zip(labels, stored, strict=True)
        if "equity" in s.tables
    }
    if curves:
        page.section(
            "equity",
            "Equity overlaid",
            _overlay(page, curves, "growth of 1"),
            note("Each run's equity divided by its starting capital (growth of one unit)."),
        )
    page.data["sections"] = [k for k, _, _ in page.sections]
    out = Path(out_path)
    results.atomic_write_bytes(out, page.render().encode())
    return out


def _esc(text: Any) -> str:
    import html

    return html.escape(str(text))


def _metric_cell(name: str, value: Any) -> str:
    return cell(name, value, exact=True)


def build_sweep_report(sweep_dir: str | Path) -> Path:
    """Write ``<sweep_dir>/report.html`` comparing the jobs of a Hydra multirun.

    The jobs table is sorted best objective first (as ``summary.csv``), the parallel
    coordinates show each job's parameters coloured by its objective, and the best
    jobs' equity curves are overlaid.

    Args:
        sweep_dir: The multirun directory (``hydra.sweep.dir``).

    Returns:
        The path of ``report.html``.
    """
    from backtest.results._sweep_table import summarize_sweep

    sweep_dir = Path(sweep_dir)
    summary = summarize_sweep(sweep_dir)
    ok = summary[summary["status"] == "ok"] if len(summary) else summary
    metric, direction = _objective_name(ok)
    page = Page(
        title=f"Sweep {sweep_dir.name}: {len(summary)} jobs",
        data={
            "kind": "sweep",
            "jobs": json.loads(summary.head(MAX_JOB_ROWS).to_json(orient="records")),
        },
    )
    params = [c for c in summary.columns if c.startswith("param.")]
    columns = ["job", "status", "objective", *params, "overrides"]
    columns += [c for c in summary.columns if c not in columns and c not in ("task", "run_dir")]
    shown = summary.head(MAX_JOB_ROWS)
    rows = [[_plain(v) for v in row] for row in shown[columns].itertuples(index=False)]
    page.section(
        "jobs",
        f"Jobs, best {metric} first ({direction})",
        f'<div class="scroll">{table(columns, rows, key="jobs")}</div>',
        note(
            "Click a header to sort; summary.csv beside this page holds the same table"
            + (
                f" (the page shows the best {MAX_JOB_ROWS})."
                if len(summary) > MAX_JOB_ROWS
                else "."
            )
        ),
    )
    varying = [p for p in params if len(set(map(str, ok[p]))) > 1]  # a constant gets no axis
    if len(ok) and varying:
        page.section("params", "Parameters vs objective", _params_view(page, ok, varying, metric))
    curves = {}
    unread = []
    for _, row in ok.head(MAX_OVERLAID).iterrows():
        label = ", ".join(f"{p.removeprefix('param.')}={_plain(row[p])}" for p in varying)
        try:
            stored = results.load_result(row["run_dir"])
            if "equity" in stored.tables:
                curves[label or f"job {row['job']}"] = _growth(stored.table("equity"))
        except ResultCorrupt as exc:  # damaged inside a sound footer: named, the rest drawn
            unread.append(f"job {row['job']}: {exc}")
    if unread:
        page.section("skipped", "Runs skipped", note("; ".join(unread)))
    if curves:
        page.section(
            "equity",
            f"Equity of the best {len(curves)} jobs",
            _overlay(page, curves, "growth of 1"),
        )
    page.data["sections"] = [k for k, _, _ in page.sections]
    path = sweep_dir / results.REPORT_FILE
    results.atomic_write_bytes(path, page.render().encode())
    return path


def _objective_name(ok: pd.DataFrame) -> tuple[str, str]:
    for run_dir in ok.get("run_dir", pd.Series(dtype=str)).head(1):
        record = results.load_result(run_dir).record
        section = record.get("search") or record.get("walkforward") or {}
        return str(section.get("metric", "objective")), str(section.get("direction", "maximize"))
    return "objective", "maximize"


def _params_view(page: Page, ok: pd.DataFrame, params: list[str], metric: str) -> str:
    objective = ok["objective"].to_numpy(dtype=np.float64)
    if len(params) == 1:
        p = params[0]
        trace = {"type": "scatter", "mode": "markers", "x": _axis_values(ok[p])[0],
                 "y": num(objective), "text": [f"job {j}" for j in ok["job"]],
                 "marker": {"size": 9, "color": COLORS[0]}}  # fmt: skip
        layout = {
            "xaxis": {"title": {"text": p.removeprefix("param.")}},
            "yaxis": {"title": {"text": metric}},
            "hovermode": "closest",
        }
        return page.figure([trace], layout, height=380)
    dims = []
    for p in params:
        values, ticks = _axis_values(ok[p])
        dim: dict[str, Any] = {"label": p.removeprefix("param."), "values": values}
        if ticks:
            dim["tickvals"] = list(range(len(ticks)))
            dim["ticktext"] = ticks
        dims.append(dim)
    dims.append({"label": metric, "values": num(objective)})
    finite = objective[np.isfinite(objective)]
    trace = {
        "type": "parcoords",
        "dimensions": dims,
        "line": {
            "color": num(np.where(np.isfinite(objective), objective, np.nan)),
            "colorscale": "Viridis",
            "showscale": True,
            "cmin": float(finite.min()) if len(finite) else 0,
            "cmax": float(finite.max()) if len(finite) else 1,
        },
    }
    return page.figure([trace], {"margin": {"l": 60, "r": 60, "t": 60, "b": 30}}, height=420) + (
        note("One line per job; drag along an axis to select a range.")
    )


def _axis_values(col: pd.Series) -> tuple[list[Any], list[str]]:
    """Numeric values as they are; others as category codes with their labels."""
    if pd.api.types.is_numeric_dtype(col):
        return num(col.to_numpy(dtype=np.float64)), []
    labels = sorted({str(v) for v in col})
    return [labels.index(str(v)) for v in col], labels


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
