"""A mirror is never left RUNNING, and never doubled (real processes, SIGKILL, sqlite)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from backtest import results
from backtest.tasks import execute_job
from backtest.tasks._jobs import BacktestJob
from backtest.tracking import run_key
from backtest.tracking._client import client_for
from tests import mlflow_runs

N_FIGURES = 1500  # uploading them keeps a mirror busy a second or more (the syncs overlap)
#: The figure whose upload holds a mirror RUNNING until the test kills it (see HOLD).
HELD = "hold.png"
#: Run first in a process the test will kill: its mirror stops at the upload of HELD, so
#: the test finds it RUNNING on any machine's speed (a fast mirror of many figures once
#: finished before a loaded machine's poll saw it running). The upload itself is the store
#: client's: the sqlite client's copy into a local store (MLflow's repository otherwise).
HOLD = (
    "import time\n"
    "from backtest.tracking._sqlite_client import SqliteClient\n"
    "upload = SqliteClient.log_artifact\n"
    "def held(self, run_id, local_file, artifact_path=None):\n"
    f"    while local_file.endswith({HELD!r}):\n"
    "        time.sleep(1)\n"
    "    return upload(self, run_id, local_file, artifact_path)\n"
    "SqliteClient.log_artifact = held\n"
)


def write_run(run_dir: Path, experiment: str, uri: str, sharpe: float) -> Path:
    return mlflow_runs.write_run(run_dir, experiment, uri, sharpe, timeout_s=30.0)


def slow_to_mirror(run_dir: Path) -> None:
    """Figures to upload, one of them HELD (a process started with HOLD stops there)."""
    figures = results.figures_dir(run_dir)
    for i in range(N_FIGURES):
        (figures / f"f{i:04d}.png").write_bytes(b"\x89PNG" + bytes(64))
    (figures / HELD).write_bytes(b"\x89PNG" + bytes(64))


def runs(uri: str, experiment: str) -> list[Any]:
    client = client_for(uri)  # opens the fresh store under its lock, as the syncs do
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)


def kill_when_running(proc: subprocess.Popen[bytes], uri: str, experiment: str) -> str:
    """SIGKILL ``proc`` as soon as its mirror run exists and is RUNNING; returns its id."""
    deadline = time.monotonic() + 180
    while True:
        assert proc.poll() is None, proc.communicate()[0].decode()[-3000:]
        assert time.monotonic() < deadline, "the mirror never started"
        running = [r for r in runs(uri, experiment) if r.info.status == "RUNNING"]
        if running and running[0].data.tags.get("backtest.kind") == "run":
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)  # reaps it and closes its pipe
            assert proc.returncode == -signal.SIGKILL
            return str(running[0].info.run_id)
        time.sleep(0.02)


def sync_proc(*args: str, held: bool = False) -> subprocess.Popen[bytes]:
    """``backtest sync ARGS``; with ``held``, its mirror stops at the HELD figure."""
    run = "import sys\nfrom backtest.tracking._sync import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.Popen(
        [sys.executable, "-c", (HOLD if held else "") + run, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def finished_once(uri: str, experiment: str, keys: list[str]) -> Counter[str]:
    found = runs(uri, experiment)
    assert not [r for r in found if r.info.status == "RUNNING"]
    done = Counter(r.data.tags["backtest.run_key"] for r in found if r.info.status == "FINISHED")
    assert done == Counter(keys)
    return done


# Before the run-directory lock, 3 concurrent syncs of 8 results made 15 to 24 runs in
# every try (the report): each of the 3 rounds here is a fresh race between 3
# processes on 8 results, so a regression shows in the first round already.
@pytest.mark.slow
@pytest.mark.parametrize("round_", range(3), ids=lambda r: f"round{r}")
def test_concurrent_syncs_close_a_killed_mirror_and_log_each_result_once(
    tmp_path: Path, round_: int
) -> None:
    uri, experiment = f"sqlite:///{tmp_path}/mlflow.db", f"mirror-{round_}"
    out = tmp_path / "outputs"
    dirs = [write_run(out / f"run{i}", experiment, uri, 0.1 * i) for i in range(8)]
    slow_to_mirror(dirs[0])

    killed = kill_when_running(sync_proc(str(dirs[0]), held=True), uri, experiment)
    procs = [sync_proc(str(out)) for _ in range(3)]
    for proc in procs:
        output = proc.communicate(timeout=300)[0].decode()
        assert proc.returncode == 0, output[-3000:]

    keys = [run_key(results.load_result(d).record) for d in dirs]
    finished_once(uri, experiment, keys)
    status = {r.info.run_id: r.info.status for r in runs(uri, experiment)}
    assert status[killed] == "KILLED"


@pytest.mark.slow
def test_a_retry_after_a_kill_mid_mirror_closes_it_and_logs_once(
    compose: Any, tmp_path: Path
) -> None:
    uri, experiment = f"sqlite:///{tmp_path}/mlflow.db", "retry"
    run_dir = tmp_path / "run"
    cfg = compose(
        "+experiment=sma_cross",
        "data.n_bars=300",
        f"output_dir={run_dir}",
        f"tracking.uri={uri}",
        f"tracking.experiment_name={experiment}",
    )
    job = BacktestJob.from_config(cfg)
    slow_to_mirror(run_dir)
    script = HOLD + (
        "import json, sys\n"
        "from backtest.tasks._jobs import BacktestJob\n"
        "from backtest.tasks import execute_job\n"
        "execute_job(BacktestJob.from_dict(json.loads(sys.argv[1])))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, json.dumps(job.to_dict())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    killed = kill_when_running(proc, uri, experiment)
    assert results.has_result(run_dir)  # the result was complete before the mirror

    execute_job(job)  # the retry: result complete, mirror not
    execute_job(job)  # and again: nothing more
    key = run_key(results.load_result(run_dir).record)
    finished_once(uri, experiment, [key])
    status = {r.info.run_id: r.info.status for r in runs(uri, experiment)}
    assert status[killed] == "KILLED"
    assert len(status) == 2


@pytest.mark.slow
def test_sync_with_nothing_to_do_opens_no_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second sync answers from its index: it reads no result's config and asks MLflow
    nothing (asserted by refusing both, not by a quiet machine's timing)."""
    uri, experiment = f"sqlite:///{tmp_path}/mlflow.db", "idle"
    out = tmp_path / "outputs"
    dirs = [write_run(out / f"r{i:03d}", experiment, uri, 0.01 * i) for i in range(200)]
    from backtest.tracking import _log
    from backtest.tracking import _sync as sync_module
    from backtest.tracking._sync import sync

    assert len(sync(out).logged) == 200

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an already-synced result was opened")

    with monkeypatch.context() as patch:
        patch.setattr(sync_module, "_sync_one", refuse)
        patch.setattr(_log, "read_config", refuse)
        again = sync(out)
    assert again.logged == [] and again.failed == [] and sorted(again.present) == dirs
    # a result rewritten since (another run into the same folder) is looked at again
    write_run(dirs[5], experiment, uri, 9.0)
    os.utime(dirs[5] / "result.json", ns=(1, 1))
    assert [d for d, _ in sync(out).logged] == [dirs[5]]


#: How long a test holds a run's mirror lock at most (see HeldLock).
GUARD_S = 600


class HeldLock:
    """The run directory's mirror lock, held by the test: a mirror waits on it, really."""

    def __init__(self, run_dir: Path) -> None:
        import fcntl

        run_dir.mkdir(parents=True, exist_ok=True)
        self._fh = open(run_dir / results.LOCK_FILE, "a+b")  # noqa: SIM115 - held across calls
        fcntl.flock(self._fh, fcntl.LOCK_EX)
        self.released = False
        # a guard, not a timing: a process that waits for its mirror before printing
        # (the bug) would otherwise wait for this lock forever. It runs from the process's
        # start, so it allows for a first run's compilation on a busy machine (the process
        # once needed over 120 s to print its result there, and the guard let it finish)
        self._guard = threading.Timer(GUARD_S, self.release)
        self._guard.start()

    def release(self) -> None:
        self._guard.cancel()
        self.released = True
        self._fh.close()  # closing the file drops the flock


def test_inside_mirrors_after_the_caller_goes_on_while_the_mirror_waits(tmp_path: Path) -> None:
    from backtest.config import TrackingConfig
    from backtest.tracking import mirror_soon, mirrors_after

    uri, experiment = f"sqlite:///{tmp_path}/mlflow.db", "later"
    run_dir = write_run(tmp_path / "run", experiment, uri, 0.5)
    held, errors = HeldLock(run_dir), []
    cfg = TrackingConfig(uri=uri, experiment_name=experiment)
    with mirrors_after():
        mirror_soon(run_dir, cfg, None, on_error=errors.append)
        (mirror,) = [t for t in threading.enumerate() if t.name.startswith("mlflow-mirror")]
        time.sleep(0.3)
        assert mirror.is_alive()  # blocked on the lock: the caller was not made to wait
        assert runs(uri, experiment) == []
        threading.Timer(0.5, held.release).start()
    assert not mirror.is_alive()  # the block's end waited for it
    assert errors == []
    (run,) = runs(uri, experiment)
    assert run.info.status == "FINISHED"
    assert run.data.tags["backtest.run_key"] == run_key(results.load_result(run_dir).record)


def test_ctrl_c_inside_mirrors_after_does_not_wait_for_the_mirror(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Ctrl-C while the summary still prints (before the block's end waits) stops at once."""
    from backtest.config import TrackingConfig
    from backtest.tracking import mirror_soon, mirrors_after

    uri, experiment = f"sqlite:///{tmp_path}/mlflow.db", "interrupted"
    run_dir = write_run(tmp_path / "run", experiment, uri, 0.5)
    held = HeldLock(run_dir)
    late = threading.Timer(60, held.release)  # the old code waited for the mirror until here
    late.start()
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt), mirrors_after():  # noqa: PT012 - the subject
            cfg = TrackingConfig(uri=uri, experiment_name=experiment)
            mirror_soon(run_dir, cfg, None, on_error=lambda exc: None)
            raise KeyboardInterrupt
        assert time.monotonic() - start < 30  # it did not wait for the held mirror
    finally:
        late.cancel()
        held.release()
    assert f"python -m backtest.sync {run_dir}" in caplog.text


def test_outside_mirrors_after_the_mirror_is_done_on_return(tmp_path: Path) -> None:
    from backtest.config import TrackingConfig
    from backtest.tracking import mirror_soon

    uri, experiment = f"sqlite:///{tmp_path}/mlflow.db", "now"
    run_dir = write_run(tmp_path / "run", experiment, uri, 0.5)
    errors: list[Exception] = []
    mirror_soon(
        run_dir, TrackingConfig(uri=uri, experiment_name=experiment), None, on_error=errors.append
    )
    assert errors == []
    assert [r.info.status for r in runs(uri, experiment)] == ["FINISHED"]


def test_a_background_mirror_that_fails_reports_once_and_the_block_ends(tmp_path: Path) -> None:
    import socket

    from backtest.config import TrackingConfig
    from backtest.errors import BacktestError
    from backtest.tracking import mirror_soon, mirrors_after

    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run_dir = write_run(tmp_path / "run", "down", f"http://127.0.0.1:{port}", 0.5)
    errors: list[Exception] = []
    cfg = TrackingConfig(uri=f"http://127.0.0.1:{port}", experiment_name="down", timeout_s=2.0)
    with mirrors_after():
        mirror_soon(run_dir, cfg, None, on_error=errors.append)
    assert len(errors) == 1 and isinstance(errors[0], BacktestError)
    assert f"127.0.0.1:{port}" in str(errors[0])


def cli_run(tmp_path: Path, uri: str, experiment: str) -> tuple[subprocess.Popen[str], Path]:
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backtest",
            "+experiment=sma_cross",
            "data.n_bars=300",
            f"output_dir={run_dir}",
            f"tracking.uri={uri}",
            f"tracking.experiment_name={experiment}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
        preexec_fn=_as_from_a_terminal,
    )
    return proc, run_dir


def _as_from_a_terminal() -> None:
    """Ctrl-C reaches the command as it does from a terminal.

    A process started with SIGINT ignored keeps it ignored (POSIX; Python then installs no
    KeyboardInterrupt handler), and a suite started in the background (``cmd &`` in a
    script) ignores it: the command under test would never hear the test's Ctrl-C.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def read_until(proc: subprocess.Popen[str], marker: str) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:  # blocks until the child writes (or exits)
        lines.append(line)
        if line.startswith(marker):
            return lines
    raise AssertionError(f"no {marker!r} line; stderr:\n{proc.communicate()[1][-3000:]}")


@pytest.mark.slow
def test_the_summary_prints_before_a_slow_mirror_finishes_with_no_mlflow_lines(
    tmp_path: Path,
) -> None:
    uri, experiment = f"sqlite:///{tmp_path}/mlflow.db", "cli-later"
    proc, run_dir = cli_run(tmp_path, uri, experiment)
    held = HeldLock(run_dir)  # the mirror will wait for the test
    try:
        printed = read_until(proc, "result written to")
        assert not held.released, "the summary came only once the mirror could finish"
        assert any(line.startswith("sharpe_ratio") for line in printed)
        time.sleep(0.5)
        assert proc.poll() is None, "the process left before its mirror"
        assert not (tmp_path / "mlflow.db").exists() or runs(uri, experiment) == []
    finally:
        held.release()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    (run,) = runs(uri, experiment)
    assert run.info.status == "FINISHED"
    assert (out + err).count("finishing the MLflow mirror of") == 1  # while it waited
    for noise in ("Creating initial", "mlflow.store", "alembic", "INFO mlflow"):
        assert noise not in out + err, (out + err)[-3000:]


@pytest.mark.slow
def test_ctrl_c_while_the_mirror_finishes_leaves_it_to_sync(tmp_path: Path) -> None:
    from backtest.tracking._mirror import mirror_result

    uri, experiment = f"sqlite:///{tmp_path}/mlflow.db", "cli-interrupted"
    proc, run_dir = cli_run(tmp_path, uri, experiment)
    held = HeldLock(run_dir)
    try:
        read_until(proc, "result written to")
        assert not held.released
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        held.release()
    assert proc.returncode != 0
    out, err = proc.communicate(timeout=120)
    assert f"python -m backtest.sync {run_dir}" in out + err, (out + err)[-3000:]
    assert results.has_result(run_dir)  # the result stays complete
    mirror = mirror_result(run_dir)  # what the sync does: logged now, once
    assert mirror.logged
    assert [r.info.status for r in runs(uri, experiment)] == ["FINISHED"]
