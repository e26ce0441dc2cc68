"""The self-contained HTML report of a run, a comparison of runs, and a sweep.

``build_report(run_dir)`` writes ``report.html`` into a run directory from its files
(``result.json`` and the Parquet tables): header, headline metrics (and the
benchmark's), equity with drawdown, prices with trades, trades, monthly returns,
rolling Sharpe and volatility, and the search, walk-forward, overfitting and Monte
Carlo sections the run has. ``build_comparison`` puts several runs side by side and
``build_sweep_report`` compares the jobs of a Hydra multirun. ``main`` is the command
line: ``python -m backtest.report PATH...``. ``load_result`` reads a run directory back
as a :class:`LoadedResult` whose ``plot()`` draws the report's figures in a notebook.

The figures are plotly figures: plotly.js is embedded once per page, so the file
opens from disk with no network, and each figure's data is JSON in the page.
"""

from __future__ import annotations

from backtest.report._build import build_report
from backtest.report._cli import main
from backtest.report._compare import build_comparison, build_sweep_report
from backtest.report._notebook import LoadedResult, load_result

__all__ = [
    "LoadedResult",
    "build_comparison",
    "build_report",
    "build_sweep_report",
    "load_result",
    "main",
]
