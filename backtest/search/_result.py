"""The outcome of a search: every trial, the best one, and a heatmap."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backtest.errors import ConfigError, TrialsFailed

#: Columns of the trials table besides the parameters and metrics.
TRIAL, SEED, STATUS, ERROR = "trial", "seed", "status", "error"
OK, FAILED = "ok", "failed"
_META_KEY = b"backtest.search"


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Every trial of a parameter search and the best one.

    Attributes:
        trials: One row per trial, in trial order: ``trial`` (number), the parameters,
            every metric, ``seed`` (the trial's seed), ``status`` (``ok`` or
            ``failed``) and ``error`` (why it failed, else empty).
        metric: The metric optimised.
        direction: ``maximize`` or ``minimize``.
        param_names: The searched parameters, in order.
        best_params: The parameters of the best trial.
        best_score: Its metric (always finite).
        best_trial: Its trial number.
        method: ``grid``, ``random``, ``tpe``, ``cmaes``, ...
        seed: The root seed every trial's seed derives from.
        returns: Per-bar returns of up to ``keep_returns`` successful trials (float32,
            one column per trial number, a ``DatetimeIndex``), for overfitting
            statistics such as PBO; ``None`` when none were kept.
        best_backtest: The single backtest (:func:`~backtest.engine.simulate`) of the
            best set, which the search compared its trial with; ``None`` when the
            evaluator has no single backtest (a plain callable).
        verified: The trials re-run through the single backtest and found equal (the
            best first, then a sample: :mod:`backtest.search._truth`).
    """

    trials: pd.DataFrame
    metric: str
    direction: str
    param_names: tuple[str, ...]
    best_params: dict[str, Any]
    best_score: float
    best_trial: int
    method: str = "grid"
    seed: int | None = None
    returns: pd.DataFrame | None = field(default=None, repr=False)
    best_backtest: Any = field(default=None, repr=False, compare=False)
    verified: tuple[int, ...] = ()

    @property
    def n_trials(self) -> int:
        """Number of trials (failed ones included)."""
        return len(self.trials)

    @property
    def n_failed(self) -> int:
        """Number of failed trials."""
        return int((self.trials[STATUS] == FAILED).sum())

    def __repr__(self) -> str:
        """One line: method, parameters, best set and its score, Sharpe, return, drawdown."""
        from backtest.report import _display

        return _display.search_line(
            self.method, self.param_names, self.best_params, self._best_row(), self.metric,
            self.n_trials, self.n_failed,
        )  # fmt: skip

    def _repr_html_(self) -> str:
        """The one line, the report's search facts and the top trials (a notebook's display)."""
        from backtest.report import _display

        facts = [
            ("method", self.method),
            ("trials", self.n_trials),
            ("failed", self.n_failed),
            ("best trial", self.best_trial),
            ("best score", self.best_score),
            ("metric", f"{self.metric} ({self.direction})"),
        ]
        top = self.top(_display.TOP_ROWS)
        columns = ["trial", *self.param_names, self.metric]
        columns += [c for c in top.columns if c not in (*columns, SEED, STATUS, ERROR)]
        return _display.search_html(repr(self), facts, top[columns], self.metric)

    def plot(
        self,
        x: str | None = None,
        y: str | None = None,
        *,
        kind: str | None = None,
        metric: str | None = None,
    ) -> Any:
        """The metric over the searched parameters, as the report draws it.

        A heatmap of two parameters, each cell the best over the other parameters
        (:meth:`heatmap_cells`); with more than two parameters and no ``x``/``y``,
        parallel coordinates (one line per trial); one parameter: a line.

        Args:
            x: Parameter on the horizontal axis (the first searched one by default).
            y: Parameter on the vertical axis (the second by default).
            kind: ``"heatmap"`` or ``"parallel"`` (default: as above).
            metric: The metric shown (the searched one by default).

        Returns:
            A plotly ``Figure``.

        Raises:
            ConfigError: ``x``/``y`` is not a searched parameter, or an unknown ``kind``.
        """
        from backtest.report import _page, _search

        metric = metric or self.metric
        spec = _search.search_figure(
            self.trials,
            list(self.param_names),
            metric,
            self.direction != "minimize",
            x=x,
            y=y,
            kind=kind,
            cells=lambda px, py: self.heatmap_cells(px, py, metric=metric),
        )
        return _page.to_plotly(spec)

    def report(self, path: str | Path | None = None) -> Path:
        """Write the search's HTML report (the CLI's page, from what this result holds).

        The page has the search section (facts, heatmaps, top trials) and the best
        trial's metrics; the CLI's report adds the best set's full backtest (equity,
        trades) and the overfitting statistics, which a search result does not hold.

        Args:
            path: The page (a ``.html`` file or a folder); default: a new run directory
                ``outputs/notebook/search-<time>/`` that ``load_result`` reads back.

        Returns:
            The path of ``report.html``.
        """
        from backtest.report._notebook import write_report

        best = self._best_row()
        skip = (TRIAL, SEED, STATUS, ERROR, *self.param_names)
        metrics = {
            k: float(v)
            for k, v in best.items()
            if k not in skip and isinstance(v, int | float | np.number)
        }
        space = {p: sorted(self.trials[p].dropna().unique().tolist()) for p in self.param_names}
        section = {
            "method": self.method,
            "metric": self.metric,
            "direction": self.direction,
            "space": space,
            "n_trials": self.n_trials,
            "n_failed": self.n_failed,
            "best_trial": self.best_trial,
            "best_params": self.best_params,
            "best_score": self.best_score,
            "seed": self.seed,
        }
        record = {
            "params": self.best_params,
            "metrics": metrics,
            "objective": self.best_score,
            "search": section,
        }
        return write_report("search", record, {"trials": self.trials}, path)

    def _best_row(self) -> dict[str, Any]:
        row = self.trials.loc[self.trials[TRIAL] == self.best_trial]
        return row.iloc[0].to_dict() if len(row) else {}

    def top(self, n: int = 10) -> pd.DataFrame:
        """The ``n`` best successful trials, best first."""
        ok = self.trials[self.trials[STATUS] == OK]
        ascending = self.direction == "minimize"
        return ok.sort_values(
            [self.metric, TRIAL], ascending=[ascending, True], kind="stable"
        ).head(n)

    def to_parquet(self, path: str | Path) -> Path:
        """Write the trials table (and the settings) to ``path``.

        Kept returns go to ``<path stem>.returns.parquet`` beside it.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "metric": self.metric,
            "direction": self.direction,
            "param_names": list(self.param_names),
            "method": self.method,
            "seed": None if self.seed is None else str(self.seed),
        }
        table = pa.Table.from_pandas(self.trials, preserve_index=False)
        schema_meta = dict(table.schema.metadata or {})
        schema_meta[_META_KEY] = json.dumps(meta).encode()
        pq.write_table(table.replace_schema_metadata(schema_meta), path)
        returns_path = _returns_path(path)
        if self.returns is not None:
            frame = self.returns.copy()
            frame.columns = [str(c) for c in frame.columns]
            frame.to_parquet(returns_path)
        else:
            returns_path.unlink(missing_ok=True)
        return path

    @classmethod
    def read_parquet(cls, path: str | Path) -> SearchResult:
        """Read a result written by :meth:`to_parquet`.

        Raises:
            ConfigError: the file is not a search result.
        """
        import pyarrow.parquet as pq

        path = Path(path)
        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(_META_KEY)
        if raw is None:
            raise ConfigError(
                f"{str(path)!r} is not a search result (no search metadata)", key="path"
            )
        meta = json.loads(raw)
        trials = table.to_pandas()
        returns = None
        if _returns_path(path).is_file():
            returns = pd.read_parquet(_returns_path(path))
            returns.columns = [int(c) for c in returns.columns]
        seed = None if meta["seed"] is None else int(meta["seed"])
        return build_result(
            trials,
            metric=meta["metric"],
            direction=meta["direction"],
            param_names=tuple(meta["param_names"]),
            method=meta["method"],
            seed=seed,
            returns=returns,
        )

    def heatmap_cells(
        self, x: str, y: str, *, metric: str | None = None
    ) -> tuple[pd.DataFrame, str]:
        """The metric over two parameters: the best over the other parameters, per cell.

        The values a heatmap draws (``backtest.report`` draws them; this result knows no
        figure code).

        Args:
            x: Parameter on the horizontal axis.
            y: Parameter on the vertical axis.
            metric: The metric to show (the searched one by default).

        Returns:
            A frame with columns ``x``, ``y`` and the metric, one row per cell, and the title
            that says what a cell holds.

        Raises:
            ConfigError: ``x`` or ``y`` is not a parameter.
        """
        metric = metric or self.metric
        for name in (x, y):
            if name not in self.param_names:
                raise ConfigError(
                    f"{name!r} is not a searched parameter ({', '.join(self.param_names)})",
                    key=name,
                )
        ok = self.trials[self.trials[STATUS] == OK]
        agg = "min" if self.direction == "minimize" else "max"
        best_cells = ok.groupby([x, y], as_index=False)[metric].agg(agg)
        others = [p for p in self.param_names if p not in (x, y)]
        over = f", {agg} over {', '.join(others)}" if others else ""
        return best_cells, f"{metric} by {x} and {y} ({len(self.trials)} trials{over})"


def _returns_path(path: Path) -> Path:
    return path.with_name(path.stem + ".returns.parquet")


def failure_summary(errors: pd.Series) -> str:
    """``"<reason>" (<count> trials)`` for the most common failure reason."""
    counts = Counter(str(e) for e in errors)
    reason, count = counts.most_common(1)[0]
    return f"{reason!r} ({count} of {len(errors)} trials)"


def build_result(
    trials: pd.DataFrame,
    *,
    metric: str,
    direction: str,
    param_names: tuple[str, ...],
    method: str,
    seed: int | None,
    returns: pd.DataFrame | None = None,
) -> SearchResult:
    """Pick the best successful trial and assemble the result.

    Raises:
        TrialsFailed: no trial succeeded (the message gives the most common reason).
    """
    if direction not in ("maximize", "minimize"):
        raise ConfigError(
            f"direction must be 'maximize' or 'minimize', got {direction!r}", key="search.direction"
        )
    ok = np.flatnonzero(trials[STATUS].to_numpy() == OK) if len(trials) else np.zeros(0, int)
    if len(ok) == 0:
        if len(trials) == 0:
            raise TrialsFailed(
                "the search ran no trials: the constraint or the space "
                "left no parameter combination"
            )
        raise TrialsFailed(
            f"all {len(trials)} trials failed; most common reason: {failure_summary(trials[ERROR])}"
        )
    scores = trials[metric].to_numpy(dtype=np.float64)[ok]
    pos = int(ok[np.argmin(scores) if direction == "minimize" else np.argmax(scores)])
    best_params = {name: _plain(trials[name].iloc[pos]) for name in param_names}
    return SearchResult(
        trials=trials,
        metric=metric,
        direction=direction,
        param_names=param_names,
        best_params=best_params,
        best_score=float(trials[metric].iloc[pos]),
        best_trial=int(trials[TRIAL].iloc[pos]),
        method=method,
        seed=seed,
        returns=returns,
    )


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
