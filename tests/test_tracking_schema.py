"""A fresh sqlite store from the shipped schema snapshot: accepted by MLflow, quiet, safe.

Real MLflow throughout: stores made by MLflow's own migrations are the reference.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from backtest.tracking import _store
from backtest.tracking._client import client_for

ROOT = Path(__file__).resolve().parent.parent


def migrated_store(path: Path) -> Path:
    """A store made by MLflow alone (its migrations), the reference for the snapshot's."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    try:
        with _store.quiet_mlflow():
            _initialize_tables(engine)
    finally:
        engine.dispose()
    return path


def schema_of(path: Path) -> dict[str, Any]:
    """Every table's columns, keys, indexes and checks as SQLAlchemy's inspector reads them."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    try:
        inspector = sqlalchemy.inspect(engine)
        out: dict[str, Any] = {}
        for table in sorted(inspector.get_table_names()):
            out[table] = {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"], c["default"])
                    for c in inspector.get_columns(table)
                ],
                "pk": inspector.get_pk_constraint(table)["constrained_columns"],
                "fks": sorted(
                    (tuple(f["constrained_columns"]), f["referred_table"], str(f["options"]))
                    for f in inspector.get_foreign_keys(table)
                ),
                "indexes": sorted(
                    (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                    for i in inspector.get_indexes(table)
                ),
                "unique": sorted(
                    tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)
                ),
                "checks": sorted(c["sqltext"] for c in inspector.get_check_constraints(table)),
            }
        return out
    finally:
        engine.dispose()


def rows_of(path: Path, table: str) -> list[tuple[Any, ...]]:
    import sqlite3

    con = sqlite3.connect(path)
    try:
        return sorted(con.execute(f'SELECT * FROM "{table}"').fetchall())
    finally:
        con.close()


@pytest.fixture
def fresh_process_state() -> Any:
    """Forget which stores this process prepared, so each test creates its own."""
    _store._READY.clear()
    yield
    _store._READY.clear()


def test_snapshot_creates_the_tables_mlflow_migrations_create(
    tmp_path: Path, fresh_process_state: None
) -> None:
    import mlflow

    snap = _store.snapshot()
    assert snap is not None
    if snap.mlflow != mlflow.__version__:  # another MLflow: never used (run the script)
        assert _store.usable_snapshot() is None
        assert not _store.create_from_snapshot(tmp_path / "snap.db")
        return
    made = tmp_path / "snap.db"
    assert _store.create_from_snapshot(made)
    reference = migrated_store(tmp_path / "ref.db")
    assert schema_of(made) == schema_of(reference)
    for table in ("alembic_version", "workspaces"):
        assert rows_of(made, table) == rows_of(reference, table)
    assert not list(tmp_path.glob(".*.new")), "the temporary file is left behind"


def test_a_store_from_the_snapshot_is_accepted_and_used_by_mlflow(
    tmp_path: Path, fresh_process_state: None
) -> None:
    import mlflow
    from mlflow.store.db.utils import _get_latest_schema_revision

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = client_for(uri)  # made from the snapshot, opened (checked) by MLflow
    assert rows_of(tmp_path / "mlflow.db", "alembic_version") == [(_get_latest_schema_revision(),)]
    exp = client.create_experiment("snap")
    run = client.create_run(exp, run_name="r1")
    client.log_metric(run.info.run_id, "sharpe_ratio", 1.25)
    client.log_param(run.info.run_id, "fast", "10")
    client.set_terminated(run.info.run_id)
    mlflow.set_tracking_uri(uri)
    try:
        frame = mlflow.search_runs(experiment_ids=[exp])
    finally:
        mlflow.set_tracking_uri(None)
    assert frame["metrics.sharpe_ratio"].tolist() == [1.25]
    assert frame["params.fast"].tolist() == ["10"]
    assert frame["status"].tolist() == ["FINISHED"]
    assert {e.name for e in client.search_experiments()} == {"snap", "Default"}


def test_another_mlflow_version_migrates_instead(
    tmp_path: Path, fresh_process_state: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _store.SCHEMA_FILE.read_text()
    other = tmp_path / "other_schema.sql"
    snap = _store.snapshot()
    assert snap is not None
    other.write_text(text.replace(f"-- mlflow {snap.mlflow}\n", "-- mlflow 0.0.1\n", 1))
    monkeypatch.setattr(_store, "SCHEMA_FILE", other)
    _store.snapshot.cache_clear()
    try:
        assert _store.snapshot() == _store.Snapshot("0.0.1", snap.revision, other.read_text())
        assert _store.usable_snapshot() is None
        assert not _store.create_from_snapshot(tmp_path / "skipped.db")
        assert not (tmp_path / "skipped.db").exists()
        client = client_for(f"sqlite:///{tmp_path}/mlflow.db")  # MLflow's migrations
        assert [e.name for e in client.search_experiments()] == ["Default"]
    finally:
        _store.snapshot.cache_clear()
    assert schema_of(tmp_path / "mlflow.db") == schema_of(migrated_store(tmp_path / "ref.db"))


def test_a_snapshot_mlflow_rejects_is_never_put_in_place(
    tmp_path: Path, fresh_process_state: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap = _store.snapshot()
    assert snap is not None
    bad = tmp_path / "bad_schema.sql"  # right version, wrong revision: MLflow refuses it
    bad.write_text(snap.sql.replace(f"VALUES('{snap.revision}')", "VALUES('0123456789ab')"))
    monkeypatch.setattr(_store, "SCHEMA_FILE", bad)
    _store.snapshot.cache_clear()
    try:
        assert not _store.create_from_snapshot(tmp_path / "mlflow.db")
        assert not (tmp_path / "mlflow.db").exists()
        assert not list(tmp_path.glob(".*.new"))
    finally:
        _store.snapshot.cache_clear()


def test_an_existing_store_is_never_replaced(tmp_path: Path, fresh_process_state: None) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    exp = client_for(uri).create_experiment("kept")
    _store._READY.clear()
    assert not _store.create_from_snapshot(tmp_path / "mlflow.db")
    assert client_for(uri).get_experiment(exp).name == "kept"


_FIRST_USE = textwrap.dedent(
    """
    import logging, sys
    logging.basicConfig(level=logging.INFO)  # an application that shows INFO lines
    from backtest.tracking import _store
    if sys.argv[2] == "migrate":
        _store.SCHEMA_FILE = _store.SCHEMA_FILE.with_name("absent.sql")
    from backtest.tracking._client import client_for
    client = client_for(f"sqlite:///{sys.argv[1]}/mlflow.db")
    print(sorted(e.name for e in client.search_experiments()))
    """
)


@pytest.mark.parametrize("how", ["snapshot", "migrate"])
def test_first_use_prints_none_of_mlflows_lines(tmp_path: Path, how: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_USE, str(tmp_path), how],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "['Default']"
    assert "mlflow" not in done.stderr.lower(), done.stderr
    assert "alembic" not in done.stderr.lower(), done.stderr


def test_mlflow_lines_go_to_the_backtest_logger_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with caplog.at_level(logging.DEBUG, logger="backtest.tracking"), _store.quiet_mlflow():
        logging.getLogger("mlflow.store.db.utils").info(
            "Creating initial MLflow database tables..."
        )
        logging.getLogger("mlflow.tracking").warning("something MLflow warns about")
    seen = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert seen == [
        (
            "backtest.tracking",
            logging.DEBUG,
            "MLflow (mlflow.store.db.utils): Creating initial MLflow database tables...",
        ),
        (
            "backtest.tracking",
            logging.WARNING,
            "MLflow (mlflow.tracking): something MLflow warns about",
        ),
    ]
    mlflow_logger = logging.getLogger("mlflow")
    assert not any(isinstance(h, _store._ToDebug) for h in mlflow_logger.handlers)
    assert mlflow_logger.handlers, "MLflow's own handler is back after the block"


def test_the_generator_script_reproduces_the_shipped_snapshot() -> None:
    import mlflow

    snap = _store.snapshot()
    assert snap is not None
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_mlflow_schema.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if snap.mlflow == mlflow.__version__:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "up to date" in done.stdout
    else:  # another MLflow: the snapshot is stale, and never used
        assert done.returncode == 1 and "STALE" in done.stdout
        assert _store.usable_snapshot() is None
