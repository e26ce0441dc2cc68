"""Every command of the README runs as written, in README order, as a new user would.

Every ```bash block of README.md is read (whatever the sections hold at the time), its
lines joined at ``\\`` continuations, and each command run with ``bash`` in one fresh
working directory, so later commands see what earlier ones wrote (``outputs/``, the
MLflow store). What a reader brings, the test brings:

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
suite). Long-running commands (``mlflow ui``/``server``, workers) start in the
background, are waited for (``/health``) and stopped at the end.
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


#: Commands that only run an experiment into their own new run folder: consecutive ones run
#: side by side (two at a time), each in README order within its wave. Anything else (a
#: report, compare or sync that reads earlier runs, the queue, an export) waits for them.
RUN_COMMAND = re.compile(r"^(PYTHONPATH=\S+ )?(python -m backtest|backtest run) (?!.*launcher=rq)")


def independent(cmd: str) -> bool:
    return bool(RUN_COMMAND.match(cmd)) and "output_dir=" not in cmd


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


def test_the_waves_keep_what_reads_earlier_runs_in_order() -> None:
    assert independent("python -m backtest +experiment=sma_cross tracking=none")
    assert independent("PYTHONPATH=examples/rsi python -m backtest --config-dir x +experiment=y")
    assert not independent("python -m backtest.compare wf_momentum")
    assert not independent("python -m backtest.report outputs/report_demo/single")
    assert not independent("python -m backtest -m hydra/launcher=rq strategy.fast=5,10")
    assert not independent("python -m backtest +experiment=sma_cross output_dir=outputs/x")
    assert not independent("mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db")


@pytest.mark.slow
@pytest.mark.redis
def test_every_readme_command_runs_as_written(tmp_path: Path) -> None:
    text = README.read_text()
    cwd = tmp_path / "work"
    cwd.mkdir()
    _write_example_files(text, cwd)
    _write_user_data(cwd)
    # The README's commands run from a clone's root, where examples/ lies beside conf/.
    shutil.copytree(ROOT / "examples", cwd / "examples")
    password = secrets.token_hex(8)
    redis_proc, redis_url = _start_redis(cwd, password)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "MLFLOW_TRACKING_URI")},
        "PYTHONPATH": str(ROOT),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    background: list[subprocess.Popen[bytes]] = [redis_proc]
    ran: list[str] = []
    skipped: list[tuple[str, str]] = []
    wave: list[tuple[str, str, dict[str, str]]] = []
    stack = ExitStack()  # the PostgreSQL database of the distributed search's example
    pg_url = stack.enter_context(_postgres_database()) if PLACEHOLDER_PG in text else ""
    try:
        for raw in readme_commands(text):
            cmd = raw.replace(PLACEHOLDER_URL, redis_url).replace(PLACEHOLDER_PG, pg_url)
            reason = next((why for start, why in SKIP.items() if cmd.startswith(start)), None)
            if reason and "&&" not in cmd:
                skipped.append((raw, reason))
                continue
            parts = [p.strip() for p in cmd.split("&&")]
            kept = [p for p in parts if not any(p.startswith(s) for s in SKIP)]
            skipped += [
                (p, r) for p in parts if p not in kept for s, r in SKIP.items() if p.startswith(s)
            ]
            if not kept:
                continue
            cmd = " && ".join(kept)
            export = re.fullmatch(r"export (\w+)=(\S+)", cmd)
            if export:
                env[export[1]] = export[2]
                continue
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
                ran.append(raw)
                continue
            if independent(cmd):  # runs beside the other runs of its wave
                wave.append((raw, cmd, dict(env)))
                continue
            ran += run_wave(wave, cwd)  # whatever comes next may read what the wave wrote
            ran += run_wave([(raw, cmd, dict(env))], cwd)
        ran += run_wave(wave, cwd)
    finally:
        for proc in reversed(background):
            _stop(proc)
        stack.close()
    print("ran:", *ran, "skipped:", *(f"{c}: {r}" for c, r in skipped), sep="\n  ")
    assert ran and all(
        any(c.startswith(s) for s in SKIP) for c, _ in skipped
    )  # nothing else was skipped
    assert list((cwd / "outputs").glob("*/*/result.json"))
