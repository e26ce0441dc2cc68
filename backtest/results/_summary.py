"""The short table printed at the end of a run (and stored as the MLflow run's note).

Percent-like metrics print as percentages (``12.34%``), counts as integers and the
rest with three decimals, the same way in the run summary and in ``backtest compare``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: Metrics read as percentages everywhere they are shown (summary, report, figures, compare):
#: returns, alpha, tracking error, drawdowns, rates; costs (``cost_*``, fractions of the
#: initial capital) too. Ratios (Sharpe, beta, information ratio) stay plain numbers.
PERCENT_METRICS = frozenset(
    {
        "total_return",
        "cagr",
        "annual_volatility",
        "max_drawdown",
        "win_rate",
        "exposure",
        "alpha",
        "excess_return",
        "tracking_error",
    }
)


def is_percent(name: str) -> bool:
    """Whether a metric (or a ``benchmark_`` one, or a cost) is shown as a percentage.

    >>> [is_percent(k) for k in ("alpha", "cost_fees", "benchmark_cagr", "beta")]
    [True, True, True, False]
    """
    return name.removeprefix("benchmark_") in PERCENT_METRICS or name.startswith("cost_")


def format_value(name: str, value: Any) -> str:
    """One metric as printed: ``n/a`` for undefined, percentages for returns and drawdowns.

    >>> [format_value(k, v) for k, v in [("max_drawdown", 0.1234), ("sharpe_ratio", 1.5)]]
    ['12.34%', '1.500']
    >>> format_value("cagr", None)
    'n/a'
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        if is_percent(name):
            return f"{value:.2%}"
        if name == "n_trades":
            return f"{value:.0f}"
        return f"{value:.3f}"
    return str(value)


def format_summary(record: Mapping[str, Any]) -> str:
    """The short table printed at the end of a run, from its ``result.json`` record."""
    rows: list[tuple[str, str]] = [
        ("experiment", str(record.get("name"))),
        ("task", str(record.get("task"))),
        (
            "data",
            f"{record.get('n_bars')} bars, {len(record.get('symbols', []))} assets, "
            f"{record.get('start')} to {record.get('end')}",
        ),
        ("params", ", ".join(f"{k}={v}" for k, v in record.get("params", {}).items()) or "-"),
    ]
    if record.get("periods_per_year") is not None:
        rows.append(("periods_per_year", f"{record['periods_per_year']:g}"))
    rows += [(k, format_value(k, v)) for k, v in record.get("metrics", {}).items()]
    rows += [(str(a), str(b)) for a, b in record.get("summary", [])]
    width = max(len(a) for a, _ in rows)
    lines = [f"{a:<{width}}  {b}" for a, b in rows]
    rule = "-" * max(len(line) for line in lines)
    return "\n".join([rule, *lines, rule])
