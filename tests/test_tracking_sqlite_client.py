"""The sqlite client writes the rows MLflow writes, and MLflow reads them back.

The same run directories (a search with nested trials, two jobs of a Hydra sweep, a
failed job, a mirror of a run already logged) are logged into two stores that MLflow
created: once through MLflow's own client (``BACKTEST_MLFLOW_CLIENT=mlflow``), once
through :class:`backtest.tracking._sqlite_client.SqliteClient`. Every row of every
table they touch must be the same, up to run ids and the clock; the artifacts the
same files. MLflow's reference is the real MLflow of this environment (no mocks).
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from backtest.config import TrackingConfig
from backtest.tracking import _sqlite_client
from backtest.tracking._log import log_failure, log_result
from backtest.tracking._mirror import mirror_result
from backtest.tracking._store import prepare_store
from tests.mlflow_runs import write_result_dir

EXPERIMENT = "lite"


def _run(folder: Path, record: dict[str, Any], config: dict[str, Any], **tables: Any) -> Path:
    record = {
        "job_id": f"job-{folder.name}",
        "name": EXPERIMENT,
        "params": {"fast": 10, "slow": 100},
        "metrics": {"sharpe_ratio": 0.7, "total_return": 0.2, "max_drawdown": float("-inf")},
        "git_commit": "0" * 40,
        **record,
    }
    return write_result_dir(folder, record, config, tables or None)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run directories of every kind the mirror logs (the same ones go to both stores)."""
    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(5)
    trials = pd.DataFrame(
        {
            "trial": np.arange(12),
            "fast": rng.integers(2, 50, 12),
            "slow": rng.integers(60, 200, 12),
            "sharpe_ratio": rng.normal(0.5, 0.4, 12),
            "status": "complete",
        }
    )
    trials.loc[3, "sharpe_ratio"] = np.nan
    config = {
        "name": EXPERIMENT,
        "strategy": {"_target_": "backtest.strategies.SmaCross", "fast": 10, "slow": 100},
        "search": {"method": "random", "metric": "sharpe_ratio", "direction": "maximize"},
    }
    search = _run(
        root / "search",
        {"task": "search", "search": {"n_trials": 12, "best_score": 1.25}},
        config,
        trials=trials,
    )
    sweep = root / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(
        yaml.safe_dump({"hydra": {"overrides": {"task": ["strategy.fast=5,10"]}}})
    )
    jobs = {
        f"job{n}": _run(
            sweep / str(n),
            {"metrics": {"sharpe_ratio": s, "objective": s}, "params": {"fast": 5 + 5 * n}},
            config,
        )
        for n, s in enumerate([0.4, 0.9])
    }
    return {"search": search, **jobs}


def _log_everything(uri: str, runs: dict[str, Path]) -> None:
    cfg = TrackingConfig(uri=uri, experiment_name=EXPERIMENT, max_child_runs=5)
    for run_dir in runs.values():
        log_result(run_dir, cfg, infer_git=False)
    assert not mirror_result(runs["search"], cfg, uri=uri).logged  # found, not logged again
    job = types.SimpleNamespace(
        config={"name": EXPERIMENT, "seed": 3, "strategy": {"fast": 4, "slow": 9}},
        task="backtest",
        job_id="job-failed",
        config_hash="e" * 64,
        started_at="2026-01-02T03:04:05.000+00:00",
    )
    log_failure(job, ValueError("no data"), tracking_cfg=cfg)


def _rows(db: Path) -> dict[str, Any]:
    """Every row the logs touched, run ids replaced by the run's name, clocks by a mark."""
    con = sqlite3.connect(db)
    try:
        names = dict(con.execute("SELECT run_uuid, name FROM runs"))

        def plain(value: Any) -> Any:
            text = value if isinstance(value, str) else None
            if text is not None:
                for run_id, name in names.items():
                    text = text.replace(run_id, f"<{name}>")
                return text.replace(str(db.parent), "<store>")
            return value

        def table(query: str) -> list[tuple[Any, ...]]:
            return sorted(
                (tuple(plain(v) for v in row) for row in con.execute(query)),
                key=repr,
            )

        recent = (  # a time of the clock (sweep parents, failures) is "now" in both stores
            "CASE WHEN {0} IS NULL THEN 'null' WHEN {0} > 1700000000000 THEN 'now' ELSE {0} END"
        )
        return {
            "experiments": table(
                "SELECT experiment_id, name, artifact_location, lifecycle_stage, workspace "
                "FROM experiments"
            ),
            "experiment_tags": table('SELECT experiment_id, "key", value FROM experiment_tags'),
            "runs": table(
                "SELECT run_uuid, name, source_type, source_name, entry_point_name, user_id, "
                f"status, {recent.format('start_time')}, {recent.format('end_time')}, "
                "source_version, lifecycle_stage, artifact_uri, experiment_id, "
                f"{recent.format('deleted_time')} FROM runs"
            ),
            "tags": table('SELECT run_uuid, "key", value FROM tags'),
            "params": table('SELECT run_uuid, "key", value FROM params'),
            "metrics": table(
                f'SELECT run_uuid, "key", value, {recent.format("timestamp")}, step, is_nan '
                "FROM metrics"
            ),
            "latest_metrics": table(
                f'SELECT run_uuid, "key", value, {recent.format("timestamp")}, step, is_nan '
                "FROM latest_metrics"
            ),
        }
    finally:
        con.close()


def _artifacts(db: Path) -> dict[str, str]:
    root = db.parent / "mlartifacts"
    con = sqlite3.connect(db)
    names = dict(con.execute("SELECT run_uuid, name FROM runs"))
    con.close()
    found = {}
    for path in root.rglob("*"):
        if path.is_file():
            rel = path.relative_to(root).as_posix()
            for run_id, name in names.items():
                rel = rel.replace(run_id, f"<{name}>")
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="module")
def stores(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same runs logged by MLflow's client into one store, by the sqlite client into another."""
    both = []
    for writer in ("mlflow", "sqlite"):
        db = tmp_path_factory.mktemp(writer) / "mlflow.db"
        mp = pytest.MonkeyPatch()
        if writer == "mlflow":
            mp.setenv(_sqlite_client.SWITCH, "mlflow")
        else:
            mp.delenv(_sqlite_client.SWITCH, raising=False)
        used: list[str] = []
        real = _sqlite_client.SqliteClient.__init__

        def spy(self: Any, path: Path, real: Any = real, used: list[str] = used) -> None:
            used.append(str(path))
            real(self, path)

        mp.setattr(_sqlite_client.SqliteClient, "__init__", spy)
        try:
            _log_everything(f"sqlite:///{db}", runs)
        finally:
            mp.undo()
        # the MLflow store got no sqlite client; the other was made and written by it
        assert bool(used) == (writer == "sqlite"), used
        both.append(db)
    return both[0], both[1]


TABLES = ["experiments", "experiment_tags", "runs", "tags", "params", "metrics", "latest_metrics"]


@pytest.mark.parametrize("name", TABLES)
def test_the_sqlite_client_writes_the_rows_mlflow_writes(
    stores: tuple[Path, Path], name: str
) -> None:
    by_mlflow, by_sqlite = (_rows(db)[name] for db in stores)
    assert by_sqlite == by_mlflow
    assert by_mlflow  # (something was logged in each table)


def test_the_sqlite_client_copies_the_artifacts_mlflow_copies(stores: tuple[Path, Path]) -> None:
    by_mlflow, by_sqlite = (_artifacts(db) for db in stores)
    assert by_sqlite == by_mlflow
    assert any(p.endswith("tables/trials.parquet") for p in by_sqlite)


def test_mlflow_reads_what_the_sqlite_client_wrote(stores: tuple[Path, Path]) -> None:
    """MLflow's client and its search see the same runs in both stores."""
    import mlflow
    from mlflow import MlflowClient

    from backtest.tracking._store import _accepted_by_mlflow

    frames = []
    for db in stores:
        _accepted_by_mlflow(db)  # MLflow still accepts the store (tables, revision)
        client = MlflowClient(tracking_uri=f"sqlite:///{db}")
        exp = client.get_experiment_by_name(EXPERIMENT)
        mlflow.set_tracking_uri(f"sqlite:///{db}")
        frame = mlflow.search_runs([exp.experiment_id], max_results=1000)
        frame = frame.drop(columns=[c for c in frame if "time" in c or c.endswith("_id")])
        frame = frame.drop(columns=["artifact_uri", "tags.mlflow.parentRunId"])
        frame = frame[sorted(frame.columns)]  # (MLflow orders the columns as rows come)
        frames.append(frame.sort_values("tags.mlflow.runName").reset_index(drop=True))
        sweep = client.search_runs(
            [exp.experiment_id], filter_string="tags.`backtest.kind` = 'sweep'"
        )
        assert len(sweep) == 1  # one parent for the sweep's two jobs
        history = client.get_metric_history(sweep[0].info.run_id, "job_objective")
        assert sorted(m.value for m in history) == [0.4, 0.9]
        assert sweep[0].data.metrics["objective"] == 0.9
    pd.testing.assert_frame_equal(frames[1], frames[0])
    assert len(frames[0]) == 1 + 5 + 1 + 2 + 1  # search, 5 trials, sweep, 2 jobs, the failure


def test_a_tracked_run_never_imports_mlflow(tmp_path: Path) -> None:
    """The CLI's runs make and log into the default store without loading MLflow."""
    probe = (
        "import sys, runpy; sys.argv = ['backtest', '+experiment=sma_cross', 'data.n_bars=300', "
        "'report=false'];\n"
        "try:\n    runpy.run_module('backtest', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('MLFLOW', 'mlflow' in sys.modules)"
    )
    seen = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
        )
        seen.append(out.stdout.strip().splitlines()[-1])
    assert seen == ["MLFLOW False", "MLFLOW False"]  # the first one makes the store too
    con = sqlite3.connect(tmp_path / "outputs" / "mlflow.db")
    statuses = [r[0] for r in con.execute("SELECT status FROM runs ORDER BY start_time")]
    con.close()
    assert statuses == ["FINISHED", "FINISHED"]


def _every_row(db: Path) -> dict[str, Any]:
    """Every table's schema and rows; a clock time (milliseconds since 2023) is "now"."""
    con = sqlite3.connect(db)
    try:
        out: dict[str, Any] = {}
        for name, sql in con.execute("SELECT name, sql FROM sqlite_master ORDER BY name"):
            table = sql and sql.startswith("CREATE TABLE")
            rows = con.execute(f'SELECT * FROM "{name}"').fetchall() if table else []
            out[name] = (
                sql,
                sorted(
                    (tuple("now" if isinstance(v, int) and v > 1.7e12 else v for v in r)
                     for r in rows),
                    key=repr,
                ),
            )  # fmt: skip
        return out
    finally:
        con.close()


def test_a_new_store_is_the_store_mlflow_makes(tmp_path: Path) -> None:
    """The sqlite client's new store: MLflow's tables, rows and Default experiment, accepted."""
    from backtest.tracking._store import _accepted_by_mlflow

    made = {}
    for writer in ("mlflow", "sqlite"):
        db = tmp_path / writer / "mlflow.db"
        if writer == "mlflow":
            prepare_store(f"sqlite:///{db}")
        else:
            client = _sqlite_client.lite_client(f"sqlite:///{db}")
            assert client is not None
            client.close()
        made[writer] = _every_row(db)
    assert made["sqlite"] == made["mlflow"]
    assert made["sqlite"]["experiments"][1][0][:2] == (0, "Default")
    _accepted_by_mlflow(tmp_path / "sqlite" / "mlflow.db")
