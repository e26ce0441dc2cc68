"""Compare the runs of an experiment as one sorted table, from MLflow.

::

    python -m backtest.compare wf_momentum
    python -m backtest.compare sma_cross --metric max_drawdown --children
    python -m backtest.compare sma_cross --uri http://127.0.0.1:5000 --limit 20

Rows are the runs of the experiment (the jobs of a sweep included; the trials and
folds nested under a search or walk-forward only with ``--children``), sorted by the
metric, best first: descending, except for metrics where less is better
(``max_drawdown``, ``annual_volatility``, ``turnover``, ``duration_s``) or when
``--ascending`` is given. Runs without the metric come last.

The local sqlite store is read with SQLite directly when its schema is the one this
package ships (:mod:`backtest.tracking._sqlite_runs`): 1,000 runs answer in well under
a second and MLflow is not imported; a server or another schema is read through
``mlflow.search_runs``, with the same table as the result.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd

from backtest.config import RootConfig
from backtest.errors import BacktestError, ConfigError, describe
from backtest.results._summary import PERCENT_METRICS, format_value

LOWER_IS_BETTER = frozenset({"max_drawdown", "annual_volatility", "turnover", "duration_s"})
HEADLINE = ("sharpe_ratio", "total_return", "cagr", "max_drawdown", "n_trades")
_CONFIG_KEYS = frozenset(f.name for f in fields(RootConfig))


# The tags the table shows or filters on; params are the bare-named ones (_bare_param).
_TAGS = ("mlflow.runName", "backtest.task", "backtest.kind")


def _bare_param(key: str) -> bool:
    """A strategy parameter actually used (``fast``), not a flattened config key."""
    return "." not in key and key not in _CONFIG_KEYS


# Flattened config keys that say where and how a run was kept, not what it computed.
_NOT_SEARCHED = ("tracking.", "queue.", "hydra.", "search.", "sweep.")


def _shown_param(key: str) -> bool:
    """A param :func:`runs_table` may show.

    A strategy parameter used (``fast``), a searched key (``engine.vol_target``; shown
    where it varies) or a search's best value of one (``selected.engine.vol_target``).
    """
    return _bare_param(key) or ("." in key and not key.startswith(_NOT_SEARCHED))


def _varies(values: pd.Series) -> bool:
    known = values.dropna()
    return bool(len(known)) and bool((known != known.iloc[0]).any())


def _param_columns(runs: pd.DataFrame) -> dict[str, pd.Series]:
    """The parameter columns of the table: every key that varies between the rows.

    A search's or walk-forward's trials and folds carry the searched keys, engine
    keys included (``engine.vol_target``); their parent carries its best values as
    ``selected.<key>``, shown in the same column. The jobs of a Hydra sweep differ in
    the config keys they override. A key with one value in every row says nothing
    and is left out (a single row shows its strategy parameters and best values); a
    config key ``strategy.<name>`` gives way to the parameter ``<name>`` actually used.
    """
    columns: dict[str, pd.Series] = {}
    best: set[str] = set()
    for column in sorted(c for c in runs.columns if c.startswith("params.")):
        key = column.removeprefix("params.")
        if not _shown_param(key):
            continue
        if key.startswith("selected."):
            key = key.removeprefix("selected.")
            best.add(key)
            chosen, config = runs[column], runs.get(f"params.{key}")
            columns[key] = chosen if config is None else chosen.where(chosen.notna(), config)
        else:
            columns.setdefault(key, runs[column])
    for key in list(columns):
        if key.startswith("strategy.") and key.removeprefix("strategy.") in columns:
            del columns[key]
    if len(runs) > 1:
        return {k: v for k, v in columns.items() if _varies(v)}
    return {k: v for k, v in columns.items() if v.notna().any() and (_bare_param(k) or k in best)}


def mlflow_runs(experiment: str, uri: str) -> pd.DataFrame:
    """``mlflow.search_runs`` of one experiment at ``uri`` (the global URI is restored).

    Raises:
        BacktestError: no such experiment (the message lists the ones there are), or
            the tracking server is unreachable.
    """
    import mlflow

    from backtest.tracking._client import check_reachable, client_for
    from backtest.tracking._store import quiet_mlflow

    check_reachable(uri, 5.0)
    with quiet_mlflow():
        client = client_for(uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            names = sorted(e.name for e in client.search_experiments())
            raise BacktestError(
                f"no MLflow experiment {experiment!r} at {uri}; experiments there: "
                f"{', '.join(names) or 'none'}"
            )
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(uri)
        try:
            frame = mlflow.search_runs(experiment_ids=[exp.experiment_id], max_results=100_000)
        finally:
            mlflow.set_tracking_uri(previous)
    assert isinstance(frame, pd.DataFrame)
    return frame


def experiment_runs(experiment: str, uri: str) -> pd.DataFrame:
    """The runs of ``experiment`` in ``mlflow.search_runs``'s layout, read the fastest way.

    A sqlite store with the schema this package ships is read with SQLite directly
    (:mod:`backtest.tracking._sqlite_runs`: no MLflow import, milliseconds); anything
    else through :func:`mlflow_runs`.
    """
    from backtest.tracking._sqlite_runs import read_runs, sqlite_path
    from backtest.tracking._store import snapshot

    path, snap = sqlite_path(uri), snapshot()
    if path is not None:
        check_store(path, uri)
    if path is not None and snap is not None:
        frame = read_runs(path, experiment, snap.revision, tags=_TAGS, param_filter=_shown_param)
        if frame is not None:
            return frame
    from backtest.tracking._client import bounded_http

    with bounded_http(5.0):
        return mlflow_runs(experiment, uri)


def check_store(path: Path, uri: str) -> None:
    """A sqlite store SQLite cannot read (cut short, garbled) is named with its fix, at once.

    MLflow retries opening such a store for about 100 s, then prints SQLAlchemy's error.

    Raises:
        BacktestError: names the store, what SQLite says, and how to rebuild it.
    """
    import sqlite3
    from contextlib import closing

    if not path.is_file():
        return
    try:
        with closing(sqlite3.connect(path, timeout=10)) as con:
            con.execute("PRAGMA query_only = 1")
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        return  # locked, or an I/O error: not known to be damaged; MLflow says more
    except sqlite3.DatabaseError as exc:  # "database disk image is malformed", "not a database"
        aside = path.parent / "damaged-store"
        raise BacktestError(
            f"the MLflow store {path} is damaged ({exc}); move it aside and log the runs "
            f"again from their folders: mkdir -p {aside} && mv {path}* {aside}/ && "
            f"python -m backtest.sync {path.parent} --full --uri {uri}"
        ) from exc


def compare_runs(
    experiment: str,
    *,
    metric: str = "sharpe_ratio",
    uri: str | None = None,
    ascending: bool | None = None,
    children: bool = False,
    limit: int | None = None,
) -> pd.DataFrame:
    """The runs of ``experiment`` as a table sorted by ``metric``, best first.

    Args:
        experiment: The MLflow experiment (the config's ``name``).
        metric: Metric to sort by (``sharpe_ratio``, ``cagr``, ``montecarlo....``).
        uri: Tracking URI; ``MLFLOW_TRACKING_URI`` or ``sqlite:///outputs/mlflow.db``.
        ascending: Sort order; ascending only for metrics where less is better when unset.
        children: Include the trials and folds nested under searches and walk-forwards.
        limit: Keep the first ``limit`` rows.

    Returns:
        One row per run: name, task, status, start time, the strategy parameters
        actually used, the sort metric and the headline metrics, and the run id.

    Raises:
        BacktestError: no such experiment (the message lists the ones there are), or
            the tracking server is unreachable.
        ConfigError: no run of the experiment has ``metric``; names the ones logged.
    """
    from backtest.tracking._client import resolve_uri

    runs = experiment_runs(experiment, resolve_uri(uri))
    return runs_table(
        runs, experiment, metric=metric, ascending=ascending, children=children, limit=limit
    )


def runs_table(
    runs: pd.DataFrame,
    experiment: str,
    *,
    metric: str = "sharpe_ratio",
    ascending: bool | None = None,
    children: bool = False,
    limit: int | None = None,
) -> pd.DataFrame:
    """The table of :func:`compare_runs` from runs in ``mlflow.search_runs``'s layout.

    Raises:
        ConfigError: no run has ``metric``; names the ones logged.
    """
    if runs.empty:
        return pd.DataFrame(columns=["run", "task", "status", "started", "run_id"])
    kind = runs.get("tags.backtest.kind", pd.Series("run", index=runs.index)).fillna("run")
    keep = kind != "sweep" if children else kind.isin(["run"])
    runs = runs[keep]
    metric_cols = [c for c in runs.columns if c.startswith("metrics.")]
    if f"metrics.{metric}" not in metric_cols:
        available = ", ".join(sorted(c.removeprefix("metrics.") for c in metric_cols))
        raise ConfigError(
            f"metric {metric!r} is not logged in experiment {experiment!r}; "
            f"logged metrics: {available or 'none'}",
            key="metric",
        )
    if ascending is None:
        ascending = metric in LOWER_IS_BETTER
    runs = runs.sort_values(
        f"metrics.{metric}", ascending=ascending, na_position="last", kind="stable"
    )
    shown = [metric, *(m for m in HEADLINE if m != metric and f"metrics.{m}" in runs.columns)]
    table = pd.DataFrame(
        {
            "run": runs.get("tags.mlflow.runName"),
            "task": runs.get("tags.backtest.task"),
            "status": runs["status"],
            "started": runs["start_time"].dt.strftime("%Y-%m-%d %H:%M"),
            **_param_columns(runs),
            **{m: runs[f"metrics.{m}"] for m in shown},
            "run_id": runs["run_id"].str[:12],
        }
    )
    return table.head(limit) if limit else table.reset_index(drop=True)


def format_table(table: pd.DataFrame) -> str:
    """The table as text; metrics as the run summary prints them, missing values as ``-``.

    Returns, drawdowns and rates are percentages (``12.34%``) as in the summary printed
    at the end of a run (:func:`backtest.results._summary.format_value`); other numbers keep four
    significant digits.

    >>> print(format_table(pd.DataFrame({"run": ["a"], "max_drawdown": [0.1234],
    ...                                  "sharpe_ratio": [1.23456], "fast": [None]})))
    run max_drawdown sharpe_ratio fast
      a       12.34%        1.235    -
    """

    def fmt(name: str, value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        if isinstance(value, float) and name in PERCENT_METRICS:
            return format_value(name, value)
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    shown = pd.DataFrame({c: [fmt(str(c), v) for v in table[c]] for c in table.columns})
    return shown.to_string(index=False)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m backtest.compare EXPERIMENT [--metric M] [--uri URI]``; 2 on an error."""
    parser = argparse.ArgumentParser(
        prog="backtest compare",
        description="Print the runs of an MLflow experiment sorted by a metric, best first.",
    )
    parser.add_argument("experiment", help="experiment name (the config's name)")
    parser.add_argument("--metric", default="sharpe_ratio", help="sort metric (sharpe_ratio)")
    parser.add_argument(
        "--uri", help="tracking URI (MLFLOW_TRACKING_URI or sqlite:///outputs/mlflow.db)"
    )
    parser.add_argument(
        "--ascending",
        action="store_true",
        default=None,
        help="smallest first (default only for max_drawdown and similar)",
    )
    parser.add_argument(
        "--children",
        action="store_true",
        help="include trials and folds nested under searches/walk-forwards",
    )
    parser.add_argument("--limit", type=int, help="show only the best N runs")
    args = parser.parse_args(argv)
    try:
        table = compare_runs(
            args.experiment,
            metric=args.metric,
            uri=args.uri,
            ascending=args.ascending,
            children=args.children,
            limit=args.limit,
        )
    except BacktestError as exc:
        print(describe(exc), file=sys.stderr)
        return 2
    print(f"{len(table)} runs of {args.experiment!r} by {args.metric}")
    print(format_table(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
