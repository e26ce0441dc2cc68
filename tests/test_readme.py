"""Every command of the README runs as written, as a new user would.

Every ```bash block of README.md is read (whatever the sections hold at the time), its
lines joined at ``\\`` continuations, and each command run with ``bash`` in a fresh
working directory. The commands are split into cases that pytest-xdist spreads over its
workers (``plan``): each command that only runs an experiment into a new run folder is a
case of its own; the commands that read earlier runs (a report, ``compare``, ``sync``, the
MLflow UI) run in README order in one folder, after the runs they name, so they see what
those wrote (``outputs/``, the MLflow store); the queue's commands run in README order in
one folder too. What a reader brings, the test brings:

- files the README shows as blocks starting ``# <relative path>`` (your strategy module
  and YAML; after the ``# @package _global_`` line of an experiment) are written there
  first; blocks marked ``(abridged)`` are excerpts of files that exist already and are not
  written;
- "your data", ``prices.csv`` and ``closes.parquet``, small real-looking files;
- the placeholders of the queue section, ``PASSWORD`` and ``queue-host:6379``, become a
  real Redis server on 127.0.0.1 that requires that password, and its PostgreSQL study
  storage ``postgresql://optuna@db-host:5432/optuna`` a new database on the machine's
  PostgreSQL (127.0.0.1:5432, trust authentication).

Skipped, with the reason printed: ``pip install`` (the package is installed already;
the checkout is on ``PYTHONPATH``) and ``python -m pytest`` (this test is part of that
suite). The same command written twice runs once (the flagship's, for one). Long-running
commands (``mlflow ui``/``server``, workers) start in the background, are waited for
(``/health``) and stopped at the end of their case.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S
)
SKIP = {
    "pip install": "the package is installed already (the checkout is on PYTHONPATH)",
    "python -m pytest": "the test suite runs this test; running it from here would recurse",
}
BACKGROUND = (
    "mlflow ui",
    "mlflow server",
    "backtest.worker",
    "backtest.queue._cli",
    "backtest worker",
)
PLACEHOLDER_URL = "redis://:PASSWORD@queue-host:6379/0"
PLACEHOLDER_PG = "postgresql://optuna@db-host:5432/optuna"


def blocks(text: str) -> Iterator[tuple[str, str]]:
    """``(language, body)`` of every fenced block, the body dedented."""
    for match in FENCE.finditer(text):
        indent = match["indent"]
        lines = match["body"].splitlines()
        body = "\n".join(line[len(indent) :] if line.startswith(indent) else line for line in lines)
        yield match["lang"], body


def commands(body: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, blank and comment lines out."""
    joined = re.sub(r"[ \t]*\\\n\s*", " ", body)
    return [line.strip() for line in joined.splitlines() if line.strip() and line.strip()[0] != "#"]


def readme_commands(text: str) -> list[str]:
    return [cmd for lang, body in blocks(text) if lang == "bash" for cmd in commands(body)]


def test_parser_reads_fences_continuations_and_indented_blocks() -> None:
    text = (
        "x\n```bash\npython -m a \\\n    b  # c\n# note\n```\n"
        "1. item\n\n   ```bash\n   export A=1\n   run a\n   ```\n```text\nnot run\n```\n"
    )
    assert readme_commands(text) == ["python -m a b  # c", "export A=1", "run a"]


def test_readme_has_commands_and_no_unfenced_config_as_bash() -> None:
    cmds = readme_commands(README.read_text())
    assert len(cmds) > 10
    assert not [c for c in cmds if c.startswith(("bind ", "requirepass", "protected-mode"))]


# --- running them --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _write_example_files(text: str, cwd: Path) -> list[Path]:
    written = []
    for _, body in blocks(text):
        lines = body.splitlines() if body.strip() else [""]
        # an experiment file's first line is its "# @package _global_" header; its path follows
        first = lines[1] if lines[0].startswith("# @package") and len(lines) > 1 else lines[0]
        match = re.match(r"#\s*([\w./-]+\.(?:py|yaml|yml|csv))\b(.*)", first)
        if not match or "abridged" in match[2]:
            continue
        path = cwd / match[1]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body + "\n")
        written.append(path)
    return written


def _write_user_data(cwd: Path) -> None:
    """A reader's own files: long CSV with their column names; wide Parquet of closes."""
    rng = np.random.default_rng(7)
    dates = pd.bdate_range("2016-01-04", periods=800)
    rows = []
    for symbol in ("AAA", "BBB"):
        close = 50 * np.exp(np.cumsum(rng.normal(0.0003, 0.012, len(dates))))
        rows.append(pd.DataFrame({"Date": dates, "Ticker": symbol, "Adj Close": close}))
    pd.concat(rows).to_csv(cwd / "prices.csv", index=False)
    wide = pd.DataFrame(
        {s: 100 * np.exp(np.cumsum(rng.normal(0.0002, 0.01, len(dates)))) for s in ("SPY", "TLT")},
        index=pd.DatetimeIndex(dates, name="date"),
    )
    wide.reset_index().to_parquet(cwd / "closes.parquet", index=False)


def _start_redis(cwd: Path, password: str) -> tuple[subprocess.Popen[bytes], str]:
    from backtest.queue._redis import redis_server_executable

    port = _free_port()
    folder = cwd.parent / "redis"
    folder.mkdir()
    proc = subprocess.Popen(
        [
            redis_server_executable(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--requirepass",
            password,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 15
    while not _port_open(port):
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    return proc, f"redis://:{password}@127.0.0.1:{port}/0"


@contextmanager
def _postgres_database() -> Iterator[str]:
    """A new database on this machine's PostgreSQL (127.0.0.1:5432, trust), dropped after."""
    import uuid

    psycopg2 = pytest.importorskip("psycopg2")
    name = f"readme_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    except psycopg2.OperationalError as exc:
        pytest.fail(f"the README's PostgreSQL example needs PostgreSQL on 127.0.0.1:5432: {exc}")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def _wait_for_mlflow(proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen("http://127.0.0.1:5000/health", timeout=2):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`mlflow ui` did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- which commands run together (the module docstring says why) ------------------------

#: Commands that only run an experiment into a new run folder of their own.
RUN_COMMAND = re.compile(r"^(PYTHONPATH=\S+ )?(python -m backtest|backtest run) (?!.*launcher=rq)")
#: Commands that start queue processes (workers, a queued sweep or search).
QUEUE_COMMAND = (
    "launcher=rq",
    "backtest.worker",
    "backtest worker",
    "backtest.queue._cli",
    "backtest.distributed",
    "search-distributed",
)
#: The xdist group of the tests that start queue processes (tests/conftest.py).
QUEUE_GROUP = "queue-processes"


def independent(cmd: str) -> bool:
    return bool(RUN_COMMAND.match(cmd)) and "output_dir=" not in cmd


def starts_queue_processes(cmd: str) -> bool:
    return any(q in cmd for q in QUEUE_COMMAND)


@dataclass(frozen=True)
class Step:
    """One README command: ``raw`` as written, ``cmd`` what runs (skipped parts out), ``env``
    the README's ``export`` lines in effect where it stands."""

    raw: str
    cmd: str
    env: tuple[tuple[str, str], ...]

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """The command as bash runs it (its trailing comment out) in its environment."""
        return " ".join(re.sub(r"\s+#.*$", "", self.cmd).split()), self.env


@dataclass(frozen=True)
class Case:
    name: str
    steps: tuple[Step, ...]
    queue: bool = False


def _experiment(cmd: str) -> str | None:
    match = re.search(r"(?:^|\s)\+experiment=(\w+)", cmd)
    return match[1] if match else None


def readme_steps(text: str) -> tuple[list[Step], list[tuple[str, str]]]:
    """The README's commands in order, and the ``(command, reason)`` of the parts skipped."""
    steps: list[Step] = []
    skipped: list[tuple[str, str]] = []
    env: dict[str, str] = {}
    for raw in readme_commands(text):
        parts = [p.strip() for p in raw.split("&&")]
        kept = [p for p in parts if not p.startswith(tuple(SKIP))]
        skipped += [
            (p, why) for p in parts if p not in kept for s, why in SKIP.items() if p.startswith(s)
        ]
        if not kept:
            continue
        cmd = " && ".join(kept)
        export = re.fullmatch(r"export (\w+)=(\S+)", cmd)
        if export:
            env[export[1]] = export[2]
            continue
        steps.append(Step(raw, cmd, tuple(env.items())))
    return steps, skipped


def plan(steps: list[Step]) -> list[Case]:
    """The README's steps as cases."""
    kind = [
        "queue" if starts_queue_processes(s.cmd) else "run" if independent(s.cmd) else "reads"
        for s in steps
    ]
    # a command that names an experiment (`backtest.compare wf_momentum`) reads the runs of the
    # last run command of that experiment before it: that one runs in its folder, before it
    for i, step in enumerate(steps):
        if kind[i] == "reads":
            for word in step.cmd.split():
                named = [
                    j
                    for j in range(i)
                    if kind[j] != "queue"
                    and independent(steps[j].cmd)
                    and _experiment(steps[j].cmd) == word
                ]
                if named and kind[named[-1]] == "run":  # not pulled in already
                    kind[named[-1]] = "reads"
    reads = tuple(s for s, k in zip(steps, kind, strict=True) if k == "reads")
    queue = tuple(s for s, k in zip(steps, kind, strict=True) if k == "queue")
    seen = {s.key for s in reads + queue}
    cases = []
    for step, k in zip(steps, kind, strict=True):
        if k == "run" and step.key not in seen:
            seen.add(step.key)
            slug = re.sub(r"[^\w.=+,-]+", "_", step.key[0].removeprefix("python -m backtest "))
            cases.append(Case(f"run{len(cases) + 1:02d}-{slug[:70]}", (step,)))
    if reads:
        cases.append(Case("reads-earlier-runs", reads))
    if queue:
        cases.append(Case("queue", queue, queue=True))
    return cases


def test_the_plan_runs_every_command_once_and_keeps_what_reads_earlier_runs_in_order() -> None:
    text = (
        "```bash\npip install -e . && python -m backtest +experiment=a\n"
        "python -m backtest +experiment=a   # again\npython -m pytest\n"
        "python -m backtest +experiment=b tracking=none\npython -m backtest +experiment=b\n"
        "python -m backtest +experiment=c output_dir=outputs/x\n"
        "python -m backtest.report outputs/x\npython -m backtest.compare b\n"
        "python -m backtest.compare b --children\n"
        "python -m backtest -m hydra/launcher=rq strategy.fast=5,10\n"
        "export REDIS_URL=redis://h\npython -m backtest.worker --queues q\n"
        "python -m backtest.distributed --n-trials 2 +experiment=b\n```\n"
    )
    steps, skipped = readme_steps(text)
    cases = plan(steps)
    assert [(c.name, [s.raw for s in c.steps], c.queue) for c in cases] == [
        ("run01-+experiment=a", ["pip install -e . && python -m backtest +experiment=a"], False),
        (
            "run02-+experiment=b_tracking=none",
            ["python -m backtest +experiment=b tracking=none"],
            False,
        ),
        (
            "reads-earlier-runs",
            [
                "python -m backtest +experiment=b",
                "python -m backtest +experiment=c output_dir=outputs/x",
                "python -m backtest.report outputs/x",
                "python -m backtest.compare b",
                "python -m backtest.compare b --children",
            ],
            False,
        ),
        (
            "queue",
            [
                "python -m backtest -m hydra/launcher=rq strategy.fast=5,10",
                "python -m backtest.worker --queues q",
                "python -m backtest.distributed --n-trials 2 +experiment=b",
            ],
            True,
        ),
    ]
    assert cases[-1].steps[0].env == ()
    assert cases[-1].steps[1].env == (("REDIS_URL", "redis://h"),)
    assert [c for c, _ in skipped] == ["pip install -e .", "python -m pytest"]


def test_every_readme_command_runs_in_one_case_and_only_install_and_the_suite_are_skipped() -> None:
    steps, skipped = readme_steps(README.read_text())
    cases = plan(steps)
    keys = [s.key for c in cases for s in c.steps]
    assert len(keys) == len(set(keys)) and set(keys) == {s.key for s in steps}
    assert len(cases) > 10 and len(steps) > 10
    assert {cmd.split()[0] for cmd, _ in skipped} == {"pip", "python"}
    assert all(cmd.startswith(tuple(SKIP)) for cmd, _ in skipped)
    assert all(c.queue == starts_queue_processes(s.cmd) for c in cases for s in c.steps)


def test_independent_commands_are_runs_into_a_folder_of_their_own() -> None:
    assert independent("python -m backtest +experiment=sma_cross tracking=none")
    assert independent("PYTHONPATH=examples/rsi python -m backtest --config-dir x +experiment=y")
    assert not independent("python -m backtest.compare wf_momentum")
    assert not independent("python -m backtest.report outputs/report_demo/single")
    assert not independent("python -m backtest -m hydra/launcher=rq strategy.fast=5,10")
    assert not independent("python -m backtest +experiment=sma_cross output_dir=outputs/x")
    assert not independent("mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db")


def run_wave(wave: list[tuple[str, str, dict[str, str]]], cwd: Path) -> list[str]:
    """Run a wave of independent commands, two at a time; each must succeed."""
    from concurrent.futures import ThreadPoolExecutor

    def one(item: tuple[str, str, dict[str, str]]) -> str:
        raw, cmd, env = item
        start = time.monotonic()
        proc = subprocess.run(
            ["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, (
            f"README command failed ({proc.returncode}): {raw}\n"
            f"--- stderr ---\n{proc.stderr[-4000:]}\n"
            f"--- stdout ---\n{proc.stdout[-2000:]}"
        )
        return f"{raw}  ({time.monotonic() - start:.0f} s)"

    items, wave[:] = list(wave), []
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(one, items))


CASES = plan(readme_steps(README.read_text())[0])


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            c,
            id=c.name,
            marks=[pytest.mark.redis, pytest.mark.xdist_group(QUEUE_GROUP)] if c.queue else [],
        )
        for c in CASES
    ],
)
def test_every_readme_command_runs_as_written(case: Case, tmp_path: Path) -> None:
    text = README.read_text()
    cwd = tmp_path / "work"
    cwd.mkdir()
    _write_example_files(text, cwd)
    _write_user_data(cwd)
    # The README's commands run from a clone's root, where examples/ lies beside conf/.
    shutil.copytree(
        ROOT / "examples", cwd / "examples", ignore=shutil.ignore_patterns("__pycache__")
    )
    written = " ".join(s.cmd + " " + " ".join(v for _, v in s.env) for s in case.steps)
    background: list[subprocess.Popen[bytes]] = []
    stack = ExitStack()
    served: dict[str, str] = {}  # placeholder -> what serves it here

    def serve(value: str) -> str:
        for placeholder, url in served.items():
            value = value.replace(placeholder, url)
        return value

    base = {
        **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "MLFLOW_TRACKING_URI")},
        "PYTHONPATH": str(ROOT),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    ran: list[str] = []
    wave: list[tuple[str, str, dict[str, str]]] = []
    try:
        if PLACEHOLDER_URL in written:
            redis_proc, served[PLACEHOLDER_URL] = _start_redis(cwd, secrets.token_hex(8))
            background.append(redis_proc)
        if PLACEHOLDER_PG in written:  # the PostgreSQL database of the distributed search
            served[PLACEHOLDER_PG] = stack.enter_context(_postgres_database())
        for step in case.steps:
            cmd = serve(step.cmd)
            env = {**base, **{k: serve(v) for k, v in step.env}}
            if cmd.startswith(BACKGROUND) or any(b in cmd for b in BACKGROUND[2:]):
                if cmd.startswith("mlflow ui") and _port_open(5000):
                    pytest.fail("port 5000 is taken: the README's `mlflow ui` cannot start")
                log = tmp_path / f"background-{len(background)}.log"
                with log.open("wb") as out:
                    proc = subprocess.Popen(
                        ["bash", "-c", cmd],
                        cwd=cwd,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                background.append(proc)
                if cmd.startswith("mlflow"):
                    _wait_for_mlflow(proc, log)
                ran.append(step.raw)
                continue
            if independent(cmd):  # runs beside the other runs of its wave
                wave.append((step.raw, cmd, env))
                continue
            ran += run_wave(wave, cwd)  # whatever comes next may read what the wave wrote
            ran += run_wave([(step.raw, cmd, env)], cwd)
        ran += run_wave(wave, cwd)
    finally:
        for proc in reversed(background):
            _stop(proc)
        stack.close()
    print("ran:", *ran, sep="\n  ")
    assert len(ran) == len(case.steps)
    assert list((cwd / "outputs").rglob("result.json"))
