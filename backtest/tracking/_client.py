"""Connecting to MLflow without ever waiting minutes, and creating experiments safely.

MLflow's HTTP client retries 7 times with exponential backoff and a 120-second
timeout by default: an unreachable server would hold a finished backtest for
minutes. Every call here runs inside :func:`bounded_http`, which sets MLflow's retry
and timeout environment settings for the duration of the call only, and a server is
first asked ``/health`` once, without retries, so a server that is down fails in
milliseconds with one clear message.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backtest.errors import BacktestError
from backtest.tracking._store import prepare_store
from backtest.tracking._ui import RUNS_VIEW

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger("backtest.tracking")

DEFAULT_URI = "sqlite:///outputs/mlflow.db"
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
_RETRIES = 2  # a transient 5xx (a busy sqlite behind the server) is retried twice
_SQLITE = "sqlite:///"


def resolve_uri(uri: str | None) -> str:
    """The tracking URI to use: ``uri``, else ``MLFLOW_TRACKING_URI``, else the local store.

    A relative sqlite path is made absolute (against the working directory) and its
    folder is created, so ``sqlite:///outputs/mlflow.db`` works in a fresh checkout.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    if uri.startswith(_SQLITE):
        path = Path(uri[len(_SQLITE) :])
        if not path.is_absolute():
            path = Path.cwd() / path
        path.parent.mkdir(parents=True, exist_ok=True)
        uri = _SQLITE + str(path.resolve())
    return uri


def is_http(uri: str) -> bool:
    """Whether ``uri`` names a tracking server (as opposed to a database)."""
    return uri.startswith(("http://", "https://"))


@contextmanager
def bounded_http(timeout_s: float) -> Iterator[None]:
    """MLflow HTTP calls inside this block give up after ``timeout_s`` and two quick retries.

    Sets ``MLFLOW_HTTP_REQUEST_TIMEOUT``, ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``,
    ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`` and ``MLFLOW_HTTP_REQUEST_BACKOFF_JITTER``
    and restores them afterwards; silences urllib3's per-retry warnings, so a failure
    surfaces as one warning from the caller, and MLflow's "View run at" line per run.
    MLflow's usage telemetry is turned off for the process (``MLFLOW_DISABLE_TELEMETRY``)
    unless the user set that variable.
    """
    settings = {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, math.ceil(timeout_s))),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(_RETRIES),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
        "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
        # no "View run at ..." line on stdout (and no extra request) per run ended
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    }
    # MLflow 3 sends usage telemetry to its vendor unless told not to; a backtest
    # talks to its own tracking store only (MLFLOW_DISABLE_TELEMETRY=false opts back in).
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    saved = {key: os.environ.get(key) for key in settings}
    urllib3_log = logging.getLogger("urllib3.connectionpool")
    saved_level = urllib3_log.level
    os.environ.update(settings)
    urllib3_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        urllib3_log.setLevel(saved_level)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def check_reachable(uri: str, timeout_s: float) -> None:
    """Ask a tracking server for ``/health`` once; any HTTP answer counts as reachable.

    Raises:
        BacktestError: nothing answered within ``timeout_s``; names the URI.
    """
    if not is_http(uri):
        return
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout_s)
    except requests.RequestException as exc:
        raise BacktestError(
            f"MLflow tracking server {uri} is unreachable ({type(exc).__name__})"
        ) from exc


def preload() -> None:
    """Import MLflow and its SQL store now, so the first run logged later is fast.

    A fresh process pays about two seconds (more on a busy machine) for ``import
    mlflow`` and the store's ORM before its first log; a long-lived process (an RQ
    worker before it forks its work horses, a notebook) can pay it up front. Opens no
    connection and no file, so it is safe before ``fork``.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 - loaded, not used here
    from sqlalchemy.orm import configure_mappers

    configure_mappers()


_FAST_SQLITE: set[str] = set()


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """On each new connection to one of our stores: WAL journal, commits without fsync."""
    import sqlite3

    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    rows = dbapi_connection.execute("PRAGMA database_list").fetchall()
    if any(row[1] == "main" and row[2] in _FAST_SQLITE for row in rows):
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def fast_sqlite(uri: str) -> None:
    """Make commits to the local sqlite store ``uri`` cheap (WAL, ``synchronous=NORMAL``).

    By default every MLflow call commits several transactions, each waiting for the
    disk (about 10 ms each here): most of the cost of logging a run. In WAL mode with
    ``synchronous=NORMAL`` a commit does not wait; a power cut can lose the last runs
    logged but never corrupts the store, and ``python -m backtest.sync`` logs them
    again from the run directories. WAL also lets readers (``mlflow ui``) and several
    logging processes share the file. Only connections to this database file are
    touched (a listener on SQLAlchemy engines checks the file name).
    """
    if not uri.startswith(_SQLITE):
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if not _FAST_SQLITE and not event.contains(Engine, "connect", _sqlite_pragmas):
        event.listen(Engine, "connect", _sqlite_pragmas)
    _FAST_SQLITE.add(str(Path(uri[len(_SQLITE) :])))


def client_for(uri: str) -> MlflowClient:
    """An ``MlflowClient`` for ``uri`` (already resolved; sqlite stores made fast and ready)."""
    from mlflow import MlflowClient

    fast_sqlite(uri)
    prepare_store(uri)
    return MlflowClient(tracking_uri=uri)


class MlflowWriter:
    """An ``MlflowClient`` with the three calls the sqlite client has in its own form.

    ``backtest.tracking`` logs through either client with the same calls:
    :meth:`log_plain` (``log_batch`` of plain mappings), :meth:`runs_tagged` (the runs
    with one tag value) and :meth:`artifact_writer` (uploads into a new run's artifacts);
    every other call is ``MlflowClient``'s own.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.client = client_for(uri)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def log_plain(
        self,
        run_id: str,
        *,
        params: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        timestamp_ms: int,
        step: int = 0,
    ) -> None:
        """One ``log_batch`` call (MLflow splits it into batches within its limits)."""
        from mlflow.entities import Metric, Param, RunTag

        self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, timestamp_ms, step) for k, v in (metrics or {}).items()],
            params=[Param(k, v) for k, v in (params or {}).items()],
            tags=[RunTag(k, v) for k, v in (tags or {}).items()],
        )

    def runs_tagged(self, experiment_ids: list[str], key: str, value: str) -> list[Any]:
        """The live runs of the experiments whose tag ``key`` is ``value``, newest first."""
        return search_all(self.client, experiment_ids, f"tags.`{key}` = {quote(value)}")

    def artifact_writer(self, run: Any) -> Callable[..., None]:
        """``put(local_file, artifact_path=None)`` into the new ``run``'s artifacts.

        The run's artifact URI is known: no ``get_run`` per file, as
        ``MlflowClient.log_artifact`` does.
        """
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        repo = get_artifact_repository(run.info.artifact_uri, tracking_uri=self.uri)
        return repo.log_artifact  # type: ignore[no-any-return]


@contextmanager
def connect(uri: str) -> Iterator[Any]:
    """A client to log into ``uri`` (resolved) for the duration of the block.

    A local sqlite store at the shipped schema gets a
    :class:`~backtest.tracking._sqlite_client.SqliteClient`, which writes MLflow's rows
    without importing MLflow (2-3 s of CPU per process); anything else an
    :class:`MlflowWriter`, with MLflow's log lines kept off the terminal. Both take the
    same calls.
    """
    from backtest.tracking._sqlite_client import lite_client

    lite = lite_client(uri)
    if lite is not None:
        with lite:
            yield lite
        return
    from backtest.tracking._store import quiet_mlflow

    with quiet_mlflow():
        yield MlflowWriter(uri)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "experiment"


def artifact_location(uri: str, name: str) -> str | None:
    """Where a new experiment keeps artifacts: beside a sqlite store, else the server's choice.

    ``sqlite:///outputs/mlflow.db`` keeps them in ``outputs/mlartifacts/<name>/``, so
    nothing lands in a stray ``./mlruns`` folder.
    """
    if uri.startswith(_SQLITE):
        db = Path(uri[len(_SQLITE) :])
        return (db.parent / "mlartifacts" / _slug(name)).as_uri()
    return None


def experiment_id(client: MlflowClient, name: str, uri: str) -> str:
    """The id of experiment ``name``, created when missing (restored when deleted).

    A new experiment carries the runs-table view the printed links open
    (:data:`backtest.tracking._ui.RUNS_VIEW`); an existing one gets it when its own
    differs (made by an older version), so every link opens the current view.

    Many processes may create the same new experiment at once; the losers of that
    race get ``RESOURCE_ALREADY_EXISTS`` and read the winner's experiment back.
    """
    last: Exception | None = None
    for _ in range(3):
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                log.info("restoring deleted MLflow experiment %r to log into it", name)
                client.restore_experiment(exp.experiment_id)
            for key, view in RUNS_VIEW.items():  # an experiment made by an older version
                if exp.tags.get(key) != view:
                    client.set_experiment_tag(exp.experiment_id, key, view)
            return str(exp.experiment_id)
        try:
            return str(
                client.create_experiment(
                    name,
                    artifact_location=artifact_location(uri, name),
                    tags={**EXPERIMENT_KIND, **RUNS_VIEW, "backtest.experiment": name},
                )
            )
        except Exception as exc:  # MlflowException, or the sqlite client's StoreError
            if getattr(exc, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
                raise
            log.debug("MLflow experiment %r was created by another process; reading it", name)
            last = exc  # created by another process between our read and our create
    raise BacktestError(f"could not create or read MLflow experiment {name!r}") from last


def search_all(client: MlflowClient, experiment_ids: list[str], filter_string: str) -> list[Any]:
    """Every run matching ``filter_string`` (all pages), deleted runs excluded."""
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            experiment_ids, filter_string=filter_string, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def quote(value: str) -> str:
    """``value`` as a single-quoted string literal of MLflow's search filter syntax."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
