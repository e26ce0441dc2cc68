"""How a result shows itself in a notebook: a one-line ``repr`` and a compact HTML summary.

Values in, text out: the result classes (engine, search, walk-forward, Monte Carlo) and
:class:`~backtest.report._loaded.LoadedResult` pass their numbers here, so the line a
notebook cell ends with reads like the CLI's summary and the HTML holds the tables the
report shows, formatted the same way (:func:`~backtest.report._page.fmt`: percentages
for returns and drawdowns, counts as integers, three decimals for the rest).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from backtest.report._page import fmt, key_values, table
from backtest.report._summary import metrics_table

#: The figures of the one-line ``repr``: (metric, label).
HEADLINE = (("sharpe_ratio", "Sharpe"), ("total_return", "total return"),
            ("max_drawdown", "max drawdown"))  # fmt: skip
#: Rows of the top-trials and folds tables shown in a notebook (the report shows more).
TOP_ROWS = 5
_STYLE = "font-size:12px"


def params_text(params: Mapping[str, Any]) -> str:
    """``fast=10, slow=50``: parameters as the CLI prints them."""
    return ", ".join(f"{k}={_plain(v)}" for k, v in params.items())


def headline(metrics: Mapping[str, Any], prefix: str = "", note: str = "") -> str:
    """``Sharpe 0.463, total return 68.05%, max drawdown 25.05%`` from a metrics mapping.

    ``prefix`` goes before the first figure (``out-of-sample ``), ``note`` after it.
    """
    parts = [f"{label} {fmt(name, _value(metrics.get(name)))}" for name, label in HEADLINE]
    parts[0] = prefix + parts[0] + note
    return ", ".join(parts)


def count(n: Any, noun: str) -> str:
    """``71 trades``; ``1 trade``."""
    value = int(n) if n is not None and _finite(n) else None
    if value is None:
        return f"n/a {noun}s"
    return f"{value:,} {noun}{'' if value == 1 else 's'}"


def span(index: Sequence[Any] | pd.Index | None) -> str:
    """``2008-01-02..2018-12-31`` of a date index, or nothing."""
    if index is None or len(index) == 0 or not isinstance(index, pd.DatetimeIndex):
        return ""
    return f"{fmt('', index[0])}..{fmt('', index[-1])}"


def line(kind: str, label: str, *parts: str) -> str:
    """``<Kind label: part, part, ...>``: the one-line ``repr``."""
    body = ", ".join(p for p in parts if p)
    return f"<{kind} {label}: {body}>" if label else f"<{kind}: {body}>"


def block(title: str, *parts: str) -> str:
    """The HTML of a result: its one line as a heading, then its tables."""
    head = f"<p style='margin:2px 0'><b>{html.escape(title)}</b></p>"
    return f"<div style='{_STYLE}'>{head}{''.join(p for p in parts if p)}</div>"


def metrics_html(metrics: Mapping[str, Any], benchmark: Mapping[str, Any] | None = None) -> str:
    """The report's headline metrics table (the benchmark's column when there is one)."""
    return metrics_table(metrics, benchmark or {})


def facts_html(pairs: Iterable[tuple[str, Any]], key: str) -> str:
    """A two-column table of labels and values, as the report's section facts."""
    return key_values([(k, _plain(v)) for k, v in pairs], key=key)


def frame_html(frame: pd.DataFrame, key: str, names: Sequence[str] | None = None) -> str:
    """A few rows of a table (``TOP_ROWS`` at most), formatted by column name."""
    shown = frame.head(TOP_ROWS)
    rows = [[_plain(v) for v in row] for row in shown.itertuples(index=False)]
    return table(list(shown.columns), rows, sortable=False, names=names, key=key)


def _value(value: Any) -> Any:
    return None if value is None or not _finite(value) else float(value)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# --- one function pair per kind of result: its line and its HTML ------------------------


def backtest_line(
    params: Mapping[str, Any], metrics: Mapping[str, Any], index: pd.Index | None
) -> str:
    """``<BacktestResult fast=10, slow=50: Sharpe ..., 71 trades, 2,769 bars 2008..2018>``."""
    bars = f"{len(index):,} bars {span(index)}".strip() if index is not None else ""
    return line("BacktestResult", params_text(params), headline(metrics),
                count(metrics.get("n_trades"), "trade"), bars)  # fmt: skip


def backtest_html(
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    benchmark: Mapping[str, Any] | None,
    index: pd.Index | None,
) -> str:
    """The one line, then the report's headline metrics table."""
    return block(backtest_line(params, metrics, index), metrics_html(metrics, benchmark))


def search_line(
    method: str,
    param_names: Sequence[str],
    best_params: Mapping[str, Any],
    best_metrics: Mapping[str, Any],
    metric: str,
    n_trials: int,
    n_failed: int,
) -> str:
    """``<SearchResult grid over fast, slow: best fast=10, slow=50, sharpe_ratio ...>``."""
    score = fmt(metric, _value(best_metrics.get(metric)))
    best = f"best {params_text(best_params)}"
    trials = f"{count(n_trials, 'trial')} ({n_failed:,} failed)"
    label = f"{method} over {', '.join(param_names)}"
    shown = "" if metric in dict(HEADLINE) else f"{metric} {score}"
    return line("SearchResult", label, best, shown, headline(best_metrics), trials)


def search_html(
    title: str, facts: Iterable[tuple[str, Any]], top: pd.DataFrame, metric: str
) -> str:
    """The one line, the report's search facts and the top trials (``TOP_ROWS``)."""
    return block(
        title,
        facts_html(facts, key="search"),
        f"<p style='margin:2px 0'>Top {min(TOP_ROWS, len(top))} trials by {html.escape(metric)}"
        "</p>",
        frame_html(top, key="top_trials"),
    )


def walkforward_line(
    splitter: str,
    n_folds: int,
    n_trials: int,
    metrics: Mapping[str, Any],
    efficiency: float,
    last_params: Mapping[str, Any],
    index: pd.Index | None,
) -> str:
    """``<WalkForwardResult rolling, 5 folds: last lookback=63, out-of-sample Sharpe ...>``."""
    return line(
        "WalkForwardResult",
        f"{splitter}, {count(n_folds, 'fold')}",
        f"last {params_text(last_params)}",
        headline(metrics, prefix="out-of-sample "),
        f"efficiency {fmt('efficiency', _value(efficiency))}",
        count(n_trials, "trial"),
        span(index),
    )


def walkforward_html(
    title: str,
    facts: Iterable[tuple[str, Any]],
    metrics: Mapping[str, Any],
    folds: pd.DataFrame,
    param_names: Sequence[str],
    metric: str,
) -> str:
    """The one line, the report's walk-forward facts, the folds and the OOS metrics."""
    columns = [c for c in ("fold", "test_start", "test_end", "test_groups") if c in folds.columns]
    columns += [p for p in param_names if p in folds.columns]
    columns += [c for c in ("is_score", f"oos_{metric}") if c in folds.columns]
    shown = folds[columns]
    rows = [[_plain(v) for v in row] for row in shown.itertuples(index=False)]
    return block(
        title,
        facts_html(facts, key="walkforward"),
        table(columns, rows, sortable=False, key="folds"),
        metrics_html(metrics),
    )


def montecarlo_line(
    method: str,
    n_paths: int,
    horizon: int,
    unit: str,
    observed: Mapping[str, Any],
    ranks: Mapping[str, Any],
    prob_loss: float,
    prob_ruin: float,
) -> str:
    """``<MonteCarloReport stationary_bootstrap, 500 paths of 2,769 bars: observed ...>``."""
    rank = ranks.get("sharpe_ratio")
    where = f" (percentile {float(rank):.1f})" if rank is not None and _finite(rank) else ""
    return line(
        "MonteCarloReport",
        f"{method}, {count(n_paths, 'path')} of {count(horizon, unit)}",
        headline(observed, prefix="observed ", note=where),
        f"P(loss) {fmt('prob_loss', _value(prob_loss))}",
        f"P(ruin) {fmt('prob_ruin', _value(prob_ruin))}",
    )


def montecarlo_html(title: str, facts: Iterable[tuple[str, Any]], summary: pd.DataFrame) -> str:
    """The one line, the report's Monte Carlo facts and the per-metric summary.

    Args:
        title: The one line.
        facts: Method, paths, probabilities, ...
        summary: One row per metric (index: the metric): observed, mean, percentiles,
            percentile rank, p-value.
    """
    columns = ["metric", *[str(c) for c in summary.columns]]
    rows = []
    for name, row in summary.iterrows():
        rows.append(
            f'<tr><td class="t">{html.escape(str(name))}</td>'
            + "".join(
                f"<td>{html.escape(fmt(_unit(str(name), str(c)), _value(v)))}</td>"
                for c, v in row.items()
            )
            + "</tr>"
        )
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = (
        f'<table data-table="montecarlo_summary"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return block(title, facts_html(facts, key="montecarlo"), body)


def _unit(metric: str, column: str) -> str:
    """The name a summary cell is formatted by: its metric's, plain for ranks and p-values."""
    return column if column in ("percentile_rank", "p_value") else metric


def loaded_line(path: str, record: Mapping[str, Any]) -> str:
    """``<LoadedResult outputs/... (search): fast=10, slow=50: Sharpe ..., 71 trades, ...>``."""
    metrics = record.get("metrics") or {}
    bars = record.get("n_bars")
    when = f"{record.get('start')}..{record.get('end')}" if record.get("start") else ""
    extra = []
    if record.get("search"):
        extra.append(count(record["search"].get("n_trials"), "trial"))
    if record.get("walkforward"):
        extra.append(count(record["walkforward"].get("n_folds"), "fold"))
    if record.get("montecarlo"):
        extra.append(count(record["montecarlo"].get("n_paths"), "Monte Carlo path"))
    return line(
        "LoadedResult",
        f"{path} ({record.get('task', 'run')}) {params_text(record.get('params') or {})}".strip(),
        headline(metrics),
        count(metrics.get("n_trades"), "trade") if "n_trades" in metrics else "",
        *extra,
        f"{count(bars, 'bar')} {when}".strip() if bars else "",
    )
