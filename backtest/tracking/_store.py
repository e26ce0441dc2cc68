"""The local sqlite store: ready in milliseconds, safe for many processes, quiet.

MLflow creates a new sqlite store by running its ~70 alembic migrations, one
transaction each: 0.7 s on a quiet machine with our WAL settings, 5 s with MLflow's
own, 40 s on a busy one, and it prints "Creating initial MLflow database tables..." on
the way. Here a new store is written in one transaction from ``mlflow_schema.sql``, the
tables MLflow's migrations made at the pinned version (``scripts/make_mlflow_schema.py``
writes it), then opened by MLflow, which checks its tables and alembic revision as it
does for any store. The snapshot is used only when the installed MLflow is the version
named in its header; with any other version, or if anything about it fails, MLflow's
own migrations create the store as before.

Several processes may open the same fresh store at once (the workers of a sweep on a
fresh checkout): :func:`prepare_store` lets one of them create it under a ``flock``
while the others wait, and the new file appears under its name in one step (a hard
link of a finished file), so no process ever opens a half-made store.

MLflow's own log lines ("Creating initial ...", alembic's) never reach the terminal
while backtest talks to MLflow (:func:`quiet_mlflow`): they go to the
``backtest.tracking`` logger at DEBUG; MLflow's warnings and errors keep their level.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("backtest.tracking")

SCHEMA_FILE = Path(__file__).with_name("mlflow_schema.sql")
SQLITE = "sqlite:///"
# The loggers MLflow gives their own stderr handler when it is imported.
_MLFLOW_LOGGERS = ("mlflow", "alembic", "huey")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The shipped schema: the MLflow version and alembic revision it was made at.

    Attributes:
        mlflow: ``mlflow.__version__`` of the MLflow that made it.
        revision: The alembic revision of its tables.
        sql: The SQL script that creates the tables.
    """

    mlflow: str
    revision: str
    sql: str


@functools.lru_cache(maxsize=1)
def snapshot() -> Snapshot | None:
    """The shipped schema snapshot, ``None`` when the file is missing or has no header."""
    try:
        text = SCHEMA_FILE.read_text()
    except OSError:
        return None
    header = {}
    for line in text.splitlines()[:10]:
        parts = line.removeprefix("-- ").split(" ")
        if line.startswith("-- ") and len(parts) == 2:
            header[parts[0]] = parts[1]
    if "mlflow" not in header or "alembic" not in header:
        return None
    return Snapshot(header["mlflow"], header["alembic"], text)


def usable_snapshot() -> Snapshot | None:
    """The snapshot when the installed MLflow made it (same version), else ``None``."""
    import mlflow

    snap = snapshot()
    if snap is None or snap.mlflow != mlflow.__version__:
        return None
    return snap


def _accepted_by_mlflow(path: Path) -> None:
    """MLflow's own checks of an existing store: every table there, at its head revision.

    Raises:
        MlflowException: the revision differs (MLflow's "out-of-date database schema").
        RuntimeError: a table MLflow's models need is missing.
    """
    import sqlalchemy
    from mlflow.store.db.utils import _all_tables_exist, _verify_schema

    engine = sqlalchemy.create_engine(SQLITE + str(path), poolclass=sqlalchemy.pool.NullPool)
    try:
        if not _all_tables_exist(engine):
            raise RuntimeError(f"{path} lacks some of MLflow's tables")
        _verify_schema(engine)
    finally:
        engine.dispose()


def create_from_snapshot(db: Path) -> bool:
    """Create the store ``db`` from the shipped snapshot; ``False`` when it was not.

    Nothing happens (``False``) when ``db`` exists, when the installed MLflow is not the
    snapshot's version, or when anything fails (the reason is logged at DEBUG): the
    caller then lets MLflow's migrations create the store. The tables are written to a
    temporary file beside ``db``, checked as MLflow checks a store, then hard-linked to
    ``db``, which fails rather than replace a store another program made meanwhile.
    """
    if db.exists():
        return False
    snap = usable_snapshot()
    if snap is None:
        log.debug("no MLflow schema snapshot for this MLflow version; migrating %s", db)
        return False
    tmp = db.with_name(f".{db.name}.{os.getpid()}.{threading.get_ident()}.new")
    try:
        tmp.unlink(missing_ok=True)
        con = sqlite3.connect(tmp, isolation_level=None)
        try:
            con.executescript(snap.sql)
        finally:
            con.close()
        _accepted_by_mlflow(tmp)
        os.link(tmp, db)
    except FileExistsError:
        return False  # made by a program that does not take our lock; it is theirs
    except Exception as exc:  # any doubt: MLflow's migrations make the store
        log.debug("store %s not made from the schema snapshot (%s); migrating", db, exc)
        return False
    finally:
        tmp.unlink(missing_ok=True)
    log.debug("created MLflow store %s from the schema of mlflow %s", db, snap.mlflow)
    return True


_READY: set[str] = set()


def prepare_store(uri: str) -> None:
    """Create or open the sqlite store ``uri`` once, under a cross-process file lock.

    MLflow creates a new store's tables (and migrates an old one) when a process first
    opens it, without any lock: several processes opening a fresh
    ``sqlite:///outputs/mlflow.db`` at once (the workers of an rq sweep on a fresh
    checkout) run the schema creation concurrently, fail with "table experiments
    already exists" or "duplicate column name", or leave the store stuck
    mid-migration. Here the first process to get ``<db>.lock`` (``fcntl.flock``)
    creates the store (from the schema snapshot when it fits, see
    :func:`create_from_snapshot`) and opens it with MLflow, which checks it and adds
    its "Default" experiment; the others wait, then find every table in place. Done
    once per process and URI; a no-op for servers and other databases.
    """
    if not uri.startswith(SQLITE) or uri in _READY:
        return
    import fcntl

    from mlflow.tracking._tracking_service.utils import _get_store

    db = Path(uri[len(SQLITE) :])
    db.parent.mkdir(parents=True, exist_ok=True)
    with quiet_mlflow(), open(db.with_name(db.name + ".lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            create_from_snapshot(db)
            _get_store(uri)  # checks the tables (creates them when still missing)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _READY.add(uri)


class _ToDebug(logging.Handler):
    """Re-logs MLflow's records on ``backtest.tracking``: info as DEBUG, warnings as they are."""

    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelno if record.levelno >= logging.WARNING else logging.DEBUG
        if log.isEnabledFor(level):
            log.log(level, "MLflow (%s): %s", record.name, record.getMessage())


_QUIET_LOCK = threading.Lock()
_quiet_depth = 0
_saved: dict[str, tuple[list[logging.Handler], bool]] = {}


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """Inside this block, MLflow's log lines go to ``backtest.tracking``, not the terminal.

    MLflow gives its ``mlflow``, ``alembic`` and ``huey`` loggers their own stderr
    handler when imported, so its INFO lines ("Creating initial MLflow database
    tables...") print whatever the application's logging says. Here, for the duration
    of the block, those loggers hand their records to :class:`_ToDebug` instead; their
    own handlers come back when the last nested block (of any thread) ends. Imports
    MLflow first (MLflow's import would replace the handlers set here).
    """
    global _quiet_depth
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow  # noqa: F401 - configures its loggers now, not inside the block

    with _QUIET_LOCK:
        if _quiet_depth == 0:
            forward = _ToDebug()
            for name in _MLFLOW_LOGGERS:
                logger = logging.getLogger(name)
                _saved[name] = (logger.handlers[:], logger.propagate)
                logger.handlers = [forward]
                logger.propagate = False
        _quiet_depth += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                for name, (handlers, propagate) in _saved.items():
                    logger = logging.getLogger(name)
                    logger.handlers = handlers
                    logger.propagate = propagate
                _saved.clear()
