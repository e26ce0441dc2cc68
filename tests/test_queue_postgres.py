"""A distributed search on PostgreSQL, run as the README writes it: passwordless and with one.

The machine's PostgreSQL on 127.0.0.1:5432 (trust authentication); each test gets a new
database of its own, dropped afterwards. Workers are started as documented: ``backtest
worker`` with ``REDIS_URL`` and the study storage in ``BACKTEST_STUDY_STORAGE``; the
search is ``backtest search-distributed --storage ...``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.redis, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent
PG = ("127.0.0.1", 5432)
SPACE = "+search.space={fast: {low: 5, high: 30}, slow: {low: 40, high: 100, step: 10}}"


def _pg_up() -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(PG) == 0


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL (role ``postgres``, trust)."""
    psycopg2 = pytest.importorskip("psycopg2")
    if not _pg_up():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    name = f"backtest_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host=PG[0], port=PG[1], user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def _complete_trials(url: str) -> int:
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from trials where state = 'COMPLETE'")
        return int(cur.fetchone()[0])


def _search(own_redis: Any, tmp_path: Path, worker_storage: str, driver_storage: str) -> None:
    from backtest.queue import LocalWorkers

    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "MLFLOW_TRACKING_URI")}
    env.update(PYTHONPATH=str(ROOT), REDIS_URL=own_redis.url)
    workers = LocalWorkers(
        own_redis.url,
        "backtest",
        1,
        env={"BACKTEST_STUDY_STORAGE": worker_storage},  # as a worker is started by hand
        log_dir=tmp_path / "logs",
    )
    with workers:
        done = subprocess.run(
            [sys.executable, "-m", "backtest", "search-distributed", "--n-trials", "4",
             "--workers", "2", "--storage", driver_storage, "+experiment=sma_cross",
             "search=tpe", SPACE, "data.n_bars=300", "tracking=none"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert done.returncode == 0, done.stderr[-3000:] + logs[-3000:]
    assert "best sharpe_ratio" in done.stdout
    assert "***@" not in logs  # no masked URL was used to connect
    assert "role" not in done.stderr + logs  # (a masked user name made workers connect as ***)


@pytest.mark.parametrize(
    "password", ["", "s3cret-pw"], ids=["passwordless", "password-in-the-workers-environment"]
)
def test_the_readme_postgresql_search_runs(
    own_redis: Any, database: str, tmp_path: Path, password: str
) -> None:
    """The README's search on PostgreSQL; a password in the URL is written nowhere."""
    login = f"postgres:{password}" if password else "postgres"
    url = f"postgresql://{login}@127.0.0.1:5432/{database}"
    _search(own_redis, tmp_path, worker_storage=url, driver_storage=url)
    assert _complete_trials(url) >= 4
    if password:
        written = "".join(
            p.read_text(errors="replace") for p in (tmp_path / "outputs").rglob("*") if p.is_file()
        )
        assert password not in written and "postgres:***@127.0.0.1" in written
