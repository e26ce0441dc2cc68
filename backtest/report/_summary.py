"""Header (what was run, on what data, from which code) and the headline metrics table."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from backtest.report._page import Page, cell, key_values, note

# Metrics that compare the strategy with its benchmark: they have no benchmark column.
RELATIVE_METRICS = ("alpha", "beta", "information_ratio", "tracking_error", "excess_return")


def header(page: Page, record: Mapping[str, Any]) -> None:
    """Experiment, task, data, parameters, config hash, seed, version, git commit."""
    params = record.get("params") or {}
    symbols = [str(s) for s in record.get("symbols") or []]
    shown = ", ".join(symbols[:12]) + (
        f" and {len(symbols) - 12} more" if len(symbols) > 12 else ""
    )
    run = [
        ("experiment", record.get("name")),
        ("task", record.get("task")),
        ("job id", record.get("job_id")),
        ("started", record.get("started_at")),
        ("ended", record.get("ended_at")),
    ]
    data = [
        ("symbols", shown or "-"),
        ("dates", f"{record['start']} to {record.get('end')}" if record.get("start") else "-"),
        ("bars", record.get("n_bars")),
        ("data fingerprint", record.get("data_fingerprint")),
    ]
    code = [
        ("config hash", record.get("config_hash")),
        ("seed", record.get("seed")),
        ("version", record.get("version")),
        ("git commit", record.get("git_commit") or "not a git checkout"),
    ]
    page.section(
        "header",
        "Run",
        '<div class="cols">',
        key_values(run, key="run"),
        key_values(data, key="data"),
        key_values(code, key="code"),
        key_values(list(params.items()) or [("params", "-")], key="params"),
        "</div>",
    )


def benchmark_metrics(
    record: Mapping[str, Any], equity: pd.DataFrame | None, periods_per_year: int
) -> dict[str, Any]:
    """The benchmark's own metrics: from ``result.json`` when it has them, else computed.

    ``result.json`` may hold them under ``benchmark_metrics`` or ``benchmark.metrics``;
    otherwise they are computed from the ``benchmark`` column of ``equity.parquet``
    (an equity curve, or per-bar returns) with the same metric functions as the run's.
    """
    found = record.get("benchmark_metrics")
    if not isinstance(found, Mapping):
        section = record.get("benchmark")
        found = section.get("metrics") if isinstance(section, Mapping) else None
    if isinstance(found, Mapping) and found:
        return dict(found)
    returns = benchmark_returns(equity)
    if returns is None:
        return {}
    from backtest.metrics import return_metrics

    return dict(return_metrics(returns, periods_per_year=periods_per_year))


def benchmark_returns(equity: pd.DataFrame | None) -> pd.Series | None:
    """Per-bar benchmark returns from the ``benchmark`` column of the equity table, if any.

    The column is read as an equity curve when it is positive and of the order of
    its first value (prices or growth of one unit), else as per-bar returns.
    """
    if equity is None or "benchmark" not in equity.columns:
        return None
    col = pd.to_numeric(equity["benchmark"], errors="coerce").dropna()
    if len(col) < 2:
        return None
    is_curve = bool((col > 0).all() and col.abs().median() > 0.2)
    returns = col.pct_change().fillna(0.0) if is_curve else col
    return returns.astype(np.float64)


def benchmark_curve(equity: pd.DataFrame) -> pd.Series | None:
    """The benchmark as an equity curve starting where the strategy's starts."""
    returns = benchmark_returns(equity)
    if returns is None:
        return None
    start = float(equity["equity"].iloc[0]) / (1.0 + float(equity["returns"].iloc[0] or 0.0))
    return start * (1.0 + returns).cumprod()


def metrics_table(
    metrics: Mapping[str, Any], bench: Mapping[str, Any], bench_name: str | None = None
) -> str:
    """The headline metrics table: one row per metric, the benchmark's column when given."""
    label = f"benchmark ({bench_name})" if bench_name else "benchmark"
    columns = ["metric", "strategy", *([label] if bench else [])]
    rows = []
    for name, value in metrics.items():
        cells = cell(name, value, exact=True)
        if bench:
            other = None if name in RELATIVE_METRICS else bench.get(name)
            cells += cell(name, other, exact=True)
        rows.append(f'<tr><td class="t">{html.escape(name)}</td>{cells}</tr>')
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    return (
        f'<table data-table="metrics"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def metrics_section(page: Page, record: Mapping[str, Any], bench: Mapping[str, Any]) -> None:
    """The headline metrics, the benchmark's beside them when there is one."""
    metrics = dict(record.get("metrics") or {})
    if not metrics:
        return
    body = metrics_table(metrics, bench, record.get("benchmark_name"))
    extra = []
    if record.get("objective") is not None:
        search = record.get("search") or record.get("walkforward") or {}
        extra.append(
            note(
                f"objective ({search.get('metric', 'configured metric')}): "
                f"{record['objective']:.4g}"
            )
        )
    capital = record.get("capital")
    if isinstance(capital, Mapping) and capital:
        from backtest.results._summary import currency_rows

        extra.append(
            note("In currency: " + "; ".join(f"{k} {v}" for k, v in currency_rows(capital)))
        )
    page.section("metrics", "Headline metrics", body, *extra)
