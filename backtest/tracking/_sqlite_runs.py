"""An experiment's runs read straight from a local sqlite store, laid out as MLflow does.

``mlflow.search_runs`` builds an ORM object for every param, metric and tag of every
run: 4 s in a warm process for a store of 1,000 runs (83 params each), 9-26 s from a
fresh one, plus 2-3 s to import MLflow. ``backtest compare`` needs a handful of
columns, so for a sqlite store whose schema is the one this package ships
(:mod:`backtest.tracking._store`: the same alembic revision) it asks SQLite for them
directly (a few tens of milliseconds) and never imports MLflow. Any other store (a
server, another MLflow's schema) is read through MLflow.

The frame has ``mlflow.search_runs``'s layout and order (newest first, then by run
id; deleted runs left out): ``run_id``, ``status``, ``start_time`` (UTC), then
``metrics.<key>`` (latest value, NaN when absent), ``params.<key>`` and
``tags.<key>`` (``None`` when absent), restricted to the params and tags asked for.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from contextlib import closing
from pathlib import Path

import pandas as pd

from backtest.errors import BacktestError

SQLITE = "sqlite:///"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a plain ``sqlite:///`` URI, ``None`` for anything else."""
    if not uri.startswith(SQLITE) or "?" in uri:
        return None
    return Path(uri[len(SQLITE) :])


def _revision(con: sqlite3.Connection) -> str | None:
    try:
        row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        return None
    return None if row is None else str(row[0])


def _long(con: sqlite3.Connection, query: str, args: Iterable[object]) -> pd.DataFrame:
    return pd.DataFrame(con.execute(query, tuple(args)).fetchall(), columns=["run_id", "key", "v"])


def read_runs(
    path: Path,
    experiment: str,
    revision: str,
    *,
    tags: Iterable[str],
    param_filter: Callable[[str], bool],
) -> pd.DataFrame | None:
    """The active runs of ``experiment`` in the sqlite store at ``path``.

    Args:
        path: The store's database file.
        experiment: The experiment's name.
        revision: The alembic revision whose tables this reader knows.
        tags: The tag keys to read (``tags.<key>`` columns).
        param_filter: Which param keys to read (``params.<key>`` columns). Of the keys
            with a dot (the flattened config, most of a run's params) only those whose
            value differs between runs and the ``selected.*`` ones are read at all.

    Returns:
        The runs in ``mlflow.search_runs``'s layout; ``None`` when the store's schema is
        another revision (read it through MLflow instead).

    Raises:
        BacktestError: no store at ``path``, or no experiment ``experiment`` in it (the
            message lists the experiments there are).
    """
    uri = SQLITE + str(path)
    if not path.is_file():
        raise BacktestError(
            f"no MLflow experiment {experiment!r} at {uri}: the store does not exist yet "
            "(a run with tracking on creates it)"
        )
    with closing(sqlite3.connect(path, timeout=10)) as con:
        con.execute("PRAGMA query_only = 1")
        if _revision(con) != revision:
            return None
        found = con.execute(
            "SELECT experiment_id FROM experiments WHERE name = ?", (experiment,)
        ).fetchone()
        if found is None:
            names = [
                row[0]
                for row in con.execute(
                    "SELECT name FROM experiments WHERE lifecycle_stage = 'active' ORDER BY name"
                )
            ]
            raise BacktestError(
                f"no MLflow experiment {experiment!r} at {uri}; experiments there: "
                f"{', '.join(names) or 'none'}"
            )
        runs = pd.DataFrame(
            con.execute(
                "SELECT run_uuid, status, start_time FROM runs WHERE experiment_id = ? "
                "AND lifecycle_stage = 'active' ORDER BY start_time DESC, run_uuid",
                found,
            ).fetchall(),
            columns=["run_id", "status", "start_time"],
        )
        scope = "run_uuid IN (SELECT run_uuid FROM runs WHERE experiment_id = ?)"
        metrics = _long(
            con,
            "SELECT run_uuid, key, CASE WHEN is_nan THEN NULL ELSE value END "
            f"FROM latest_metrics WHERE {scope}",
            found,
        )
        wanted = list(dict.fromkeys(tags))
        tag_rows = _long(
            con,
            f"SELECT run_uuid, key, value FROM tags WHERE {scope} "
            f"AND key IN ({','.join('?' * len(wanted))})",
            [*found, *wanted],
        )
        # of the flattened config (dotted keys, most of a run's params) only the keys
        # that differ between runs (searched ones among them) and selected.* are read
        params = _long(
            con,
            f"SELECT run_uuid, key, value FROM params WHERE {scope} AND (instr(key, '.') = 0 "
            "OR key GLOB 'selected.*' OR key IN (SELECT key FROM params WHERE "
            f"{scope} AND instr(key, '.') > 0 GROUP BY key HAVING COUNT(DISTINCT value) > 1))",
            [*found, *found],
        )
    params = params[params["key"].map(param_filter).astype(bool)]
    ids = runs["run_id"]
    # Built from lists with None (NaN for metrics) where a run lacks a key, as
    # mlflow.search_runs builds its frame, so pandas gives the columns the same dtypes.
    data: dict[str, list[object]] = {
        "run_id": ids.tolist(),
        "status": runs["status"].tolist(),
        "start_time": pd.to_datetime(runs["start_time"], unit="ms", utc=True).tolist(),
    }
    for prefix, rows in (("metrics.", metrics), ("params.", params), ("tags.", tag_rows)):
        if rows.empty:
            continue
        # (run, key) is each table's primary key: a plain reshape, nothing to aggregate
        wide = rows.pivot(index="run_id", columns="key", values="v").reindex(ids)  # noqa: PD010
        for key in wide.columns:
            values = wide[key].tolist()
            if prefix == "metrics.":
                data[prefix + key] = [float("nan") if v is None else float(v) for v in values]
            else:
                data[prefix + key] = [None if pd.isna(v) else v for v in values]
    return pd.DataFrame(data)
