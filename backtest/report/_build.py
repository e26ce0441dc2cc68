"""``build_report``: the report of one run directory, from its files only."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from backtest import results
from backtest.report import _bundle, _montecarlo, _performance, _search, _summary, _walkforward
from backtest.report._page import Page


def periods_per_year(stored: results.StoredResult) -> int:
    """Bars per year of the run.

    ``result.json``'s (the engine's, inferred from the index when unset), else its
    config's ``engine.periods_per_year``, else 252.
    """
    if stored.record.get("periods_per_year"):
        return max(1, round(float(stored.record["periods_per_year"])))
    mc = stored.record.get("montecarlo") or {}
    if mc.get("periods_per_year"):
        return int(mc["periods_per_year"])
    config = stored.path / results.CONFIG_FILE
    if config.is_file():
        import yaml

        try:
            loaded = yaml.safe_load(config.read_text()) or {}
            value = (loaded.get("engine") or {}).get("periods_per_year")
            if value:
                return int(value)
        except (yaml.YAMLError, TypeError, ValueError, AttributeError):
            pass
    return 252


def _table(stored: results.StoredResult, name: str) -> pd.DataFrame | None:
    return stored.table(name) if name in stored.tables else None


def page_for(stored: results.StoredResult) -> Page:
    """The report page of a stored result, section by section (only what the run has)."""
    record = stored.record
    title = f"{record.get('name', 'backtest')}: {record.get('task', 'run')}"
    page = Page(title=title, data={"kind": "run", "record": record})
    ppy = periods_per_year(stored)
    equity = _table(stored, "equity")
    trades = _table(stored, "trades")
    trades = trades if trades is not None else pd.DataFrame()
    _summary.header(page, record)
    _summary.metrics_section(page, record, _summary.benchmark_metrics(record, equity, ppy))
    if equity is not None and len(equity):
        title = (
            "Stitched out-of-sample equity and drawdown"
            if record.get("task") == "walkforward"
            else "Equity and drawdown"
        )
        _performance.equity_section(page, equity, title, trades)
    prices = _table(stored, results.PRICES_TABLE)
    if prices is not None:
        _performance.price_section(page, prices, trades)
    _performance.trades_section(page, trades)
    if equity is not None and len(equity):
        _performance.monthly_section(page, equity["returns"])
        _performance.rolling_section(page, equity["returns"], ppy)
    trials = _table(stored, "trials")
    if record.get("search") and trials is not None:
        _search.search_section(page, record, trials)
    folds = _table(stored, "folds")
    if record.get("walkforward") and folds is not None:
        wf_equity = equity["equity"] if equity is not None and len(equity) else None
        _walkforward.walkforward_section(page, record, folds, wf_equity)
    _search.overfitting_section(page, record)
    if record.get("montecarlo"):
        mc_tables: dict[str, pd.DataFrame] = {
            name: stored.table(name)
            for name in ("montecarlo_fan", "montecarlo_paths")
            if name in stored.tables
        }
        index = equity.index if equity is not None and len(equity) else None
        _montecarlo.montecarlo_section(page, record, mc_tables, index)
    page.data["sections"] = [key for key, _, _ in page.sections]
    return page


def build_report(run_dir: str | Path) -> Path:
    """Write ``<run_dir>/report.html``, the self-contained report of a run directory.

    The page is built from the files only (``result.json`` and the Parquet tables),
    so it can be rebuilt at any time; it opens from disk with no network (plotly.js
    and the data are embedded). A job of a Hydra multirun loads plotly.js from one
    file its sweep's jobs share, beside them in the sweep directory (written by the
    first job's report; see :mod:`backtest.report._bundle`).

    Args:
        run_dir: A complete run directory (or its ``result.json``).

    Returns:
        The path of ``report.html``.

    Raises:
        ResultPathMissing: no complete result at ``run_dir``.
    """
    started = time.perf_counter()
    stored = results.load_result(run_dir)
    page = page_for(stored)
    text = page.render(bundle_src=_bundle.shared_src(stored.path, page.trace_types()))
    path = stored.path / results.REPORT_FILE
    results.atomic_write_bytes(path, text.encode())
    _log_built(path, time.perf_counter() - started)
    return path


def write_page(stored: results.StoredResult, path: str | Path) -> Path:
    """Write the report page of a stored result to ``path`` (a ``.html`` file); its path."""
    started = time.perf_counter()
    path = Path(path)
    results.atomic_write_bytes(path, page_for(stored).render().encode())
    _log_built(path, time.perf_counter() - started)
    return path


def _log_built(path: Path, seconds: float) -> None:
    import logging

    logging.getLogger("backtest.report").info(
        "report written: %s (%.0f KB, %.2f s)", path, path.stat().st_size / 1024, seconds
    )
