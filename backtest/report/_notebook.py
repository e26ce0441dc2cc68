"""Results in a notebook: a report from a live result, and a stored run that plots itself.

``write_report(task, record, tables, path)`` writes what a result holds as a run
directory (``result.json`` and the Parquet tables, :mod:`backtest.results`) and builds
its ``report.html`` with the code the CLI uses; the result classes call it from their
``report()``, passing values. :func:`load_result` reads a run directory back as a
:class:`LoadedResult`: the stored result with the live results' ``plot()``, ``report()``
and notebook display, drawn by the same figure functions from the stored tables.
"""

from __future__ import annotations

import datetime
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from backtest import results
from backtest.errors import ConfigError
from backtest.report import _display, _montecarlo, _page, _performance, _search, _walkforward

#: Where ``report()`` of a live result writes its run directory when no path is given.
NOTEBOOK_DIR = Path("outputs") / "notebook"
KINDS = ("backtest", "search", "walkforward", "montecarlo")


def write_report(
    task: str,
    record: Mapping[str, Any],
    tables: Mapping[str, pd.DataFrame | pd.Series],
    path: str | Path | None = None,
    *,
    index: pd.Index | None = None,
    symbols: list[str] | None = None,
) -> Path:
    """Write a live result's report: the same ``report.html`` the CLI writes for a run.

    Args:
        task: ``backtest``, ``search``, ``walkforward`` or ``montecarlo``.
        record: What ``result.json`` holds for that task (metrics, params, sections).
        tables: The Parquet tables (``equity``, ``trades``, ``trials``, ...).
        path: The page to write (a ``.html`` file, or a folder to hold ``report.html``);
            the run directory is then a temporary one, removed after. Default: a new run
            directory ``outputs/notebook/<task>-<time>/`` (``result.json``, the tables
            and ``report.html``), which ``load_result`` reads back.
        index: The dates of the result's bars (the header's first and last date).
        symbols: The assets traded (the header).

    Returns:
        The path of the page written.
    """
    from backtest import __version__
    from backtest.report._build import build_report, write_page

    now = datetime.datetime.now(datetime.UTC)
    full = {
        "task": task,
        "name": "notebook",
        "started_at": now.isoformat(timespec="seconds"),
        "ended_at": now.isoformat(timespec="seconds"),
        "version": __version__,
        **({"symbols": symbols} if symbols else {}),
        **_span(index),
        **record,
    }
    if path is None:
        stamp = now.strftime("%Y%m%d-%H%M%S-%f")
        run_dir = results.claim_dir(Path.cwd() / NOTEBOOK_DIR / f"{task}-{stamp}", key="path")
        results.write_result(run_dir, full, tables=tables)
        return build_report(run_dir)
    target = Path(path)
    if target.suffix.lower() not in (".html", ".htm"):
        target = target / results.REPORT_FILE
    with tempfile.TemporaryDirectory(prefix="backtest-report-") as tmp:
        results.write_result(tmp, full, tables=tables)
        return write_page(results.load_result(tmp), target)


def _span(index: pd.Index | None) -> dict[str, Any]:
    if not isinstance(index, pd.DatetimeIndex) or not len(index):
        return {}
    return {"start": str(index[0].date()), "end": str(index[-1].date()), "n_bars": len(index)}


@dataclass(frozen=True, slots=True, repr=False)
class LoadedResult(results.StoredResult):
    """A run directory read back (``load_result``): its record and tables, and its figures.

    What a CLI run stored is what it can show: the headline backtest (``equity``,
    ``trades``), a search's ``trials``, a walk-forward's ``folds``, a Monte Carlo's
    ``montecarlo_fan`` and ``montecarlo_paths``. Not stored, so not shown: a search's
    kept trial returns (its overfitting statistics are in ``result.json``), a
    walk-forward's CPCV paths and window positions, the full price history (the report's
    price panel reads ``prices.parquet``, thinned to 5,000 bars).
    """

    @property
    def kinds(self) -> tuple[str, ...]:
        """The figures this run can draw: ``backtest``, ``search``, ``walkforward``, ...."""
        has = {
            "backtest": "equity" in self.tables,
            "search": bool(self.record.get("search")) and "trials" in self.tables,
            "walkforward": bool(self.record.get("walkforward")) and "folds" in self.tables,
            "montecarlo": bool(self.record.get("montecarlo"))
            and {"montecarlo_fan", "montecarlo_paths"} & set(self.tables) != set(),
        }
        return tuple(k for k in KINDS if has[k])

    def plot(self, kind: str | None = None, **options: Any) -> Any:
        """The figure of the run, as the live result's ``plot()`` draws it.

        Args:
            kind: ``backtest`` (the headline equity), ``search``, ``walkforward`` or
                ``montecarlo``; default: the run's task.
            **options: For a search: ``x``, ``y``, ``kind`` (``heatmap`` or
                ``parallel``) and ``metric``, as ``SearchResult.plot``.

        Returns:
            A plotly ``Figure``.

        Raises:
            ConfigError: the run has no such figure (names the ones it has).
        """
        task = str(self.record.get("task", "backtest"))
        kind = kind or (task if task in self.kinds else "backtest")
        if kind not in self.kinds:
            raise ConfigError(
                f"{str(self.path)!r} has no {kind!r} figure: its files give "
                f"{', '.join(self.kinds) or 'none'}; pass plot(kind=...) one of those",
                key="kind",
            )
        return _page.to_plotly(self._spec(kind, options))

    def _spec(self, kind: str, options: Mapping[str, Any]) -> dict[str, Any]:
        equity = self.table("equity") if "equity" in self.tables else None
        if kind == "backtest":
            assert equity is not None
            trades = self.table("trades") if "trades" in self.tables else None
            return _performance.equity_figure(equity, trades)
        if kind == "search":
            search = self.record["search"]
            trials = self.table("trials")
            names = [p for p in search.get("space") or {} if p in trials.columns]
            return _search.search_figure(
                trials,
                names,
                options.get("metric") or str(search.get("metric", "sharpe_ratio")),
                search.get("direction", "maximize") != "minimize",
                x=options.get("x"),
                y=options.get("y"),
                kind=options.get("kind"),
            )
        if kind == "walkforward":
            return _walkforward.walkforward_figure(
                None if equity is None else equity["equity"], self.table("folds")
            )
        mc = self.record["montecarlo"]
        fan = self.table("montecarlo_fan") if "montecarlo_fan" in self.tables else None
        paths = self.table("montecarlo_paths") if "montecarlo_paths" in self.tables else None
        if fan is not None and "bar" in fan.columns:
            fan = fan.set_index("bar")
        unit = str(mc.get("unit", "bar"))
        return _montecarlo.montecarlo_figure(
            fan,
            paths,
            mc.get("observed") or {},
            mc.get("percentile_ranks") or {},
            dates_of=None if equity is None or unit != "bar" else equity.index,
            unit=unit,
        )

    def report(self, path: str | Path | None = None) -> Path:
        """(Re)build the run's ``report.html`` (or write the page to ``path``); its path."""
        from backtest.report._build import build_report, write_page

        if path is None:
            return build_report(self.path)
        target = Path(path)
        if target.suffix.lower() not in (".html", ".htm"):
            target = target / results.REPORT_FILE
        return write_page(self, target)

    def __repr__(self) -> str:
        """One line: where, what task, parameters, the headline figures, trades, bars."""
        return _display.loaded_line(str(self.path), self.record)

    def _repr_html_(self) -> str:
        """The one line and the report's headline metrics table."""
        record = self.record
        return _display.block(
            repr(self),
            _display.metrics_html(
                record.get("metrics") or {}, record.get("benchmark_metrics") or None
            ),
        )


def load_result(path: str | Path, *, job_id: str | None = None) -> LoadedResult:
    """Read a run directory (or its ``result.json``) back, ready to plot in a notebook.

    ``load_result("outputs/sma_grid/...").plot()`` draws the run's figure (its task's:
    the equity of a backtest, a search's heatmap, a walk-forward's folds, a Monte
    Carlo's fan); ``.plot("backtest")`` the headline equity of any run; ``.report()``
    rebuilds its ``report.html``. It is a :class:`~backtest.results.StoredResult`:
    ``record``, ``metrics`` and ``table(name)`` work as there.

    Raises:
        ResultPathMissing: nothing complete at ``path``; the error names the path.
    """
    stored = results.load_result(path, job_id=job_id)
    return LoadedResult(**{f.name: getattr(stored, f.name) for f in fields(stored)})
