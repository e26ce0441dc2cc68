"""Report benchmark: build time and size of each kind of HTML report, on 2,520 daily bars.

    python benchmarks/report.py            # all six kinds, about a minute
    python benchmarks/report.py --quick    # 1,300 bars, a smoke test

Run directories are made by real runs with ``report=false`` (single backtest, a
500-trial grid search, the walk-forward flagship with its Monte Carlo, a Monte Carlo
task, a three-job sweep), then each report is built ``REPEAT`` times in this process
after one warm-up build (imports and the plotly.js bundle read excluded) and the
fastest build is reported; ``cold`` is one build in a fresh interpreter, imports
included (what ``python -m backtest.report DIR`` costs). Size is the written file,
of which plotly.js is a fixed ~4.8 MB.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REPEAT = 5


def _run(run_dir: Path, n_bars: int, *overrides: str) -> Path:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from backtest.config._hydra import register_configs
    from backtest.tasks import run_backtest
    from backtest.tasks._jobs import BacktestJob

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[
                *overrides,
                f"output_dir={run_dir}",
                f"data.n_bars={n_bars}",
                "tracking=none",
                "figures=false",
                "summary=false",
                "report=false",
            ],
        )
    GlobalHydra.instance().clear()
    run_backtest(BacktestJob.from_config(cfg, result_path=str(run_dir)))
    return run_dir


def _best_of(build: Callable[[], Path]) -> tuple[float, Path]:
    build()  # warm-up
    times = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        path = build()
        times.append(time.perf_counter() - started)
    return min(times), path


def _cold(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "backtest.report", *args],
        check=True,
        capture_output=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    return time.perf_counter() - started


def main() -> None:
    """Make the run directories, build every kind of report, print time and size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,300 bars, a smoke test")
    args = parser.parse_args()
    n_bars = 1300 if args.quick else 2520

    from backtest.report import build_comparison, build_report, build_sweep_report

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"making run directories ({n_bars} bars) ...", flush=True)
        runs = {
            "single backtest": _run(root / "single", n_bars),
            "search (500 trials)": _run(root / "search", n_bars, "+experiment=sma_grid"),
            "walk-forward + MC": _run(root / "wf", n_bars, "+experiment=wf_momentum"),
            "Monte Carlo": _run(root / "mc", n_bars, "+experiment=mc_sma_cross"),
        }
        for i, fast in enumerate((5, 10, 20)):
            _run(root / "sweep" / str(i), n_bars, f"strategy.fast={fast}")
        rows = []
        for kind, run_dir in runs.items():
            best, path = _best_of(lambda d=run_dir: build_report(d))
            rows.append((kind, best, _cold([str(run_dir)]), path.stat().st_size))
        best, path = _best_of(lambda: build_sweep_report(root / "sweep"))
        rows.append(("sweep (3 jobs)", best, _cold([str(root / "sweep")]), path.stat().st_size))
        dirs = list(runs.values())
        out = root / "comparison.html"
        best, path = _best_of(lambda: build_comparison(dirs, out))
        cold = _cold([*map(str, dirs), "-o", str(root / "c2.html")])
        rows.append(("comparison (4 runs)", best, cold, path.stat().st_size))

    print(f"\n{'report':<22} {'build (warm)':>13} {'cold (CLI)':>11} {'size':>10}")
    for kind, best, cold, size in rows:
        print(f"{kind:<22} {best:>11.3f} s {cold:>9.2f} s {size / 1e6:>7.2f} MB")


if __name__ == "__main__":
    main()
