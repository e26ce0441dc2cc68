"""A run refused for a full disk: one line naming the folder and the space, a FAILED run, no debris.

The disk fills up at a chosen file: the operating system's write is replaced (in the run's
own process, through ``sitecustomize``) by one that writes half the bytes and then fails with
``ENOSPC``, as a full disk does. For Python's file writes that is ``os.fdopen``'s file; for
the Parquet tables (written by pyarrow) ``DataFrame.to_parquet``.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FILL_UP = """
import errno
import os

_AT = os.environ["BACKTEST_TEST_DISK_FULL_AT"]  # the file whose write finds the disk full
_fdopen = os.fdopen


def _full():
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _hit(path):
    return os.path.basename(str(path)).startswith("." + _AT + ".")  # its temporary name


class _Filling:
    def __init__(self, fh):
        self._fh = fh

    def write(self, data):
        self._fh.write(bytes(data)[: len(data) // 2])
        self._fh.flush()
        raise _full()

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


def fdopen(fd, mode="r", *args, **kwargs):
    fh = _fdopen(fd, mode, *args, **kwargs)
    if "w" in mode and _hit(os.readlink(f"/proc/self/fd/{fd}")):
        return _Filling(fh)
    return fh


os.fdopen = fdopen

import io
import pandas as pd

_to_parquet = pd.DataFrame.to_parquet


def to_parquet(self, path=None, *args, **kwargs):
    if isinstance(path, str | os.PathLike) and _hit(path):
        buffer = io.BytesIO()
        _to_parquet(self, buffer, *args, **kwargs)
        with open(path, "wb") as fh:
            fh.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise _full()
    return _to_parquet(self, path, *args, **kwargs)


pd.DataFrame.to_parquet = to_parquet
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("at", "folder"),
    [
        ("report.html", "run"),
        ("trades.parquet", "run"),
        ("result.json", "run"),
        ("equity.png", "run/figures"),
    ],
    ids=["report", "table", "result", "figure"],
)
def test_a_full_disk_refuses_the_run_in_one_line_with_a_failed_mlflow_run(
    tmp_path: Path, at: str, folder: str
) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(FILL_UP)
    store = tmp_path / "mlflow.db"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "MLFLOW_TRACKING_URI")}
    env["PYTHONPATH"] = os.pathsep.join([str(hook), str(ROOT)])
    env["BACKTEST_TEST_DISK_FULL_AT"] = at
    done = subprocess.run(
        [sys.executable, "-m", "backtest", "+experiment=sma_cross", "data.n_bars=300",
         "figures=true", "report=true", "summary=false", f"tracking.uri=sqlite:///{store}",
         "hydra.run.dir=run"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    said = done.stdout + done.stderr
    assert done.returncode == 2, said[-3000:]
    assert "Traceback" not in said
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, said[-3000:]
    (line,) = errors
    where = str((tmp_path / folder).resolve())
    assert f"no space left on the disk holding '{where}'" in line or folder in line, line
    assert f"{at} needs " in line and " free)" in line, line  # the space that file needs
    # nothing half-written: no temporary file, no empty file, no result.json
    run = tmp_path / "run"
    files = [p for p in run.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.endswith(".tmp")], files
    assert not [p for p in files if p.stat().st_size == 0], files
    assert not (run / "result.json").exists()
    assert not [p for p in files if p.name == at], files
    # the MLflow run: FAILED, with that error
    with sqlite3.connect(store) as db:
        rows = db.execute(
            "select r.status, t.value from runs r join tags t on t.run_uuid = r.run_uuid "
            "where t.key = 'backtest.error'"
        ).fetchall()
    assert len(rows) == 1, rows
    status, error = rows[0]
    assert status == "FAILED"
    assert error.startswith("DiskFull: no space left on the disk holding") and at in error
