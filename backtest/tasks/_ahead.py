"""Compile the kernels a run needs later in a second process, while the run compiles its first.

On a fresh kernel cache (a first run, a new machine, an upgrade) a run spends most of its
time compiling its JIT kernels, one after another on one core. When a run starts on a cold
cache and the machine has two or more usable cores, :func:`start` launches ONE helper
process (``python -m backtest.tasks._ahead_run``) that reaches, through the same code the run
uses, the kernels the run needs after its first one: the single backtest's ``_sleeves``
first (the run's first kernel is its fused search table, or that same backtest), then the
task's remaining kernels from the last the run needs backwards, so the two processes meet
in the middle. Kernels are shared through the cache and
:func:`backtest.engine._compiling.share_compilations`' per-kernel locks: the run finds a
kernel the helper compiled in the cache, or waits for the helper to save it, and nothing
is compiled twice. The helper only writes the kernel cache: results are unchanged.

The helper builds the run's inputs itself (:func:`backtest.tasks.prepare` of the same
job, look-ahead check off) and calls the task's functions on them with small sizes (a
Monte Carlo of a few paths, a bootstrap of a few draws): the JIT compiles per argument type,
array layout and writability included, and calls through the run's own functions give the
types the run will use. It exits when done, is killed when the run's process exits, and
exits itself when that process is gone; a killed helper leaves no broken cache (the JIT
writes a kernel to a temporary file, then renames it; its lock dies with it).

When: at most once per process, only on a cold cache (no current index of any kernel the
helper would compile, see :func:`start`) and a machine with a core to spare (its load
average under its cores less half a core), never inside the helper. The environment variable
``BACKTEST_COMPILE_AHEAD`` sets it: ``0`` off, ``1`` on whatever the load, unset (or
``auto``) as said (off where ``fcntl`` is missing, as the locks are). This module holds
no kernel and never names the JIT package, so that an edit of it leaves the key of the
kernel cache (``backtest/__init__.py``) as it is.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from backtest.engine import _compiling
from backtest.tasks._context import TaskContext, TaskOutput
from backtest.tasks._jobs import BacktestJob

log = logging.getLogger("backtest.tasks")

#: The switch: ``0`` (``false``, ``no``, ``off``) turns the helper off, ``1`` (``true``,
#: ``yes``, ``on``) starts it whatever the machine's load, anything else is ``auto``.
ENV = "BACKTEST_COMPILE_AHEAD"


@dataclass(frozen=True)
class Recipe:
    """Reaches some of a run's kernels through the run's own functions.

    Attributes:
        name: What it compiles, for the log.
        kernels: ``module:function`` of the kernels it compiles (the cold check reads
            their cache indexes).
        run: Calls the functions, given the helper's :class:`TaskContext`.
    """

    name: str
    kernels: tuple[str, ...]
    run: Callable[[TaskContext], None]


def _backtest(ctx: TaskContext) -> Any:
    """The configured strategy's single backtest over all the bars (``simulate``)."""
    from backtest.engine import simulate

    strategy = ctx.strategy_cls(**ctx.strategy_params)
    return simulate(ctx.data, strategy, check_lookahead=False, **ctx.engine_kwargs())


def _trial_matrix(ctx: TaskContext) -> Any:
    """A small bars x trials matrix of returns, as a search keeps them (float64)."""
    import numpy as np

    rng = np.random.default_rng(0)
    n_bars = max(64, min(len(ctx.prices), 256))
    return rng.normal(0.0, 0.01, (n_bars, 4))


def _pbo(ctx: TaskContext) -> None:
    from backtest.overfitting import probability_of_backtest_overfitting

    probability_of_backtest_overfitting(_trial_matrix(ctx), n_blocks=4)


def _spa(ctx: TaskContext) -> None:
    from backtest.overfitting import superior_predictive_ability

    superior_predictive_ability(_trial_matrix(ctx), None, n_bootstrap=8, seed=0)


def _montecarlo(ctx: TaskContext) -> None:
    """The configured Monte Carlo, a few paths, of the configured strategy's backtest."""
    from backtest.tasks import _montecarlo as task

    mc = ctx.settings.montecarlo
    assert mc is not None
    small = replace(mc, n_paths=min(mc.n_paths, 16))
    settings = replace(ctx.settings, montecarlo=small, figures=False)
    with tempfile.TemporaryDirectory(prefix="backtest-ahead-") as run_dir:
        task.attach(
            replace(ctx, settings=settings, run_dir=Path(run_dir), progress=False),
            TaskOutput(backtest=_backtest(ctx)),
        )


SLEEVES = Recipe("single backtest", ("backtest.engine._sleeves:_sleeves",), _backtest)
PBO = Recipe("pbo", ("backtest.overfitting._pbo:_cscv_sharpe",), _pbo)
SPA = Recipe(
    "spa",
    (
        "backtest.overfitting._bootstrap:exceedances",
        "backtest.overfitting._bootstrap:kernel_variance",
        "backtest.overfitting._bootstrap:stationary_draws",
    ),
    _spa,
)
MONTECARLO = Recipe(
    "monte carlo",
    (
        "backtest.montecarlo._kernels:resample_chunk",
        "backtest.montecarlo._kernels:fan_quantiles",
    ),
    _montecarlo,
)


def recipes(task: str, settings: Any) -> list[Recipe]:
    """What the helper compiles for ``task``, in its order (module docstring).

    A search's run compiles its fused table, the best trial's backtest, then the
    overfitting statistics (SPA, then PBO), then an attached Monte Carlo; a walk-forward
    its fused table and window kernels, the backtest, then its fold statistics, stitching
    and Monte Carlo (the window kernels, reached only through the walk-forward, are left
    to it); a backtest or montecarlo task compiles the backtest first itself. A search
    that keeps no trial returns computes no overfitting statistics.
    """
    mc = [MONTECARLO] if settings.montecarlo is not None or task == "montecarlo" else []
    if task == "search":
        return [SLEEVES, *mc, PBO, SPA] if settings.search.keep_returns > 0 else [SLEEVES, *mc]
    if task == "walkforward":
        return [SLEEVES, *mc, SPA, PBO]
    return mc


def _mode() -> str:
    """``off``, ``on`` (whatever the load) or ``auto`` (the default): :data:`ENV`."""
    value = os.environ.get(ENV, "auto").strip().lower()
    if value in ("0", "false", "no", "off") or _compiling.fcntl is None:
        return "off"
    return "on" if value in ("1", "true", "yes", "on") else "auto"


def _idle_core() -> bool:
    """Whether the machine has a core to spare: a load average (1 min) under cores - 0.5.

    On a machine whose cores are all busy the helper only takes CPU time from the run
    (measured: no faster on two cores at a load of 3 to 5). With about one of two cores
    busy (the average still holding a run that just ended) it pays: a cold ``sma_grid``
    10.4-13.2 s against 16.7-17.6 s alone, the flagship 12.5-14.5 s against 20.6-23.8 s.
    """
    try:
        return os.getloadavg()[0] < _cores() - 0.5
    except OSError:  # pragma: no cover - no load average on this system
        return True


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _cached(kernel: str) -> bool:
    """Whether ``module:function``'s cache index exists and is current (any signature)."""
    module, name = kernel.split(":")
    try:
        dispatcher = getattr(importlib.import_module(module), name)
        return bool(dispatcher._cache._cache_file._load_index())
    except Exception:  # the JIT internals moved: call it warm, start nothing
        return True


_started = False
_lock = threading.Lock()


#: Kernels a search or walk-forward compiles first (not the helper's): cached, the cache is warm.
FIRST = ("backtest.engine._fused_kernels:_table_long",)


def start(job: BacktestJob, run_dir: Path | None, settings: Any) -> bool:
    """Start the helper for ``job`` (typed ``settings``) on a cold kernel cache, once a process.

    Cold means that none of the kernels the helper would compile, nor the fused table, has
    a current cache index: a first run on this machine or after an upgrade (a config that
    never reaches some of them must not find the cache cold on every run). Returns whether
    a helper was started. Never raises: a helper that cannot start leaves the run to
    compile everything itself, as without it.
    """
    global _started
    todo = recipes(job.task, settings)
    with _lock:
        mode = _mode()
        if _started or not todo or mode == "off" or _cores() < 2:
            return False
        _started = True  # checked once: a later job of this process finds it warm
        if mode == "auto" and not _idle_core():
            return False
    try:
        if any(_cached(k) for k in (*FIRST, *(k for r in todo for k in r.kernels))):
            return False  # warm: nothing to compile ahead
        return _launch(job, run_dir)
    except Exception as exc:  # an optimisation: never fail the run
        log.debug("compile-ahead helper not started: %s", exc)
        return False


def _launch(job: BacktestJob, run_dir: Path | None) -> bool:
    fd, path = tempfile.mkstemp(prefix="backtest-ahead-", suffix=".pickle")
    with os.fdopen(fd, "wb") as f:
        pickle.dump((job, run_dir), f)
    env = {**os.environ, ENV: "0"}  # the helper starts no helper of its own
    proc = subprocess.Popen(
        [sys.executable, "-m", "backtest.tasks._ahead_run", path, str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        close_fds=True,
    )
    atexit.register(_stop, proc, path)
    threading.Thread(target=proc.wait, daemon=True).start()  # reaped when it ends early
    log.debug("compile-ahead helper started (pid %s)", proc.pid)
    return True


def _stop(proc: subprocess.Popen[bytes], path: str) -> None:
    """Kill the helper at this process's exit (a finished one is left alone)."""
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    with contextlib.suppress(OSError):
        os.unlink(path)  # the job's pickle, when the helper never read it


def _watch_parent(parent: int) -> None:
    """Exit at once when the run's process is gone (killed without its atexit)."""
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(0.5)


def run_helper(
    path: str, parent: int, context: Callable[[BacktestJob, Path | None], TaskContext]
) -> None:
    """The helper process: rebuild the run's inputs (``context``), then run the recipes."""
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    with open(path, "rb") as f:
        job, run_dir = pickle.load(f)
    with contextlib.suppress(OSError):
        os.unlink(path)
    ctx = context(job, run_dir)
    for recipe in recipes(job.task, ctx.settings):
        with contextlib.suppress(Exception):  # the run meets the same error, and reports it
            recipe.run(ctx)
