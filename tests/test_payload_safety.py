"""A queue payload is data, never a capability: what a writer with queue access cannot do.

Real Redis, real forked workers (``python -m backtest.worker``), loopback listeners only.
The worker's environment holds secrets; the jobs below try to read them, to read or write
files outside the worker's folders, and to send its tracking token to a host of their own.
"""

from __future__ import annotations

import http.server
import json
import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backtest.config import QueueConfig

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SECRET = "AKIA-5EC12E7-do-not-leak"
NUMBER = "987654321123"  # a secret that is a valid int (a payload's n_bars could take it)
TOKEN = "tok-5ecret-mlflow-7"
FIRST_LINE = "api_key=9f8e7d-first-line-of-a-private-file"


def _config() -> dict[str, Any]:
    from tests.test_worker import _base_config

    config = json.loads(json.dumps(_base_config()))
    config.update(summary=False, figures=False, report=False)
    return config


@pytest.fixture
def worker(
    redis_url: str, queue_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """One forked worker in ``tmp/work`` with secrets in its environment.

    Data root ``tmp/work/data``, output root ``tmp/work`` (its working directory), its
    own tracking store ``tmp/worker-mlflow.db`` and token.
    """
    from backtest.queue import BacktestJobQueue, LocalWorkers

    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    monkeypatch.chdir(work)  # the worker's working directory
    store = tmp_path / "worker-mlflow.db"
    env = {
        "WORKER_SECRET": SECRET,
        "WORKER_NUMBER": NUMBER,
        "MLFLOW_TRACKING_TOKEN": TOKEN,
        "MLFLOW_TRACKING_URI": f"sqlite:///{store}",
    }
    cfg = QueueConfig(redis_url=redis_url, name=queue_name, job_timeout=120, retries=0)
    pool = LocalWorkers(
        redis_url,
        queue_name,
        1,
        env=env,
        data_roots=[work / "data"],
        output_roots=[work],
        log_dir=tmp_path / "logs",
    )
    with BacktestJobQueue(cfg) as q, pool:
        yield {"queue": q, "work": work, "store": store, "tmp": tmp_path}


def _run(q: Any, *jobs: Any) -> dict[str, Any]:
    ids = [q.submit(job) for job in jobs]
    return q.wait(ids, timeout=180, progress=False)


def _redis_text(q: Any) -> str:
    """Every key and value in the queue's Redis, as one text to search."""
    conn = q.connection
    chunks = []
    for key in conn.scan_iter("*"):
        kind = conn.type(key).decode()
        chunks.append(key.decode(errors="replace"))
        if kind == "string":
            chunks.append(str(conn.get(key)))
        elif kind == "hash":
            chunks.append(str(conn.hgetall(key)))
        elif kind == "list":
            chunks.append(str(conn.lrange(key, 0, -1)))
        elif kind == "set":
            chunks.append(str(conn.smembers(key)))
        elif kind == "zset":
            chunks.append(str(conn.zrange(key, 0, -1)))
        elif kind == "stream":
            chunks.append(str(conn.xrange(key)))
    return "\n".join(chunks)


def _files_text(root: Path) -> str:
    return "\n".join(
        p.read_text(errors="replace") for p in root.rglob("*") if p.is_file() and p.stat().st_size
    )


def test_interpolations_in_a_payload_are_refused_never_resolved(worker: dict) -> None:
    from backtest.tasks._jobs import BacktestJob

    q, work = worker["queue"], worker["work"]
    cases = {}
    as_int = _config()
    as_int["data"]["n_bars"] = "${oc.env:WORKER_NUMBER}"  # an int field
    cases["data.n_bars"] = as_int
    as_str = _config()
    as_str["data"]["start_date"] = "2010-${oc.env:WORKER_SECRET}"  # a string field
    cases["data.start_date"] = as_str
    as_name = _config()
    as_name["name"] = "${oc.env:WORKER_SECRET}"  # the folder, report and MLflow name
    as_name["tracking"] = {**as_name["tracking"], "enabled": True}
    cases["name"] = as_name
    jobs = {
        key: BacktestJob(config=config, job_id=f"interp-{i}", result_path=str(work / f"r{i}"))
        for i, (key, config) in enumerate(cases.items())
    }
    done = _run(q, *jobs.values())
    for key, job in jobs.items():
        record = done[job.job_id]
        assert record.status == "failed", key
        error = str(record.error)
        assert "PayloadRefused" in error and repr(key) in error and "interpolation" in error
        assert SECRET not in error and NUMBER not in error
        assert not Path(str(job.result_path)).exists()  # refused before anything was written
    stored = _redis_text(q)
    assert SECRET not in stored and NUMBER not in stored  # failure keys, results, indexes
    assert SECRET not in _files_text(worker["tmp"])  # no result file, no MLflow store
    assert not worker["store"].exists()


def test_data_outside_the_roots_or_unreadable_is_refused_without_its_content(
    worker: dict,
) -> None:
    from backtest.tasks._jobs import BacktestJob

    q, work, tmp = worker["queue"], worker["work"], worker["tmp"]
    private = tmp / "private"
    private.mkdir()
    (private / "notes.txt").write_text(FIRST_LINE + "\nsecond line\n")
    inside = work / "data" / "notes.txt"  # in the data root, but no price file
    inside.write_text(FIRST_LINE + ",other\n1,2\n")
    (work / "data" / "link.csv").symlink_to(private / "notes.txt")  # a way out of the root
    paths = {
        "outside": str(private / "notes.txt"),
        "relative-escape": "data/../../private/notes.txt",
        "symlink": str(work / "data" / "link.csv"),
        "missing-outside": str(private / "nothing.csv"),
        "inside": str(inside),
    }
    jobs = {}
    for i, (case, path) in enumerate(paths.items()):
        config = _config()
        config["data"] = {**config["data"], "source": "csv", "path": path, "layout": "wide"}
        jobs[case] = BacktestJob(config=config, job_id=f"data-{i}", result_path=str(work / case))
    done = _run(q, *jobs.values())
    for case, job in jobs.items():
        record = done[job.job_id]
        error = str(record.error)
        assert record.status == "failed", case
        assert FIRST_LINE not in error and "api_key" not in error, (case, error)
        if case == "inside":  # read, and named as no price file, its header not quoted
            assert "required column 'date' missing" in error and "not named here" in error
        else:  # not even looked at: a missing file outside reads the same as one there
            assert "data.path" in error and "outside the folders" in error, (case, error)
            assert "not found" not in error
    assert FIRST_LINE not in _redis_text(q)
    # the control: a price file inside the data root is read
    import pandas as pd

    prices = pd.DataFrame(
        {"date": pd.bdate_range("2020-01-01", periods=300).strftime("%Y-%m-%d")}
    ).assign(A=[100.0 + 0.1 * i for i in range(300)])
    prices.to_csv(work / "data" / "prices.csv", index=False)
    config = _config()
    config["data"] = {**config["data"], "source": "csv", "path": "data/prices.csv"}
    config["data"]["layout"] = "wide"
    ok = BacktestJob(config=config, job_id="data-ok", result_path=str(work / "ok"))
    # and the shipped sample, which lies in the package, not under the data root
    sample = _config()
    sample["data"] = {**sample["data"], "source": "sample", "start": "2018-01-01"}
    shipped = BacktestJob(config=sample, job_id="data-sample", result_path=str(work / "sample"))
    done = _run(q, ok, shipped)
    assert [done[i].status for i in ("data-ok", "data-sample")] == ["finished"] * 2


def test_results_stay_in_the_output_root_and_out_of_foreign_folders(worker: dict) -> None:
    from backtest.tasks._jobs import BacktestJob

    q, work, tmp = worker["queue"], worker["work"], worker["tmp"]
    foreign = work / "somebody-elses"
    foreign.mkdir()
    (foreign / "config.yaml").write_text("mine: true\n")
    cases: dict[str, tuple[dict[str, Any], str | None, str]] = {
        "name-up": ({"name": "../x"}, None, "name"),
        "name-escape": ({"name": "../../escaped"}, None, "name"),
        "result-path-dotdot": ({}, str(work / ".." / "escaped2"), "'..'"),
        "result-path-outside": ({}, str(tmp / "escaped3"), "outside the folders"),
        "output-dir-outside": ({"output_dir": str(tmp / "escaped4")}, None, "outside"),
        "foreign-folder": ({}, str(foreign), "not a run folder"),
    }
    jobs = {}
    for i, (case, (changes, path, _)) in enumerate(cases.items()):
        jobs[case] = BacktestJob(config={**_config(), **changes}, job_id=f"out-{i}",
                                 result_path=path)  # fmt: skip
    done = _run(q, *jobs.values())
    for case, job in jobs.items():
        record = done[job.job_id]
        assert record.status == "failed", case
        assert "PayloadRefused" in str(record.error) and cases[case][2] in str(record.error)
    assert sorted(p.name for p in tmp.iterdir()) == ["logs", "work"]  # nothing escaped
    assert not (work / "x").exists() and not (work / "outputs").exists()
    assert sorted(p.name for p in foreign.iterdir()) == ["config.yaml"]
    assert (foreign / "config.yaml").read_text() == "mine: true\n"  # not overwritten
    # the control: the default folder outputs/<name>/jobs/<id>, marked as the job's
    ok = BacktestJob(config=_config(), job_id="out-ok")
    assert _run(q, ok)["out-ok"].status == "finished"
    run_dir = work / "outputs" / "backtest" / "jobs" / "out-ok"
    assert (run_dir / "result.json").is_file() and (run_dir / ".job").read_text() == "out-ok\n"


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers 404 to everything and records what it was sent."""

    seen: list[dict[str, str]]

    def _record(self) -> None:
        self.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        self.send_response(404)
        self.end_headers()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _record

    def log_message(self, *args: Any) -> None:
        return


def test_the_workers_tracking_token_goes_only_to_its_own_store(worker: dict) -> None:
    from backtest.tasks._jobs import BacktestJob

    seen: list[dict[str, str]] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        config = _config()
        config["tracking"] = {
            **config["tracking"],
            "enabled": True,
            "uri": f"http://{host}:{port}",  # the writer's host, not the worker's
            "experiment_name": "payload-experiment",
        }
        job = BacktestJob(config=config, job_id="track-0", result_path=str(worker["work"] / "t"))
        record = _run(worker["queue"], job)["track-0"]
    finally:
        server.shutdown()
        server.server_close()
    assert record.status == "finished", record.error
    assert seen == []  # the payload's tracking host was never contacted
    assert TOKEN not in json.dumps(seen)
    with sqlite3.connect(worker["store"]) as db:  # tracked to the worker's own store
        names = {row[0] for row in db.execute("select name from experiments")}
    assert "payload-experiment" in names
    assert "127.0.0.1" not in (worker["work"] / "t" / "config.yaml").read_text()


def test_a_study_payload_cannot_point_the_worker_at_another_store(worker: dict) -> None:
    q = worker["queue"]
    connections: list[object] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            connections.append(conn.recv(4096))
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        port = listener.getsockname()[1]
        spec = {
            "storage": f"postgresql://writer@127.0.0.1:{port}/optuna",
            "study_name": "s",
            "config": _config(),
            "n_trials": 1,
            "heartbeat_interval": 1,
            "grace_period": 2,
            "max_retry": 0,
            "seed": 0,
            "sampler": "random",
        }
        (job_id,) = q.submit_study(spec, 1)
        status = q.wait_statuses([job_id], 120, progress=False)[job_id]
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert status == "failed"
    reason = str(q.failure_reason(job_id))
    assert "PayloadRefused" in reason and "not this worker's study storage" in reason
    assert connections == []  # nothing (no password, no user) went to the payload's host
