"""Secrets are never written down: masking rules, and a planted password found nowhere."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backtest.masking import (
    MASK,
    MaskingFilter,
    mask_config,
    mask_text,
    mask_url,
    remember,
    reveal,
)
from backtest.tasks._jobs import BacktestJob
from tests.cli_run import backtest_command

PASSWORD = "hunter2-5ecr3t-4c9f"
TOKEN = "tok-7e1d2b"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("rediss://user:pw@h/1", "rediss://user:***@h/1"),
        ("postgresql://optuna:pw@db:5432/optuna", "postgresql://optuna:***@db:5432/optuna"),
        ("http://bob:pw@127.0.0.1:5000", "http://bob:***@127.0.0.1:5000"),
        ("unix:///tmp/r.sock?db=0&password=pw", "unix:///tmp/r.sock?db=0&password=***"),
        ("sqlite:///outputs/mlflow.db", "sqlite:///outputs/mlflow.db"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("postgresql://optuna@db:5432/optuna", "postgresql://optuna@db:5432/optuna"),
        ("mysql+pymysql://reader@db/x", "mysql+pymysql://reader@db/x"),
        ("rediss://worker@h:6380/0", "rediss://worker@h:6380/0"),
        ("https://tok-7e1d2b@mlflow.example/x", "https://***@mlflow.example/x"),
    ],
    ids=["redis", "rediss-user", "postgresql", "mlflow-http", "unix-query", "sqlite", "no-pw",
         "postgresql-user-kept", "mysql-user-kept", "redis-user-kept", "https-token"],
)  # fmt: skip
def test_mask_url_and_mask_text_agree(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert mask_text(f"cannot reach {url} now") == f"cannot reach {masked} now"


def test_secret_keys_and_urls_in_a_config_are_masked_at_any_depth() -> None:
    config = {
        "queue": {"redis_url": f"redis://:{PASSWORD}@q:6379/0"},
        "db": {"password": PASSWORD, "api_token": TOKEN, "client_secret": "s", "user": "bob"},
        "urls": [f"postgresql://u:{PASSWORD}@db/x"],
        "n": 3,
        "empty_password": None,
    }
    out = mask_config(config)
    assert PASSWORD not in repr(out) and TOKEN not in repr(out)
    assert out["db"] == {"password": MASK, "api_token": MASK, "client_secret": MASK, "user": "bob"}
    assert out["queue"]["redis_url"] == "redis://:***@q:6379/0"
    assert out["n"] == 3 and out["empty_password"] is None
    assert config["db"]["password"] == PASSWORD  # the input is not changed


def test_a_job_record_never_holds_the_secret(compose) -> None:  # type: ignore[no-untyped-def]
    cfg = compose(f"queue.redis_url=redis://:{PASSWORD}@q:6379/0", "tracking=none")
    job = BacktestJob.from_config(cfg)
    assert PASSWORD not in job.to_json()
    assert job.config["queue"]["redis_url"] == "redis://:***@q:6379/0"
    # the identity of the job does not depend on where it is queued
    assert job.job_id == BacktestJob.from_config(compose("tracking=none")).job_id


def test_reveal_uses_only_what_this_process_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    real = f"redis://:{PASSWORD}@elsewhere:6379/3"
    assert reveal(mask_url(real)) == mask_url(real)  # nobody here knows it: stays masked
    monkeypatch.setenv("REDIS_URL", real)
    assert reveal(mask_url(real)) == real
    monkeypatch.delenv("REDIS_URL")
    given = f"http://bob:{PASSWORD}@tracking:5000"
    remember(given)
    assert reveal("http://bob:***@tracking:5000") == given
    assert reveal("sqlite:///x.db") == "sqlite:///x.db"


def test_log_records_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("backtest.test_masking")
    handler = logging.StreamHandler(stream=open(os.devnull, "w"))  # noqa: SIM115
    record = logger.makeRecord(
        logger.name,
        logging.INFO,
        __file__,
        1,
        "connecting to %s",
        (f"redis://:{PASSWORD}@h",),
        None,
    )
    assert MaskingFilter().filter(record)
    assert PASSWORD not in handler.format(record)
    assert "redis://:***@h" in record.getMessage()
    handler.stream.close()


# --- end to end: a planted password through a real queue, worker, MLflow server -------------


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[str]:
    """A real Redis that requires ``PASSWORD``, on a private Unix socket."""
    pytest.importorskip("rq")
    from backtest.queue._redis import redis_server_executable

    sock = tmp_path / "redis" / "redis.sock"
    sock.parent.mkdir()
    proc = subprocess.Popen(
        [
            redis_server_executable(),
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--requirepass",
            PASSWORD,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(sock.parent),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"unix://{sock}?db=0&password={PASSWORD}"
    proc.terminate()
    proc.wait(10)


def _redis_values(url: str) -> bytes:
    """Every key and value in the database, serialised by Redis itself (``DUMP``)."""
    import redis

    client = redis.Redis.from_url(url)
    out = b""
    for key in client.scan_iter(count=1000):
        out += key + (client.dump(key) or b"")
    client.close()
    return out


def _tree_bytes(folder: Path) -> Iterator[tuple[Path, bytes]]:
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_socket():
            yield path, path.read_bytes()


@pytest.mark.slow
@pytest.mark.redis
def test_a_planted_password_is_found_nowhere(
    tmp_path: Path, password_redis: str, mlflow_server: str
) -> None:
    """REDIS_URL and the tracking URI carry a password; a sweep runs on a real queue
    with a local worker and logs to a real MLflow server; then outputs/, the MLflow
    store (database bytes and artifacts), every Redis value and the console are grepped."""
    secret_uri = mlflow_server.replace("http://", f"http://backtest:{PASSWORD}@")
    work = tmp_path / "work"
    work.mkdir()
    proc = backtest_command(
        "-m",
        "hydra/launcher=rq",
        "hydra.launcher.local_workers=1",
        "+experiment=sma_cross",
        "data.n_bars=300",
        "strategy.slow=30",
        "strategy.fast=5,10",
        "figures=false",
        "tracking=server",
        f"tracking.uri={secret_uri}",
        "tracking.experiment_name=masking-e2e",
        cwd=work,
        env={"REDIS_URL": password_redis},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = sorted((work / "outputs").rglob("result.json"))
    assert len(results) == 2
    assert PASSWORD not in proc.stdout + proc.stderr

    hits = [p for p, data in _tree_bytes(work / "outputs") if PASSWORD.encode() in data]
    assert hits == []
    config_yaml = (results[0].parent / "config.yaml").read_text()
    assert "password=***" in config_yaml and "uri: ''" in config_yaml  # the worker's own store
    recorded = (results[0].parent / ".hydra" / "config.yaml").read_text()  # the launcher's
    assert "backtest:***@" in recorded

    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("masking-e2e")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len([r for r in runs if "backtest.run_key" in r.data.tags]) == 2  # the worker logged
    store = Path(mlflow_server_root(mlflow_server))
    hits = [p for p, data in _tree_bytes(store) if PASSWORD.encode() in data]
    assert hits == []
    assert PASSWORD.encode() not in _redis_values(password_redis)


def mlflow_server_root(url: str) -> str:
    """The folder of the session's ``mlflow server`` (its store and artifacts)."""
    import psutil

    port = url.rsplit(":", 1)[1]
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        cmd = proc.info["cmdline"] or []
        if "server" in cmd and port in cmd and "mlflow" in " ".join(cmd):
            return str(proc.info["cwd"])
    raise AssertionError(f"no mlflow server process on port {port}")
