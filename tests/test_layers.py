"""Data flows one way: no module imports a layer above its own, so there is no import cycle.

Every ``import backtest.X`` in the package (at module level or inside a function, since
a lazy import is still a dependency; ``TYPE_CHECKING`` blocks excepted) is read from the
source with :mod:`ast` and checked against the layer order below (STYLE.md section 1).
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections import defaultdict
from pathlib import Path

import pytest

import backtest

PACKAGE = Path(backtest.__file__).resolve().parent

# Lower layers first; a unit (a top-level module or subpackage of backtest) may import
# only units of a lower layer. Units of one layer do not import each other.
LAYERS: list[set[str]] = [
    {"masking"},
    {"errors", "logs"},
    {"config", "conflicts", "metrics"},
    {"data", "results", "summary", "jobs", "overfitting"},  # data: Bars, loaders
    {"strategies", "plots", "_sweep_table"},  # strategies take Bars
    {"engine"},  # engine v2: target_weights, the kernels, the fused SmaCross/Momentum
    {"search"},
    {"walkforward", "montecarlo", "_limits", "report"},
    {"tracking"},
    {"tasks"},
    {"queue"},
    {"distributed", "sweep"},
    {"app", "compare", "sync", "worker"},
    {"cli"},
    {"__main__"},
]
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
# Known upward edges, each a function-level import in one file (named with the reason).
# None left: the strategy checks that need the engine live in engine/_checks.py.
ALLOWED_LAZY: dict[tuple[str, str], str] = {}
# ``from backtest import __version__`` reads a constant of the package root.
IGNORED_TARGETS = {"__version__", "__init__"}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """Nodes under ``if TYPE_CHECKING:`` (not run) and ``if __name__ == "__main__":`` (a
    script's entry point sits above everything, like the ``backtest`` command)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
            "TYPE_CHECKING" in ast.unparse(node.test) or "__main__" in ast.unparse(node.test)
        ):
            skip.update(id(n) for n in ast.walk(node))
    return skip


def imports_by_unit() -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> the modules (``file:line``) that import it."""
    out: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _module_name(path)
        tree = ast.parse(path.read_text(), filename=str(path))
        skip = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "backtest":
                    targets = [f"backtest.{a.name}" for a in node.names]
                elif node.module.startswith("backtest."):
                    targets = [node.module]
                else:
                    continue
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("backtest.")]
            else:
                continue
            for target in targets:
                src, dst = _unit(source), _unit(target)
                if src != dst and dst not in IGNORED_TARGETS:
                    out[src][dst].append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return out


def test_every_unit_has_a_layer() -> None:
    units = {_unit(_module_name(p)) for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert units - set(RANK) == set(), "add the new module to LAYERS"


def test_no_module_imports_a_layer_above_its_own() -> None:
    violations = [
        f"{src} (layer {RANK[src]}) imports {dst} (layer {RANK[dst]}) at {', '.join(where)}"
        for src, targets in imports_by_unit().items()
        if src != "__init__"
        for dst, where in targets.items()
        if RANK[dst] >= RANK[src]
        and not all(w.startswith(ALLOWED_LAZY.get((src, dst), "-") + ":") for w in where)
    ]
    assert violations == []


def test_allowed_upward_imports_are_lazy() -> None:
    """An allowed upward edge is only inside functions (importing the lower unit alone works)."""
    for (_src, dst), path in ALLOWED_LAZY.items():
        tree = ast.parse((PACKAGE.parent / path).read_text())
        top = [
            n
            for n in tree.body
            if isinstance(n, ast.ImportFrom) and (n.module or "").startswith(f"backtest.{dst}")
        ]
        assert top == [], f"{path} imports backtest.{dst} at module level"


def test_the_check_finds_a_cycle_when_there_is_one() -> None:
    """The rule is not vacuous: the old tracking -> app import would be reported."""
    graph = imports_by_unit()
    assert RANK["app"] > RANK["tracking"]
    assert "tasks" in graph["app"] and "tracking" in graph["tasks"]  # real edges are seen
    assert "app" not in graph["tracking"] and "tasks" not in graph["jobs"]
    assert "distributed" not in graph["queue"]


def _modules() -> list[str]:
    names = ["backtest"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="backtest."):
        if info.name != "backtest.__main__":
            names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules())
def test_every_module_imports_on_its_own(name: str) -> None:
    importlib.import_module(name)
