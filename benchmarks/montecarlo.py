"""Monte Carlo benchmark: 10,000 resamples of a daily return series, scored with
Sharpe and max drawdown, ours against NumPy resampling + vectorbt's returns accessor.

    python benchmarks/montecarlo.py            # all four cases, about four minutes
    python benchmarks/montecarlo.py --quick    # 1,000 paths, a smoke test

Each case runs in a fresh subprocess, so peak memory is that case's alone:
``peak RSS`` is the process's high-water mark (interpreter and libraries included),
``run peak`` the rise of that mark during the call. Times are measured in another
process holding both sides, calling them alternately three times after a warm-up
(compilation excluded for both), so a load spike on a shared machine hits both;
the fastest call of each side is reported.

The baseline draws the same resampling scheme with NumPy, one chunk of 1,000 paths
at a time (a single 10,000 x 25,200 matrix would need 2 GB per array), and scores
each chunk with ``DataFrame.vbt.returns`` (``sharpe_ratio``, ``max_drawdown``).
Without vectorbt it falls back to the same metrics in plain NumPy + pandas, and says so.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

N_PATHS = 10_000
CHUNK = 1_000
BLOCK = 20.0
REPEAT = 3  # timed calls per case; the fastest is reported (the machine may be shared)
CASES = [(n, m) for n in (2_520, 25_200) for m in ("iid_bootstrap", "stationary_bootstrap")]


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def _peak_mb() -> float:
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the parent
    # through fork + exec, so a child of a large driver would report the driver's size.
    peak = _status_mb("VmHWM")
    if peak == peak:
        return peak
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _returns(n_bars: int) -> pd.Series:
    rng = np.random.default_rng(2024)
    values = rng.standard_t(5, n_bars) * 0.008 + 3e-4
    return pd.Series(values, index=pd.date_range("1950-01-02", periods=n_bars, freq="D"))


# ---------------------------------------------------------------- the two sides


def ours(n_bars: int, method: str, n_jobs: int):  # type: ignore[no-untyped-def]
    """A callable running our simulator for ``n_paths`` paths; returns (Sharpe, drawdown)."""
    from backtest.montecarlo import MonteCarloConfig, MonteCarloSimulator

    returns = _returns(n_bars)

    def call(n_paths: int) -> tuple[np.ndarray, np.ndarray]:
        cfg = MonteCarloConfig(
            method=method,
            n_paths=n_paths,
            block_size=BLOCK,
            seed=7,
            chunk_size=CHUNK,
            n_jobs=n_jobs,
        )
        paths = MonteCarloSimulator(cfg, progress=False).run(returns).paths
        return paths["sharpe_ratio"].to_numpy(), paths["max_drawdown"].to_numpy()

    call(50)  # load the compiled kernels
    return call


def _resample(r: np.ndarray, method: str, n_paths: int, rng: np.random.Generator) -> np.ndarray:
    n = r.size
    if method == "iid_bootstrap":
        return r[rng.integers(0, n, size=(n, n_paths))]
    new = rng.random((n, n_paths)) < 1.0 / BLOCK
    new[0] = True
    starts = rng.integers(0, n, size=(n, n_paths))
    t = np.arange(n)[:, None]
    last = np.maximum.accumulate(np.where(new, t, 0), axis=0)
    idx = (np.take_along_axis(starts, last, axis=0) + (t - last)) % n
    return r[idx]


def _score_vectorbt(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    acc = frame.vbt.returns(freq="1D", year_freq="252D")
    return acc.sharpe_ratio().to_numpy(), -acc.max_drawdown().to_numpy()


def _score_numpy(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    arr = frame.to_numpy()
    sharpe = arr.mean(axis=0) / arr.std(axis=0, ddof=1) * np.sqrt(252)
    equity = np.cumprod(1 + arr, axis=0)
    peak = np.maximum.accumulate(np.maximum(equity, 1.0), axis=0)
    return sharpe, 1 - (equity / peak).min(axis=0)


def baseline(n_bars: int, method: str, scorer: str):  # type: ignore[no-untyped-def]
    """A callable: NumPy resampling in chunks, each chunk scored by ``scorer``."""
    if scorer == "vectorbt":
        import vectorbt  # noqa: F401 - registers the .vbt accessor

        score = _score_vectorbt
    else:
        score = _score_numpy
    returns = _returns(n_bars)
    r = returns.to_numpy()
    rng = np.random.default_rng(7)

    def call(n_paths: int) -> tuple[np.ndarray, np.ndarray]:
        sharpe, mdd = [], []
        for lo in range(0, n_paths, CHUNK):
            paths = _resample(r, method, min(CHUNK, n_paths - lo), rng)
            s, d = score(pd.DataFrame(paths, index=returns.index))
            sharpe.append(s)
            mdd.append(d)
        return np.concatenate(sharpe), np.concatenate(mdd)

    score(pd.DataFrame(_resample(r[:300], method, 8, rng), index=returns.index[:300]))  # warm-up
    return call


def time_case(n_bars: int, method: str, n_paths: int, scorer: str, n_jobs: int) -> dict:
    """Both sides in one process, timed alternately, so load on the machine hits both."""
    sides = {"ours": ours(n_bars, method, n_jobs), "base": baseline(n_bars, method, scorer)}
    times: dict[str, list[float]] = {name: [] for name in sides}
    medians: dict[str, tuple[float, float]] = {}
    for _ in range(REPEAT):
        for name, call in sides.items():
            t0 = time.perf_counter()
            sharpe, mdd = call(n_paths)
            times[name].append(time.perf_counter() - t0)
            medians[name] = (float(np.median(sharpe)), float(np.median(mdd)))
    return {"seconds": {k: min(v) for k, v in times.items()}, "medians": medians}


def memory_case(
    side: str, n_bars: int, method: str, n_paths: int, scorer: str, n_jobs: int
) -> dict:
    """Peak memory of one side alone (its own process), one call after the warm-up."""
    call = ours(n_bars, method, n_jobs) if side == "ours" else baseline(n_bars, method, scorer)
    before = _rss_mb()
    call(n_paths)
    peak = _peak_mb()
    return {"peak_rss_mb": peak, "run_peak_mb": peak - before}


def check_agreement(n_paths: int = 200) -> float:
    """Largest difference between our metrics and vectorbt's on our own resampled paths."""
    import vectorbt  # noqa: F401

    from backtest.montecarlo import MonteCarloConfig, MonteCarloSimulator
    from backtest.montecarlo import _kernels as k
    from backtest.montecarlo._rng import root_key

    returns = _returns(2_520)
    r = returns.to_numpy()
    cfg = MonteCarloConfig(method="stationary_bootstrap", n_paths=n_paths, seed=3)
    report = MonteCarloSimulator(cfg, progress=False).run(returns)
    key = root_key(3)
    paths = np.column_stack(
        [r[k.draw_indices(r.size, k.STATIONARY, BLOCK, r.size, key, p)[0]] for p in range(n_paths)]
    )
    sharpe, mdd = _score_vectorbt(pd.DataFrame(paths, index=returns.index))
    return float(
        max(
            np.abs(sharpe - report.paths["sharpe_ratio"]).max(),
            np.abs(mdd - report.paths["max_drawdown"]).max(),
        )
    )


# ---------------------------------------------------------------- driver


def _subprocess(args: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _has_vectorbt() -> bool:
    code = "import vectorbt"
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 paths instead of 10,000")
    parser.add_argument("--n-jobs", type=int, default=1, help="our worker threads")
    parser.add_argument("--case", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        kind, method, bars, paths, scorer = args.case
        if kind == "time":
            res = time_case(int(bars), method, int(paths), scorer, args.n_jobs)
        else:
            res = memory_case(kind, int(bars), method, int(paths), scorer, args.n_jobs)
        print(json.dumps(res))
        return

    n_paths = 1_000 if args.quick else N_PATHS
    scorer = "vectorbt" if _has_vectorbt() else "numpy"
    if scorer == "vectorbt":
        import vectorbt

        label = f"NumPy resampling + vectorbt {vectorbt.__version__} returns accessor"
    else:
        label = "NumPy resampling + plain NumPy/pandas metrics (vectorbt is not installed)"
    print(
        f"Monte Carlo benchmark: {n_paths:,} paths, chunks of {CHUNK:,}, mean block "
        f"{BLOCK:g} (stationary), scored with Sharpe and max drawdown; ours n_jobs="
        f"{args.n_jobs}; times: fastest of {REPEAT}, the two sides alternating"
    )
    print(f"baseline: {label}")
    print(f"numpy {np.__version__}, pandas {pd.__version__}, python {sys.version.split()[0]}\n")
    header = (
        f"{'method':<22}{'bars':>7}{'ours s':>9}{'base s':>9}{'speed-up':>10}"
        f"{'ours peak RSS':>15}{'run peak':>10}{'base peak RSS':>15}"
    )
    print(header)
    print("-" * len(header))
    jobs = ["--n-jobs", str(args.n_jobs)]
    for bars, method in CASES:
        case = [method, str(bars), str(n_paths), scorer]
        timed = _subprocess(["--case", "time", *case, *jobs])
        mem_ours = _subprocess(["--case", "ours", *case, *jobs])
        mem_base = _subprocess(["--case", "base", *case, *jobs])
        t_ours, t_base = timed["seconds"]["ours"], timed["seconds"]["base"]
        (s_ours, d_ours), (s_base, d_base) = timed["medians"]["ours"], timed["medians"]["base"]
        print(
            f"{method:<22}{bars:>7,}{t_ours:>9.3f}{t_base:>9.3f}{t_base / t_ours:>9.1f}x"
            f"{mem_ours['peak_rss_mb']:>12.0f} MB{mem_ours['run_peak_mb']:>7.0f} MB"
            f"{mem_base['peak_rss_mb']:>12.0f} MB"
        )
        print(
            f"{'':<29}medians: Sharpe {s_ours:.3f} vs {s_base:.3f}, "
            f"max drawdown {d_ours:.3f} vs {d_base:.3f}"
        )
    if scorer == "vectorbt":
        gap = _subprocess_agreement()
        print(
            f"\nagreement: our Sharpe and max drawdown vs vectorbt's on the same 200 "
            f"resampled paths: max |difference| = {gap:.2e}"
        )


def _subprocess_agreement() -> float:
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
        f"import importlib.util as u; s = u.spec_from_file_location('b', {__file__!r}); "
        "b = u.module_from_spec(s); s.loader.exec_module(b); print(b.check_agreement())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return float(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
