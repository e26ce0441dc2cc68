"""Parameter-search throughput and memory: backtest's grid_search vs vectorbt, same run.

Workload (issue 3): SMA crossover, fast in range(5, 105, 5) x slow in range(10, 310, 10)
with fast < slow (500 combinations), and a 10,000-combination grid (fast 1..100 x slow
102..300 step 2); geometric Brownian motion closes (seed 42, drift 0.0002 and
volatility 0.01 per bar in log terms, start 100); 2,520 and 25,200 bars; 1 and 100
assets (an equally weighted, daily rebalanced portfolio of the per-asset strategies);
10 bp costs per unit traded.

Each (library, case) runs in its own subprocess: data, warm-up (numba JIT load or
compile, timed separately), then the timed run (the best of several repeats, more for
short runs, for both libraries alike: the machine may be shared) with the peak
resident memory above the pre-run level (Linux VmHWM after clearing it). vectorbt
runs in this interpreter when it imports, else in ``--vbt-python`` (e.g. a venv); on
100 assets it runs a subset of the combinations (its arrays grow with assets x
combinations x bars) and its rate is per backtest all the same.

Conventions that differ (so metrics agree closely, not exactly): vectorbt buys
``cash / (price * (1 + fee))`` shares, so an entry keeps ``1 / (1 + c)`` of equity
where we keep ``1 - c`` (a difference of ``c**2 / (1 + c)``, 1e-6 at 10 bp, per entry);
exits agree. Both hold the position decided at a close over the next bar. vectorbt is
told ``year_freq = 252 days`` so Sharpe ratios annualise alike.

Run: python benchmarks/search.py [--quick] [--no-vectorbt] [--vbt-python PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._measure import gbm, measure  # noqa: E402

COST = 0.001  # 10 bp
GRID_500 = [(f, s) for f in range(5, 105, 5) for s in range(10, 310, 10) if f < s]
GRID_10K = [(f, s) for f in range(1, 101) for s in range(102, 302, 2)]
CASES = {
    # name: (grid, n_bars, n_assets, vectorbt's share of the combinations)
    "500 x 2,520 bars x 1 asset": ("500", 2520, 1, 1.0),
    "500 x 25,200 bars x 1 asset": ("500", 25200, 1, 1.0),
    "500 x 2,520 bars x 100 assets": ("500", 2520, 100, 0.1),
    "500 x 25,200 bars x 100 assets": ("500", 25200, 100, 0.02),
    "10,000 x 2,520 bars x 1 asset": ("10k", 2520, 1, 1.0),
}


# --- measuring --------------------------------------------------------------------------


# --- the two workers --------------------------------------------------------------------


def run_ours(
    grid: list[tuple[int, int]], n_bars: int, n_assets: int, share: float, dump: str | None
) -> dict:  # type: ignore[type-arg]
    sys.path.insert(0, str(ROOT))
    import numba

    from backtest.search import StrategyEvaluator, grid_search
    from backtest.strategies import SmaCross

    prices = gbm(n_bars, n_assets)
    fast = sorted({f for f, _ in grid})
    slow = sorted({s for _, s in grid})
    ev = StrategyEvaluator(prices, SmaCross, fee_bps=10.0)
    t0 = time.perf_counter()
    grid_search(
        {"fast": [5, 10], "slow": [20, 30]},
        StrategyEvaluator(prices.iloc[:300], SmaCross),
        progress=False,
    )
    first = time.perf_counter() - t0

    def work():  # type: ignore[no-untyped-def]
        return grid_search(
            {"fast": fast, "slow": slow}, ev, constraint="fast < slow", progress=False
        )

    size = len(grid) * n_bars * n_assets
    repeats = 20 if size < 5e7 else 5 if size < 5e8 else 1  # best of: the machine is shared
    seconds, peak, res = measure(work, repeats)
    assert len(res.trials) == len(grid)
    if dump:
        t = res.trials
        np.savez(
            dump,
            fast=t["fast"],
            slow=t["slow"],
            sharpe=t["sharpe_ratio"],
            total_return=t["total_return"],
            n_trades=t["n_trades"],
        )
    return {
        "seconds": seconds,
        "n": len(grid),
        "peak": peak,
        "first_call": first,
        "threads": numba.get_num_threads(),
    }


def run_vectorbt(
    grid: list[tuple[int, int]], n_bars: int, n_assets: int, share: float, dump: str | None
) -> dict:  # type: ignore[type-arg]
    import warnings

    warnings.filterwarnings("ignore")
    import vectorbt as vbt

    vbt.settings.returns["year_freq"] = "252 days"
    vbt.settings.caching["enabled"] = False
    prices = gbm(n_bars, n_assets)
    k = max(1, round(len(grid) * share))
    pairs = grid[:k]

    def backtest(close, pairs):  # type: ignore[no-untyped-def]
        fast_ma = vbt.MA.run(close, window=[f for f, _ in pairs], short_name="fast")
        slow_ma = vbt.MA.run(close, window=[s for _, s in pairs], short_name="slow")
        entries = fast_ma.ma_above(slow_ma)  # long while fast > slow, as SmaCross
        pf = vbt.Portfolio.from_signals(close, entries, ~entries, fees=COST, freq="1D")
        if close.shape[1] == 1:
            return pf.sharpe_ratio(), pf.total_return(), pf.trades.count()
        rets = pf.returns()  # per asset; the portfolio is their daily equal-weight mean
        combo = rets.T.groupby(level=["fast_window", "slow_window"], sort=False).mean().T
        return combo.vbt.returns(freq="1D").sharpe_ratio(), None, None

    t0 = time.perf_counter()
    backtest(prices.iloc[:300, :1], [(5, 20), (10, 30)])
    first = time.perf_counter() - t0
    size = k * n_bars * n_assets
    repeats = 5 if size < 2e6 else 3 if size < 2e7 else 1
    seconds, peak, out = measure(lambda: backtest(prices, pairs), repeats)
    if dump and out[1] is not None:
        np.savez(
            dump,
            sharpe=np.asarray(out[0]),
            total_return=np.asarray(out[1]),
            n_trades=np.asarray(out[2]),
        )
    return {
        "seconds": seconds,
        "n": k,
        "peak": peak,
        "first_call": first,
        "version": vbt.__version__,
    }


# --- the driver -------------------------------------------------------------------------


def spawn(
    python: str, lib: str, case: str, dump: str | None, env: dict | None = None
) -> dict | None:  # type: ignore[type-arg]
    cmd = [python, __file__, "--worker", lib, "--case", case]
    if dump:
        cmd += ["--dump", dump]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if proc.returncode != 0:
        print(f"  ! {lib} {case}: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


INSTALL_HINT = "pip install -e '.[bench]'  (vectorbt, the peer this benchmark compares with)"


def vectorbt_python(explicit: str | None) -> str | None:
    """This interpreter if it imports vectorbt, else ``--vbt-python``; None says how to install."""
    python = explicit or sys.executable
    if explicit and shutil.which(explicit) is None and not Path(explicit).is_file():
        raise SystemExit(f"--vbt-python {explicit!r} does not exist")
    probe = subprocess.run([python, "-c", "import vectorbt"], capture_output=True, check=False)
    if probe.returncode == 0:
        return python
    print(f"vectorbt is not importable in {python}; to compare with it: {INSTALL_HINT}")
    return None


def callable_overhead() -> float:
    sys.path.insert(0, str(ROOT))
    from backtest.search import grid_search

    def evaluator(params):  # type: ignore[no-untyped-def]
        return 0.0

    grid = {"x": list(range(20_000))}
    grid_search(grid, evaluator, metric="v", progress=False)
    t0 = time.perf_counter()
    for _ in range(20_000):
        evaluator({"x": 1})
    own = time.perf_counter() - t0
    t0 = time.perf_counter()
    grid_search(grid, evaluator, metric="v", progress=False)
    return (time.perf_counter() - t0 - own) / 20_000 * 1e6


def cold_compile_seconds() -> float:
    with tempfile.TemporaryDirectory() as cache:
        code = (
            f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
            "from benchmarks.search import run_ours, GRID_500; "
            "r = run_ours(GRID_500[:4], 300, 2, 1.0, None); print(r['first_call'])"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**os.environ, "NUMBA_CACHE_DIR": cache},
            cwd=ROOT,
            check=False,
        )
        return float(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=["ours", "vectorbt"])
    parser.add_argument("--case")
    parser.add_argument("--dump")
    parser.add_argument("--quick", action="store_true", help="only the 2,520-bar 1-asset cases")
    parser.add_argument("--no-vectorbt", action="store_true")
    parser.add_argument("--vbt-python", help="interpreter with vectorbt installed")
    args = parser.parse_args()
    if args.worker:
        grid_name, n_bars, n_assets, share = CASES[args.case]
        grid = GRID_500 if grid_name == "500" else GRID_10K
        fn = run_ours if args.worker == "ours" else run_vectorbt
        print(json.dumps(fn(grid, n_bars, n_assets, share, args.dump)))
        return

    vbt_python = None if args.no_vectorbt else vectorbt_python(args.vbt_python)
    cases = [c for c in CASES if not args.quick or ("2,520" in c and "1 asset" in c)]
    load = os.getloadavg()[0]
    print(
        f"backtest grid_search(StrategyEvaluator) vs vectorbt "
        f"({'vectorbt in ' + vbt_python if vbt_python else 'vectorbt not available'}); "
        f"{os.cpu_count()} cores, load average {load:.1f} at start"
    )
    print(
        f"numba compile of the kernels from a cold cache: {cold_compile_seconds():.1f} s "
        "(then cached on disk)"
    )
    header = (
        f"{'case':<32}{'ours bt/s':>12}{'ours s':>9}{'ours MB':>9}"
        f"{'vbt bt/s':>10}{'vbt s':>8}{'vbt MB':>9}{'speed x':>9}{'mem /':>8}"
    )
    print(header)
    print("-" * len(header))
    agreement = None
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            dump_ours = dump_vbt = None
            if case == "500 x 2,520 bars x 1 asset":
                dump_ours, dump_vbt = f"{tmp}/ours.npz", f"{tmp}/vbt.npz"
            ours = spawn(sys.executable, "ours", case, dump_ours)
            vbt = spawn(vbt_python, "vectorbt", case, dump_vbt) if vbt_python else None
            if ours is None:
                continue
            rate = ours["n"] / ours["seconds"]
            line = f"{case:<32}{rate:>12,.0f}{ours['seconds']:>9.3f}{ours['peak'] / 2**20:>9.1f}"
            if vbt is not None:
                vrate = vbt["n"] / vbt["seconds"]
                subset = "" if vbt["n"] == ours["n"] else f" (vectorbt: {vbt['n']} combos)"
                line += (
                    f"{vrate:>10,.0f}{vbt['seconds']:>8.2f}{vbt['peak'] / 2**20:>9.1f}"
                    f"{rate / vrate:>9.1f}{vbt['peak'] / max(ours['peak'], 1):>8.1f}"
                    f"{subset}"
                )
            print(line, flush=True)
            if dump_vbt and vbt is not None and Path(dump_vbt).exists():
                a, b = np.load(dump_ours), np.load(dump_vbt)
                agreement = (
                    np.nanmax(np.abs(a["sharpe"] - b["sharpe"])),
                    np.nanmax(
                        np.abs(a["total_return"] - b["total_return"])
                        / np.abs(1 + b["total_return"])
                    ),
                    int(np.sum(a["n_trades"] != b["n_trades"])),
                    len(a["sharpe"]),
                )
    print("-" * len(header))
    print(f"python-callable evaluator overhead (serial): {callable_overhead():.1f} µs per trial")
    if agreement:
        print(
            f"metrics vs vectorbt (500 x 2,520 x 1): max |Sharpe diff| {agreement[0]:.2e}, "
            f"max relative equity diff {agreement[1]:.2e} (entry fee 1/(1+c) vs 1-c), "
            f"trade counts differ in {agreement[2]} of {agreement[3]} combinations"
        )
    print(
        "bt/s: backtests (parameter sets over all assets) per second; MB: peak resident "
        "memory above the level before the timed run; speed x and mem /: vectorbt's "
        "time and memory over ours."
    )


if __name__ == "__main__":
    main()
