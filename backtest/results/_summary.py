"""The short table printed at the end of a run (and stored as the MLflow run's note).

Percent-like metrics print as percentages (``12.34%``), counts as integers and the
rest with three decimals, the same way in the run summary and in ``backtest compare``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

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
    rows += metric_rows(record)
    rows += currency_rows(record.get("capital"))
    rows += [(str(a), str(b)) for a, b in record.get("summary", [])]
    width = max(len(a) for a, _ in rows)
    lines = [f"{a:<{width}}  {b}" for a, b in rows]
    rule = "-" * max(len(line) for line in lines)
    return "\n".join([rule, *lines, rule])


def metric_rows(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The headline metrics; with a benchmark, its own value beside each of the book's.

    The relative metrics (alpha, beta, ...) have no benchmark value.

    >>> rec = {"metrics": {"cagr": 0.1, "beta": 0.5}, "benchmark_metrics": {"cagr": 0.07},
    ...        "benchmark_name": "SPY"}
    >>> [" ".join(r) for r in metric_rows(rec)]
    ['metric book    benchmark (SPY)', 'cagr 10.00%  7.00%', 'beta 0.500']
    """
    metrics = dict(record.get("metrics") or {})
    bench = record.get("benchmark_metrics") or {}
    if not bench:
        return [(k, format_value(k, v)) for k, v in metrics.items()]
    shown = {k: format_value(k, v) for k, v in metrics.items()}
    width = max([len("book"), *(len(v) for v in shown.values())]) + 2
    name = record.get("benchmark_name")
    rows = [("metric", f"{'book':<{width}}benchmark" + (f" ({name})" if name else ""))]
    for key, book in shown.items():
        other = bench.get(key)
        if other is None:
            rows.append((key, book))
        else:
            rows.append((key, f"{book:<{width}}{format_value(key, other)}"))
    return rows


def format_money(value: float) -> str:
    """An amount of the initial capital's currency, with thousands separators.

    >>> format_money(1234567.891), format_money(-50.0)
    ('1,234,567.89', '-50.00')
    """
    return f"{value:,.2f}"


def currency_rows(capital: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """The run in currency, when ``engine.initial_capital`` is set (``result.json``'s ``capital``).

    >>> rows = currency_rows({"initial_capital": 1e6, "final_equity": 1.1e6, "pnl": 1e5,
    ...                       "max_drawdown_value": 5e4, "max_drawdown_value_of_peak": 0.04})
    >>> [" ".join(r) for r in rows][1:]
    ['final equity 1,100,000.00 (+10.00%)', 'max drawdown (currency) 50,000.00 (4.00% of its peak)']
    """
    if not capital or capital.get("initial_capital") is None:
        return []
    start = float(capital["initial_capital"])
    rows = [("initial capital", format_money(start))]
    if capital.get("final_equity") is not None:
        end = float(capital["final_equity"])
        rows.append(("final equity", f"{format_money(end)} ({end / start - 1.0:+.2%})"))
    if capital.get("max_drawdown_value") is not None:
        dd = float(capital["max_drawdown_value"])
        frac = capital.get("max_drawdown_value_of_peak")
        tail = (
            f" ({frac:.2%} of its peak)"
            if isinstance(frac, int | float) and math.isfinite(frac)
            else ""
        )
        rows.append(("max drawdown (currency)", f"{format_money(dd)}{tail}"))
    return rows


def capital_section(growth: Sequence[float], initial_capital: float | None) -> dict[str, float]:
    """``result.json``'s ``capital``: the book in currency, when ``initial_capital`` is set.

    The metrics stay fractions (``total_return``, ``max_drawdown``); this holds the same
    run in the initial capital's currency beside them: ``initial_capital``,
    ``final_equity``, ``pnl``, ``max_drawdown_value`` (the largest fall from a peak, the
    initial capital counting as one, in currency, >= 0) and ``max_drawdown_value_of_peak``
    (that fall as a fraction of its peak; the fraction metric ``max_drawdown`` is the
    largest fall in percent, which may be another one).

    Args:
        growth: The equity curve as growth of 1 (``BacktestResult.equity``).
        initial_capital: ``engine.initial_capital``; ``None`` gives ``{}``.

    >>> capital_section([1.0, 1.2, 0.9, 1.1], 1000.0)["max_drawdown_value"]
    300.0
    """
    if initial_capital is None or len(growth) == 0:
        return {}
    value = np.asarray(growth, dtype=np.float64) * float(initial_capital)
    peak = np.maximum.accumulate(np.maximum(value, float(initial_capital)))
    fall = peak - value
    worst = int(np.argmax(fall))
    return {
        "initial_capital": float(initial_capital),
        "final_equity": float(value[-1]),
        "pnl": float(value[-1] - float(initial_capital)),
        "max_drawdown_value": float(fall[worst]),
        "max_drawdown_value_of_peak": float(fall[worst] / peak[worst]) if peak[worst] else 0.0,
    }
