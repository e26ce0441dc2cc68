"""The house's layers hold: import-linter's contracts pass, they catch a planted upward
import, there is no import circle, and every module imports on its own.

The layers are written once, in ``[tool.importlinter]`` of ``pyproject.toml`` (and drawn in
``docs/architecture.md``); ``lint-imports`` checks them here, so the README's test command and
CI run the same check as a contributor does by hand.
"""

from __future__ import annotations

import importlib
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

import backtest

PACKAGE = Path(backtest.__file__).resolve().parent
ROOT = PACKAGE.parent


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys; from importlinter.cli import lint_imports_command as run; sys.exit(run())"
    command = [sys.executable, "-c", code]
    env = {"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_the_layer_contracts_hold() -> None:
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout or "broken" not in proc.stdout.split("Contracts:")[-1]
    assert proc.stdout.count(" KEPT") >= 2  # the layers and the engine's forbidden imports


@pytest.mark.parametrize(
    ("module", "line", "names"),
    [
        ("engine/_planted.py", "import backtest.tasks\n", "backtest.engine._planted"),
        ("engine/_planted.py", "def f():\n    import optuna\n", "optuna"),
        ("data/_planted.py", "from backtest.search import grid_search\n", "backtest.data._planted"),
    ],
    ids=["engine-imports-tasks", "engine-imports-optuna-lazily", "data-imports-search"],
)
def test_a_planted_import_breaks_a_contract(
    tmp_path: Path, module: str, line: str, names: str
) -> None:
    """The contracts are not vacuous: an upward or forbidden import, lazy ones too, fails."""
    shutil.copytree(PACKAGE, tmp_path / "backtest", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "backtest" / module).write_text(line)
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0
    assert "BROKEN" in proc.stdout and names in proc.stdout


def _cycles() -> list[list[str]]:
    """Strongly connected groups of modules (Tarjan), type-only imports left out."""
    graph = grimp.build_graph("backtest", exclude_type_checking_imports=True)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_there_is_no_import_circle() -> None:
    assert _cycles() == []


def _modules() -> list[str]:
    names = ["backtest"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="backtest."):
        if info.name != "backtest.__main__":
            names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules())
def test_every_module_imports_on_its_own(name: str) -> None:
    importlib.import_module(name)


def test_the_top_level_is_the_architecture() -> None:
    """At most 20 entries, none a helper of one package (docs/architecture.md lists them)."""
    entries = sorted(p.name for p in PACKAGE.iterdir() if p.name != "__pycache__")
    assert len(entries) <= 20, entries
    doc = (ROOT / "docs" / "architecture.md").read_text()
    for entry in entries:
        if entry not in ("__init__.py", "__main__.py"):
            assert f"`{entry.removesuffix('.py')}" in doc, f"{entry} is not on the map"


@pytest.mark.parametrize(
    "old", ["backtest.worker", "backtest.sync", "backtest.compare", "backtest.distributed"]
)
def test_the_old_command_paths_still_run(old: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", old, "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout
