"""Logging runs into a local sqlite store without importing MLflow.

A process that logs one run to the default store paid about 2.7 s of CPU to import
MLflow and its SQL store (MLflow, SQLAlchemy, alembic, FastAPI, OpenTelemetry...),
for writes that take a few milliseconds: a warm ``+experiment=sma_grid`` took 5.6 s
with tracking and 2.6 s without. :class:`SqliteClient` writes the same rows MLflow's
``SqlAlchemyStore`` writes (``create_run``, ``log_batch``, ``set_terminated``, ...),
for the subset of the client that :mod:`backtest.tracking` calls, straight into the
tables with :mod:`sqlite3`; files are copied into the run's ``file://`` artifact folder
as MLflow's local artifact repository does.

It is used only where its rows are MLflow's rows by construction
(:func:`lite_client`): a plain ``sqlite:///`` store at the alembic revision of the schema
snapshot this package ships (:mod:`backtest.tracking._store`), with the MLflow version
installed that made the snapshot, and MLflow's "Default" experiment in it. A new store
is made from the snapshot as MLflow's first open leaves it (:func:`create_store`). A
server, any other database or MLflow version goes through MLflow;
``BACKTEST_MLFLOW_CLIENT=mlflow`` forces MLflow everywhere.
``tests/test_tracking_sqlite_client.py`` logs the same runs both ways and compares
every row, and reads the lite client's runs back through MLflow.

Several processes may log into one store at once: every write is one ``BEGIN
IMMEDIATE`` transaction (SQLite serialises writers; a busy store is waited for up to
60 s), in WAL mode with ``synchronous=NORMAL`` as :func:`~backtest.tracking._client.fast_sqlite`
sets for MLflow's connections.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

from backtest.tracking._sqlite_runs import _revision, sqlite_path
from backtest.tracking._store import Snapshot, snapshot

#: ``BACKTEST_MLFLOW_CLIENT=mlflow``: every log goes through MLflow's own client.
SWITCH = "BACKTEST_MLFLOW_CLIENT"
_WORKSPACE = "default"  # MLflow 3's workspace of every experiment made without one
_MAX_FLOAT = 1.7976931348623157e308  # what MLflow stores for +-inf (SQL has no inf)


class StoreError(Exception):
    """A write the store refused, with MLflow's error code (``RESOURCE_ALREADY_EXISTS``...)."""

    def __init__(self, message: str, error_code: str) -> None:
        super().__init__(message)
        self.error_code = error_code


@dataclass(frozen=True, slots=True)
class RunInfo:
    """The fields of MLflow's ``RunInfo`` that backtest reads."""

    run_id: str
    experiment_id: str
    status: str
    start_time: int
    artifact_uri: str


@dataclass(frozen=True, slots=True)
class Run:
    """A run as ``MlflowClient.create_run`` and ``search_runs`` return it (``.info``)."""

    info: RunInfo


@dataclass(frozen=True, slots=True)
class Experiment:
    """The fields of MLflow's ``Experiment`` that backtest reads."""

    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Metric:
    """One logged value of a metric (``get_metric_history``)."""

    key: str
    value: float
    timestamp: int
    step: int


def _now_ms() -> int:
    return int(time.time() * 1000)


def _stored(value: float) -> tuple[bool, float]:
    """MLflow's ``sanitize_metric_value``: ``(is_nan, value)``, NaN as 0, inf as the max float."""
    value = float(value)
    if math.isnan(value):
        return True, 0.0
    if math.isinf(value):
        return False, _MAX_FLOAT if value > 0 else -_MAX_FLOAT
    return False, value


def _local_path(artifact_uri: str) -> Path:
    """The folder of a ``file://`` artifact URI."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme not in ("", "file") or parsed.netloc not in ("", "localhost"):
        raise StoreError(f"artifact location {artifact_uri} is not a local folder", "INVALID_STATE")
    return Path(unquote(parsed.path))


def _usable_snapshot() -> Snapshot | None:
    """The shipped snapshot when the installed MLflow made it (read without importing MLflow)."""
    snap = snapshot()
    try:
        return snap if snap is not None and metadata.version("mlflow") == snap.mlflow else None
    except metadata.PackageNotFoundError:
        return None


def create_store(path: Path, snap: Snapshot) -> None:
    """Create the new store ``path`` as MLflow's first open leaves it, without MLflow.

    The snapshot's tables (MLflow's migrations at this version:
    ``tests/test_tracking_schema.py``) and MLflow's "Default" experiment 0 (artifacts in
    ``./mlruns/0``, as MLflow sets it for a sqlite store), written to a temporary file
    beside ``path`` and hard-linked into place, under the lock
    :func:`~backtest.tracking._store.prepare_store` takes: processes that open a fresh
    store together make it once, and none sees it half-made. A store that appeared
    meanwhile is left as it is.
    """
    import fcntl
    import threading

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.new")
    with open(path.with_name(path.name + ".lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if path.exists():
                return
            tmp.unlink(missing_ok=True)
            con = sqlite3.connect(tmp, isolation_level=None)
            try:
                con.executescript(snap.sql)
                now = _now_ms()
                con.execute(
                    "INSERT INTO experiments (experiment_id, name, artifact_location, "
                    "lifecycle_stage, creation_time, last_update_time, workspace) "
                    "VALUES (0, 'Default', ?, 'active', ?, ?, ?)",
                    (str(Path.cwd().resolve() / "mlruns" / "0"), now, now, _WORKSPACE),
                )
            finally:
                con.close()
            with contextlib.suppress(FileExistsError):  # made by a program that takes no lock
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
            fcntl.flock(lock, fcntl.LOCK_UN)


def _local_store(uri: str) -> tuple[Path, Snapshot] | None:
    """The store file of ``uri`` and the snapshot, where the sqlite client may write it.

    ``None``: the switch asks for MLflow, ``uri`` is no plain sqlite URI, or the installed
    MLflow is not the snapshot's.
    """
    if os.environ.get(SWITCH, "").strip().lower() == "mlflow":
        return None
    path = sqlite_path(uri)
    snap = _usable_snapshot()
    return None if path is None or snap is None else (path, snap)


def writes_without_mlflow(uri: str) -> bool:
    """Whether logging into ``uri`` will use the sqlite client (creates nothing)."""
    local = _local_store(uri)
    if local is None:
        return False
    if not local[0].exists():
        return True  # made from the snapshot by the first log
    client = lite_client(uri)
    if client is None:
        return False
    client.close()
    return True


def lite_client(uri: str) -> SqliteClient | None:
    """A :class:`SqliteClient` for ``uri`` where its rows are MLflow's (see the module), or None.

    A store that does not exist yet is created (:func:`create_store`).
    """
    local = _local_store(uri)
    if local is None:
        return None
    path, snap = local
    if not path.exists():
        try:
            create_store(path, snap)
        except (OSError, ImportError):  # (no fcntl: Windows) MLflow's own creation then
            return None  # makes it, or says what is wrong
    if not path.is_file():
        return None
    client = SqliteClient(path)
    try:
        opened = client.con.execute(  # MLflow's Default experiment: the store was opened once
            "SELECT 1 FROM experiments WHERE experiment_id = 0"  # (or made by create_store)
        ).fetchone()
        if opened is not None and _revision(client.con) == snap.revision:
            return client
    except sqlite3.Error:
        pass
    client.close()
    return None


class SqliteClient:
    """The part of ``MlflowClient`` that :mod:`backtest.tracking` uses, on one sqlite store.

    Same method names, arguments and results (the fields backtest reads) as
    ``MlflowClient``, plus the three calls :class:`~backtest.tracking._client.MlflowWriter`
    adds to MLflow's: :meth:`log_plain` (``log_batch`` of plain mappings),
    :meth:`runs_tagged` and :meth:`artifact_writer`. Close it (or use it as a context
    manager) when done.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.con = sqlite3.connect(path, timeout=60.0, isolation_level=None)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=NORMAL")

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> SqliteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (taken at once: no lock upgrade to deadlock on)."""
        self.con.execute("BEGIN IMMEDIATE")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    # --- experiments ---------------------------------------------------------------------

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        row = self.con.execute(
            "SELECT experiment_id, name, artifact_location, lifecycle_stage FROM experiments "
            "WHERE name = ? AND workspace = ?",
            (name, _WORKSPACE),
        ).fetchone()
        if row is None:
            return None
        tags = dict(
            self.con.execute(
                'SELECT "key", value FROM experiment_tags WHERE experiment_id = ?', (row[0],)
            ).fetchall()
        )
        return Experiment(str(row[0]), row[1], row[2], row[3], tags)

    def create_experiment(
        self, name: str, artifact_location: str | None = None, tags: Mapping[str, str] | None = None
    ) -> str:
        if not artifact_location:
            raise StoreError("an experiment needs an artifact location here", "INVALID_STATE")
        now = _now_ms()
        try:
            with self._write() as con:
                cur = con.execute(
                    "INSERT INTO experiments (name, artifact_location, lifecycle_stage, "
                    "creation_time, last_update_time, workspace) VALUES (?, ?, 'active', ?, ?, ?)",
                    (name, artifact_location, now, now, _WORKSPACE),
                )
                exp_id = cur.lastrowid
                con.executemany(
                    'INSERT INTO experiment_tags ("key", value, experiment_id) VALUES (?, ?, ?)',
                    [(k, v, exp_id) for k, v in (tags or {}).items()],
                )
        except sqlite3.IntegrityError as exc:
            raise StoreError(
                f"Experiment(name={name}) already exists. Error: {exc}", "RESOURCE_ALREADY_EXISTS"
            ) from exc
        return str(exp_id)

    def restore_experiment(self, experiment_id: str) -> None:
        with self._write() as con:
            con.execute(
                "UPDATE experiments SET lifecycle_stage = 'active', last_update_time = ? "
                "WHERE experiment_id = ?",
                (_now_ms(), int(experiment_id)),
            )
            con.execute(
                "UPDATE runs SET lifecycle_stage = 'active', deleted_time = NULL "
                "WHERE experiment_id = ?",
                (int(experiment_id),),
            )

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        with self._write() as con:
            con.execute(
                'INSERT INTO experiment_tags ("key", value, experiment_id) VALUES (?, ?, ?) '
                'ON CONFLICT ("key", experiment_id) DO UPDATE SET value = excluded.value',
                (key, value, int(experiment_id)),
            )

    # --- runs ----------------------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str,
        start_time: int | None = None,
        tags: Mapping[str, str] | None = None,
        run_name: str | None = None,
    ) -> Run:
        tags = dict(tags or {})
        start = int(start_time or _now_ms())
        run_id = uuid.uuid4().hex
        with self._write() as con:
            row = con.execute(
                "SELECT artifact_location, lifecycle_stage FROM experiments "
                "WHERE experiment_id = ?",
                (int(experiment_id),),
            ).fetchone()
            if row is None or row[1] != "active":
                raise StoreError(
                    f"experiment {experiment_id} is not active; cannot create a run in it",
                    "INVALID_STATE",
                )
            artifact_uri = f"{str(row[0]).rstrip('/')}/{run_id}/artifacts"
            name = run_name or tags.get("mlflow.runName") or run_id[:12]
            tags.setdefault("mlflow.runName", name)
            con.execute(
                "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, "
                "user_id, status, start_time, end_time, source_version, lifecycle_stage, "
                "artifact_uri, experiment_id, deleted_time) VALUES "
                "(?, ?, 'UNKNOWN', '', '', ?, 'RUNNING', ?, NULL, '', 'active', ?, ?, NULL)",
                (run_id, name, tags.get("mlflow.user", "unknown"), start, artifact_uri,
                 int(experiment_id)),
            )  # fmt: skip
            con.executemany(
                'INSERT INTO tags ("key", value, run_uuid) VALUES (?, ?, ?)',
                [(k, v, run_id) for k, v in tags.items()],
            )
        return Run(RunInfo(run_id, str(experiment_id), "RUNNING", start, artifact_uri))

    def _active(self, con: sqlite3.Connection, run_id: str) -> None:
        row = con.execute(
            "SELECT lifecycle_stage FROM runs WHERE run_uuid = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise StoreError(f"Run with id={run_id} not found", "RESOURCE_DOES_NOT_EXIST")
        if row[0] != "active":
            raise StoreError(f"The run {run_id} must be in the 'active' state.", "INVALID_STATE")

    def _set_tags(self, con: sqlite3.Connection, run_id: str, tags: Mapping[str, str]) -> None:
        con.executemany(
            'INSERT INTO tags ("key", value, run_uuid) VALUES (?, ?, ?) '
            'ON CONFLICT ("key", run_uuid) DO UPDATE SET value = excluded.value',
            [(k, v, run_id) for k, v in tags.items()],
        )
        if "mlflow.runName" in tags:  # MLflow keeps the run's name and its tag equal
            con.execute(
                "UPDATE runs SET name = ? WHERE run_uuid = ?", (tags["mlflow.runName"], run_id)
            )

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
        """``log_batch`` of plain mappings: params (never changed), metrics, tags (replaced)."""
        with self._write() as con:
            self._active(con, run_id)
            if params:
                old = dict(
                    con.execute(
                        'SELECT "key", value FROM params WHERE run_uuid = ?', (run_id,)
                    ).fetchall()
                )
                changed = [k for k, v in params.items() if k in old and old[k] != v]
                if changed:
                    raise StoreError(
                        f"Changing param values is not allowed: {changed} of run {run_id}",
                        "INVALID_PARAMETER_VALUE",
                    )
                con.executemany(
                    'INSERT INTO params ("key", value, run_uuid) VALUES (?, ?, ?)',
                    [(k, v, run_id) for k, v in params.items() if k not in old],
                )
            if metrics:
                self._log_metrics(con, run_id, metrics, int(timestamp_ms), int(step))
            if tags:
                self._set_tags(con, run_id, tags)

    def _log_metrics(
        self, con: sqlite3.Connection, run_id: str, metrics: Mapping[str, float], ts: int, step: int
    ) -> None:
        rows = [(k, *_stored(v)) for k, v in metrics.items()]
        con.executemany(
            'INSERT OR IGNORE INTO metrics ("key", value, timestamp, run_uuid, step, is_nan) '
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(k, value, ts, run_id, step, int(is_nan)) for k, is_nan, value in rows],
        )
        latest = {
            row[0]: row[1:]
            for row in con.execute(
                'SELECT "key", step, timestamp, value FROM latest_metrics WHERE run_uuid = ?',
                (run_id,),
            )
        }
        for key, is_nan, value in rows:  # MLflow's latest: highest (step, timestamp, value)
            old = latest.get(key)
            if old is None:
                con.execute(
                    'INSERT INTO latest_metrics ("key", value, timestamp, step, is_nan, run_uuid) '
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (key, value, ts, step, int(is_nan), run_id),
                )
            elif (step, ts, value) > tuple(old):
                con.execute(
                    "UPDATE latest_metrics SET value = ?, timestamp = ?, step = ?, is_nan = ? "
                    'WHERE "key" = ? AND run_uuid = ?',
                    (value, ts, step, int(is_nan), key, run_id),
                )
            latest[key] = (step, ts, value)

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        with self._write() as con:
            self._active(con, run_id)
            self._set_tags(con, run_id, {key: str(value)})

    def set_terminated(
        self, run_id: str, status: str = "FINISHED", end_time: int | None = None
    ) -> None:
        with self._write() as con:
            self._active(con, run_id)
            con.execute(
                "UPDATE runs SET status = ?, end_time = ? WHERE run_uuid = ?",
                (status, int(end_time or _now_ms()), run_id),
            )

    def delete_run(self, run_id: str) -> None:
        with self._write() as con:
            self._active(con, run_id)
            con.execute(
                "UPDATE runs SET lifecycle_stage = 'deleted', deleted_time = ? WHERE run_uuid = ?",
                (_now_ms(), run_id),
            )

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        rows = self.con.execute(
            'SELECT "key", value, timestamp, step, is_nan FROM metrics '
            'WHERE run_uuid = ? AND "key" = ? ORDER BY timestamp, step, value',
            (run_id, key),
        ).fetchall()
        return [Metric(k, math.nan if n else float(v), int(t), int(s)) for k, v, t, s, n in rows]

    def runs_tagged(self, experiment_ids: Sequence[str], key: str, value: str) -> list[Run]:
        """The active runs of the experiments whose tag ``key`` is ``value``, newest first."""
        marks = ", ".join("?" for _ in experiment_ids)
        rows = self.con.execute(
            "SELECT r.run_uuid, r.experiment_id, r.status, r.start_time, r.artifact_uri "
            'FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid AND t."key" = ? '
            f"WHERE t.value = ? AND r.lifecycle_stage = 'active' AND r.experiment_id IN ({marks}) "
            "ORDER BY r.start_time DESC, r.run_uuid",
            (key, value, *(int(e) for e in experiment_ids)),
        ).fetchall()
        return [Run(RunInfo(r[0], str(r[1]), r[2], int(r[3] or 0), r[4])) for r in rows]

    # --- artifacts -----------------------------------------------------------------------

    def artifact_folder(self, run_id: str) -> Path:
        row = self.con.execute(
            "SELECT artifact_uri FROM runs WHERE run_uuid = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise StoreError(f"Run with id={run_id} not found", "RESOURCE_DOES_NOT_EXIST")
        return _local_path(row[0])

    def artifact_writer(self, run: Run) -> Callable[..., None]:
        """``put(local_file, artifact_path=None)`` into the new ``run``'s artifacts."""
        return functools.partial(self.log_artifact, run.info.run_id)

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        """Copy a file into the run's artifacts (under ``artifact_path``), as MLflow does."""
        folder = self.artifact_folder(run_id)
        if artifact_path:
            folder = folder / artifact_path
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(local_path, folder / Path(local_path).name)
