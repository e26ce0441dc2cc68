"""Timing, memory and the OHLC bars shared by the benchmarks (run as scripts from this folder)."""

from __future__ import annotations

import contextlib
import gc
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def measure(fn: Callable[[], Any], repeats: int) -> tuple[float, int, Any]:
    """Best wall time of ``repeats`` calls and the peak RSS above the level before them.

    The peak is Linux's VmHWM after clearing it (0 where /proc is missing).
    """
    gc.collect()
    base = _status("VmRSS")
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    best, out = best_of(fn, repeats)
    return best, max(_status("VmHWM") - base, 0), out


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Best wall time of ``repeats`` calls, and the last call's result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def best_in_turns(runs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Each run's best wall time, the runs taking turns repeat after repeat.

    One warm-up call each first. Taking turns, a burst of load on a shared machine hits
    every run alike, so their ratios hold.
    """
    for fn in runs.values():
        fn()
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for key, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            best[key] = min(best[key], time.perf_counter() - t0)
    return best


def ohlc(n_bars: int) -> dict[str, np.ndarray]:
    """GBM closes with gapping opens, and highs / lows around open and close."""
    rng = np.random.default_rng(42)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0002, 0.01, n_bars)))
    prev = np.concatenate([[100.0], close[:-1]])
    open_ = prev * np.exp(rng.normal(0.0, 0.004, n_bars))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.005, n_bars)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.005, n_bars)))
    return {"open": open_, "high": high, "low": low, "close": close}


def run_side(script: str, side: str, *args: str) -> dict[str, Any]:
    """``python script --worker side ARGS`` from the repository root: its last line, as JSON.

    Each side of a comparison runs in its own process (its own compilation and peak
    memory); a side that fails stops the benchmark with the end of its stderr.
    """
    cmd = [sys.executable, script, "--worker", side, *args]
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{side} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def gbm(n_bars: int, n_assets: int, seed: int = 42) -> Any:
    """Seeded GBM closes (drift 0.0002, volatility 0.01 per bar in log terms, start 100).

    A wide frame on business days from 2000-01-03, columns ``A000``, ``A001``, ...
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    log_ret = rng.normal(0.0002, 0.01, (n_bars, n_assets))
    log_ret[0] = 0.0
    close = 100.0 * np.exp(np.cumsum(log_ret, axis=0))
    index = pd.bdate_range("2000-01-03", periods=n_bars)
    return pd.DataFrame(close, index=index, columns=[f"A{j:03d}" for j in range(n_assets)])
