"""A compilation is announced once, and only when numba really compiles (a cache miss)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from backtest.engine._compiling import NOTICE

KERNELS = """
from numba import njit

@njit(cache=True)
def double(x):
    return 2 * x

@njit(cache=True)
def triple(x):
    return 3 * x
"""

RUN = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
import backtest.engine
import kernels
print(kernels.double(2.0) + kernels.triple(1.0))
"""


def _run(folder: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(folder / "cache"), "PYTHONPATH": str(folder)}
    return subprocess.run(
        [sys.executable, "-c", RUN], capture_output=True, text=True, timeout=300, env=env
    )


def test_the_first_compilation_is_announced_once_and_a_cached_run_says_nothing(
    tmp_path: Path,
) -> None:
    (tmp_path / "kernels.py").write_text(KERNELS)
    cold = _run(tmp_path)
    assert cold.returncode == 0, cold.stderr[-2000:]
    assert cold.stdout.strip() == "7.0"
    assert cold.stderr.count(NOTICE) == 1  # two kernels compiled, one notice
    warm = _run(tmp_path)
    assert warm.returncode == 0, warm.stderr[-2000:]
    assert NOTICE not in warm.stderr  # loaded from the cache: nothing to wait for


CALLEE = """
from numba import njit

@njit(cache=True)
def bump(x):
    return x + {step}
"""

CALLER = """
from numba import njit
from kpkg.callee import bump

@njit(cache=True)
def run(x):
    return bump(x) * 10
"""

KEYED = """
import os, sys
from pathlib import Path
from backtest import source_keyed_numba_cache
os.environ.pop("NUMBA_CACHE_DIR")  # set by backtest's import for its own kernels
source_keyed_numba_cache(Path(sys.argv[1]) / "kpkg", base=Path(sys.argv[1]) / "keyed")
from kpkg.caller import run
print(run(1.0))
"""


def _kernel_run(folder: Path, script: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    environ.update(PYTHONPATH=str(folder), **env)
    out = subprocess.run(
        [sys.executable, "-c", script, str(folder)],
        capture_output=True, text=True, timeout=300, env=environ,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_a_kernel_changed_in_another_file_is_compiled_again_not_loaded_stale(
    tmp_path: Path,
) -> None:
    """numba checks a cached caller against its own file only; the cache keyed by the
    sources (what ``import backtest`` does for its own kernels) sees the callee change."""
    package = tmp_path / "kpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "caller.py").write_text(CALLER)
    plain = "from kpkg.caller import run; print(run(1.0))"
    for step, expected in ((1, "20.0"), (2, "30.0")):
        (package / "callee.py").write_text(CALLEE.format(step=step))
        assert _kernel_run(tmp_path, KEYED) == expected  # compiled again after the change
        plain_out = _kernel_run(tmp_path, plain, NUMBA_CACHE_DIR=str(tmp_path / "plain"))
        if step == 1:
            assert plain_out == "20.0"
    # the hazard the key removes: numba's own cache kept the caller's old machine code
    assert plain_out == "20.0"
    assert len(list((tmp_path / "keyed").iterdir())) == 2  # one folder per source version


def test_import_backtest_keys_the_kernel_cache_unless_numba_cache_dir_is_set(
    tmp_path: Path,
) -> None:
    show = "import os, backtest; print(os.environ['NUMBA_CACHE_DIR'])"
    keyed = _kernel_run(tmp_path, show, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    assert Path(keyed).parent == tmp_path / "xdg" / "backtest" / "numba"
    assert _kernel_run(tmp_path, show, NUMBA_CACHE_DIR=str(tmp_path / "mine")) == str(
        tmp_path / "mine"
    )


#: Compiles one of the engine's kernels once the file ``argv[1]`` exists (a start line for
#: processes started together), then prints how often it was compiled here and its result.
#: ``argv[2] == "bad"`` first calls it with an argument it cannot compile for.
TOGETHER = """
import os, sys, time
import numpy as np
import backtest.engine
from backtest.engine._trades import _trades_kernel
from numba.core import event

compiled = []
class Count(event.Listener):
    def on_start(self, ev):
        if ev.data["dispatcher"] is _trades_kernel:
            compiled.append(1)
    def on_end(self, ev):
        pass
event.register("numba:compile", Count())
if sys.argv[2] == "bad":
    try:
        _trades_kernel(np.zeros(3), np.zeros(3), "a string")
    except Exception as exc:
        print("failed:", type(exc).__name__, flush=True)
    time.sleep(120)  # killed by the test
while not os.path.exists(sys.argv[1]):
    time.sleep(0.002)
pos = np.array([0.0, 1.0, 1.0, 0.0, -1.0, 0.0])
r = np.array([0.0, 0.01, -0.02, 0.03, 0.01, -0.01])
result = _trades_kernel(pos, r, 0.001)[3].tolist()
print(len(compiled), repr(result), flush=True)
"""


def _together(tmp_path: Path, mode: str = "good") -> subprocess.Popen[str]:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.Popen(
        [sys.executable, "-c", TOGETHER, str(tmp_path / "go"), mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def test_processes_started_together_on_a_fresh_cache_compile_a_kernel_once(
    tmp_path: Path,
) -> None:
    """Workers starting together on a new machine: one compiles, the others load its work."""
    procs = [_together(tmp_path) for _ in range(3)]
    time.sleep(1.0)  # all three at the start line (they import while we wait)
    (tmp_path / "go").touch()
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    counts = [int(out.split()[0]) for out, _ in outs]
    results = {out.split(maxsplit=1)[1] for out, _ in outs}
    assert sum(counts) == 1, counts  # each process compiled it before the lock: [1, 1, 1]
    assert len(results) == 1  # and the loaded kernel computes what the compiled one does


def test_a_compilation_that_fails_does_not_hold_up_other_processes(tmp_path: Path) -> None:
    """A kernel that failed to compile gives up its lock at once, not when its process ends."""
    (tmp_path / "go").touch()
    bad = _together(tmp_path, "bad")
    try:
        assert bad.stdout is not None
        assert bad.stdout.readline().startswith("failed: TypingError")
        good = _together(tmp_path)  # the same kernel, while the failed process still lives
        out, err = good.communicate(timeout=200)  # a held lock would keep it 600 s
        assert good.returncode == 0, err[-2000:]
        assert out.split()[0] == "1"  # it compiled the kernel itself
        assert bad.poll() is None  # the failed one was alive all along
    finally:
        bad.kill()
        bad.communicate()


def _kernel_types(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[tuple]:
    """The numba types of every call of ``module.name`` (the real kernel still runs)."""
    import numba

    seen: list[tuple] = []
    real = getattr(module, name)

    def recording(*args: object) -> object:
        seen.append(tuple(numba.typeof(a) for a in args))
        return real(*args)

    monkeypatch.setattr(module, name, recording)
    return seen


def test_prices_in_any_order_or_copy_mode_reach_the_kernels_as_one_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """numba compiles once per argument type, and an array's order and whether it can be
    written are part of it: a full panel, OHLC bars and a universe with a late listing each
    reached the cash-and-units kernel (about 30 s to compile) as another type."""
    import numpy as np
    import pandas as pd

    from backtest.data import Bars
    from backtest.engine import _batch_kernel, _single, simulate, simulate_batch
    from backtest.strategies import SmaCross

    index = pd.date_range("2020-01-01", periods=120, freq="B")
    values = 100.0 * np.cumprod(1.0 + np.random.default_rng(3).normal(0.0, 0.01, (120, 2)), 0)
    close = pd.DataFrame(values, index=index, columns=["A", "B"])
    listed_late = close.notna()
    listed_late.iloc[:10, 1] = False
    forms = {
        "closes": close,
        "OHLC bars": Bars(close=close, open=close * 0.99, high=close * 1.01, low=close * 0.98),
        "a universe": Bars(close=close, tradable=listed_late),
    }
    single = _kernel_types(monkeypatch, _single, "run_book")
    batched = _kernel_types(monkeypatch, _batch_kernel, "run_books")
    for close in forms.values():
        simulate(close, SmaCross(fast=5, slow=20), check_lookahead=False, initial_capital=1e5)
        simulate_batch(close, SmaCross, {"fast": [5], "slow": [20]}, initial_capital=1e5)
    for calls in (single, batched):
        assert len(calls) == len(forms)
        differ = [i for i, types in enumerate(zip(*calls, strict=True)) if len(set(types)) > 1]
        assert not differ, [[call[i] for call in calls] for i in differ]


#: Records, per process, its command line and each compilation of one of our kernels.
RECORDING = """
import os, sys
from numba.core import event

_log = os.path.join(os.environ["COMPILE_LOG"], str(os.getpid()))
with open(_log + ".argv", "w") as f:
    f.write(" ".join(sys.orig_argv))

class _Record(event.Listener):
    def on_start(self, ev):
        pass
    def on_end(self, ev):
        func = ev.data["dispatcher"].py_func
        if func.__module__.startswith("backtest.") and ev.data.get("args") is not None:
            with open(_log + ".compiled", "a") as f:
                f.write(f"{func.__module__}.{func.__qualname__} {ev.data['args']}\\n")

event.register("numba:compile", _Record())
"""


def _grid_run(tmp_path: Path, name: str, cache: str, ahead: str) -> dict[str, list[str]]:
    """A grid search of the sample data on kernel cache ``cache``; compilations by process."""
    site, log, cwd = tmp_path / "site", tmp_path / name / "log", tmp_path / name / "cwd"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(RECORDING)
    log.mkdir(parents=True)
    cwd.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(site),
        "COMPILE_LOG": str(log),
        "NUMBA_CACHE_DIR": str(tmp_path / cache),
        "BACKTEST_COMPILE_AHEAD": ahead,
    }
    args = ["+experiment=sma_grid", "tracking=none", "report=false"]
    out = subprocess.run(
        [sys.executable, "-m", "backtest", *args],
        capture_output=True, text=True, timeout=600, env=env, cwd=cwd,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    (result,) = cwd.glob("outputs/**/result.json")
    record = json.loads(result.read_text())
    by_process: dict[str, Any] = {"result": {k: record[k] for k in ("metrics", "overfitting")}}
    for argv in log.glob("*.argv"):
        compiled = argv.with_suffix(".compiled")
        kind = "helper" if "backtest.tasks._ahead_run" in argv.read_text() else "main"
        assert kind not in by_process, by_process  # one run, at most one helper
        by_process[kind] = compiled.read_text().splitlines() if compiled.exists() else []
        if kind == "helper":  # ended (or was killed) with the run
            import psutil

            deadline = time.monotonic() + 10
            while psutil.pid_exists(int(argv.stem)) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not psutil.pid_exists(int(argv.stem))
    return by_process


@pytest.mark.slow
def test_a_cold_run_compiles_its_later_kernels_in_a_helper_each_once(tmp_path: Path) -> None:
    """On a fresh cache a second process compiles kernels the run needs later: between the
    two, each kernel (and signature) is compiled once, and exactly the run's own set."""
    from collections import Counter

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("the helper starts on machines with two cores or more")
    alone = _grid_run(tmp_path, "alone", "cache-alone", ahead="0")
    assert set(alone) == {"result", "main"}  # the switch turns the helper off
    both = _grid_run(tmp_path, "both", "cache-both", ahead="1")
    assert set(both) == {"result", "main", "helper"}
    assert both["result"] == alone["result"]  # metrics and overfitting statistics unchanged
    assert both["helper"], "the helper compiled nothing"
    counts = Counter(both["main"] + both["helper"])
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]
    assert set(counts) == set(alone["main"])  # nothing the run does not need, nothing missed
    assert len(alone["main"]) == len(set(alone["main"]))
    warm = _grid_run(tmp_path, "warm", "cache-both", ahead="1")
    assert warm == {"result": alone["result"], "main": []}  # no helper, nothing compiled


@pytest.mark.parametrize(
    ("switch", "load", "cached", "started"),
    [
        (None, 0.5, False, True),  # cold, a core to spare: the default starts it
        (None, 1.2, False, True),  # one of two cores busy: the other compiles ahead
        (None, 1.6, False, False),  # less than half a core to spare
        (None, 3.0, False, False),  # every core busy: it would only take the run's CPU
        ("1", 3.0, False, True),  # on whatever the load
        ("0", 0.5, False, False),  # the switch turns it off
        (None, 0.5, True, False),  # a warm cache: nothing to compile ahead
    ],
)
def test_the_helper_starts_on_a_cold_cache_with_a_core_to_spare_unless_switched_off(
    monkeypatch: pytest.MonkeyPatch, switch: str | None, load: float, cached: bool, started: bool
) -> None:
    from types import SimpleNamespace

    from backtest.tasks import _ahead

    launched: list[object] = []
    monkeypatch.setattr(_ahead, "_started", False)
    monkeypatch.setattr(_ahead, "_cores", lambda: 2)
    monkeypatch.setattr(_ahead.os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(_ahead, "_cached", lambda kernel: cached)
    monkeypatch.setattr(_ahead, "_launch", lambda job, run_dir: launched.append(job) or True)
    if switch is None:
        monkeypatch.delenv(_ahead.ENV, raising=False)
    else:
        monkeypatch.setenv(_ahead.ENV, switch)
    job = SimpleNamespace(task="search")
    settings = SimpleNamespace(montecarlo=None, search=SimpleNamespace(keep_returns=1000))
    assert _ahead.start(job, None, settings) is started  # type: ignore[arg-type]
    assert _ahead.start(job, None, settings) is False  # once per process
    assert launched == ([job] if started else [])
    backtest_only = SimpleNamespace(task="backtest")  # compiles its backtest first itself
    assert _ahead.recipes(backtest_only.task, settings) == []
