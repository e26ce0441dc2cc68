"""backtest: a declarative, config-driven backtesting experiment runner.

Write strategies, parameter grids, walk-forward schemes and Monte Carlo settings as
Hydra YAML, run ``python -m backtest +experiment=NAME``, fan sweeps out to RQ workers
and compare runs in MLflow. Every result carries its config, seed, data fingerprint
and version.

``import backtest`` stays light: heavier parts load on first use, and
``BacktestJobQueue`` / ``BacktestWorker`` are ``None`` when rq is not installed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from backtest.errors import (
    BacktestError,
    ConfigError,
    DataValidationError,
    JobNotFound,
    PathDivergence,
    QueueUnavailable,
    ResultCorrupt,
    ResultPathMissing,
    StrategyContractError,
    TrialsFailed,
)

__version__ = "0.1.0"

#: Key folders kept under the kernel cache besides the one in use (older ones are removed).
KEPT_KERNEL_CACHES = 3


def source_keyed_numba_cache(root: Path, base: Path | None = None) -> Path | None:
    """Point numba's cache at a folder named after the kernel sources under ``root``.

    numba checks a cached kernel against its own file only: after an upgrade that changes
    a kernel in one file, a caller in another file would load its old machine code (the
    search's check against ``simulate`` would then stop the run with a ``PathDivergence``).
    Keyed by a hash of every module under ``root`` that uses numba, a changed kernel
    anywhere means a fresh folder, compiled once. ``NUMBA_CACHE_DIR``, when set, wins.
    The folder is under ``base`` (default ``$XDG_CACHE_HOME/backtest/numba`` or
    ``~/.cache/backtest/numba``); the oldest key folders beyond :data:`KEPT_KERNEL_CACHES`
    are removed. Returns the folder, or ``None`` where numba's own default stays (the
    variable was set, or the folder cannot be written).
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        text = path.read_bytes()
        if b"numba" in text:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + text)
    if base is None:
        home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        base = Path(home) / "backtest" / "numba"
    folder = base / digest.hexdigest()[:16]
    try:
        new = not folder.is_dir()
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            return None
        if new:
            _drop_old_caches(base, keep=folder)
    except OSError:
        return None
    os.environ["NUMBA_CACHE_DIR"] = str(folder)  # for this process and its workers
    if "numba" in sys.modules:  # numba read the variable at its import: tell it directly
        sys.modules["numba"].config.CACHE_DIR = str(folder)
    return folder


def _drop_old_caches(base: Path, keep: Path) -> None:
    """Remove all but the newest :data:`KEPT_KERNEL_CACHES` other key folders."""
    import shutil

    others = sorted(
        (p for p in base.iterdir() if p.is_dir() and p != keep),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in others[KEPT_KERNEL_CACHES:]:
        shutil.rmtree(old, ignore_errors=True)


source_keyed_numba_cache(Path(__file__).parent)

__all__ = [
    "BacktestError",
    "BacktestJob",
    "BacktestJobQueue",
    "BacktestResult",
    "BacktestWorker",
    "Bars",
    "ConfigError",
    "DataValidationError",
    "JobNotFound",
    "MonteCarloConfig",
    "MonteCarloReport",
    "MonteCarloSimulator",
    "PathDivergence",
    "QueueConfig",
    "QueueUnavailable",
    "ResultCorrupt",
    "ResultPathMissing",
    "SearchResult",
    "StrategyContractError",
    "StrategyEvaluator",
    "StrategyReturnsEvaluator",
    "TrialsFailed",
    "WalkForwardConfig",
    "WalkForwardOptimizer",
    "WalkForwardResult",
    "__version__",
    "check_strategy",
    "deflated_sharpe_ratio",
    "distributed_search",
    "grid_search",
    "load_result",
    "optuna_search",
    "probabilistic_sharpe_ratio",
    "probability_of_backtest_overfitting",
    "random_search",
    "run_backtest",
    "run_search",
    "simulate",
    "simulate_batch",
    "target_weights",
]

# name -> module that defines it; imported on first attribute access (PEP 562).
_LAZY = {
    "BacktestJob": "backtest.tasks._jobs",
    "run_backtest": "backtest.tasks",
    "BacktestResult": "backtest.engine",
    "simulate": "backtest.engine",
    "simulate_batch": "backtest.engine",
    "target_weights": "backtest.engine",
    "Bars": "backtest.data",
    "check_strategy": "backtest.engine",
    "load_result": "backtest.report",
    "QueueConfig": "backtest.config",
    "WalkForwardConfig": "backtest.config",
    "MonteCarloConfig": "backtest.config",
    "MonteCarloSimulator": "backtest.montecarlo",
    "MonteCarloReport": "backtest.montecarlo",
    "SearchResult": "backtest.search",
    "StrategyEvaluator": "backtest.search",
    "grid_search": "backtest.search",
    "random_search": "backtest.search",
    "optuna_search": "backtest.search",
    "run_search": "backtest.search",
    "WalkForwardOptimizer": "backtest.walkforward",
    "WalkForwardResult": "backtest.walkforward",
    "StrategyReturnsEvaluator": "backtest.walkforward",
    "deflated_sharpe_ratio": "backtest.overfitting",
    "probabilistic_sharpe_ratio": "backtest.overfitting",
    "probability_of_backtest_overfitting": "backtest.overfitting",
    "distributed_search": "backtest.queue._distributed",
}
_NEEDS_RQ = {"BacktestJobQueue": "backtest.queue", "BacktestWorker": "backtest.queue"}


def _rq_installed() -> bool:
    return importlib.util.find_spec("rq") is not None and (
        importlib.util.find_spec("redis") is not None
    )


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _NEEDS_RQ:
        value = getattr(importlib.import_module(_NEEDS_RQ[name]), name) if _rq_installed() else None
    else:
        raise AttributeError(f"module 'backtest' has no attribute {name!r}")
    globals()[name] = value
    return value


# Old module paths, kept working after the modules moved into their packages: `python -m
# backtest.worker` (and .sync, .compare, .distributed) and `import backtest.jobs` find the
# module that does the work now. old path -> (module imported, module run by `python -m`).
_MOVED = {
    "backtest.compare": ("backtest.tracking._compare", "backtest.tracking._compare"),
    "backtest.sync": ("backtest.tracking._sync", "backtest.tracking._sync"),
    "backtest.worker": ("backtest.queue._cli", "backtest.queue._cli"),
    "backtest.distributed": ("backtest.queue._distributed", "backtest.cli._distributed"),
    "backtest.jobs": ("backtest.tasks._jobs", "backtest.tasks._jobs"),
    "backtest.sweep": ("backtest.cli._callbacks", "backtest.cli._callbacks"),
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module path of :data:`_MOVED`: the import is the new module itself."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in _MOVED:
            return None
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec: Any) -> Any:
        return importlib.import_module(_MOVED[spec.name][0])

    def exec_module(self, module: Any) -> None:
        """Nothing to run: the new module was imported by :meth:`create_module`."""

    def get_code(self, name: str) -> Any:
        """The code ``python -m OLD`` runs: the new command module's."""
        run = _MOVED[name][1]
        spec = importlib.util.find_spec(run)
        assert spec is not None and spec.loader is not None
        return spec.loader.get_code(run)  # type: ignore[attr-defined]


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
