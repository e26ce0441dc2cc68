"""``backtest compare`` on a store of 1,000 runs: the time a user waits for the table.

    python benchmarks/compare.py               # 1,000 runs in a temporary sqlite store
    python benchmarks/compare.py --runs 300    # a smaller store

The store is built the way runs reach it: ``log_result`` of run directories whose
config is the composed ``+experiment=sma_cross`` (83 params a run, 21 headline
metrics, the usual tags, ``result.json`` and ``config.yaml`` as artifacts). Sixty
percent of the runs are backtests; the rest are searches of 20 trials, each logged as a
parent with its best 9 trials nested (so 1,000 runs are 600 backtests and 40 searches
of 10 runs each). Building takes a minute or so; it is not timed.

Reported, each the median of 3 (the fresh process through MLflow: one run):

1. ``backtest compare sma_cross --uri ...`` in a fresh process (what the user waits
   for, Python's start-up included; target under 2 s), and the same table read through
   ``mlflow.search_runs`` in a fresh process, as ``compare`` read every store before
   (and still reads a tracking server or a store of another schema);
2. ``compare_runs`` in a warm process, and with ``--children`` (all 1,000 runs);
3. ``mlflow.search_runs`` of the experiment in a warm process, and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backtest import results  # noqa: E402
from backtest.config import TrackingConfig  # noqa: E402
from backtest.config._hydra import register_configs  # noqa: E402
from backtest.tracking import log_result  # noqa: E402
from backtest.tracking._compare import compare_runs, mlflow_runs  # noqa: E402

EXPERIMENT = "sma_cross"
METRICS = [
    *("total_return", "cagr", "annual_volatility", "sharpe_ratio", "sortino_ratio"),
    *("max_drawdown", "calmar_ratio", "n_trades", "win_rate", "exposure", "turnover"),
    *("cost_fees", "cost_slippage", "cost_fixed", "cost_borrow", "cost_financing"),
    *("cost_cash_interest", "limit_scaled_fraction", "avg_trade_return", "profit_factor"),
    "tail_ratio",
]


def composed(*overrides: str) -> str:
    """The composed config as the task runner writes it to ``config.yaml``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_yaml(cfg, resolve=True)


def build(root: Path, uri: str, n_runs: int) -> None:
    rng = np.random.default_rng(7)
    backtest_yaml = composed(f"+experiment={EXPERIMENT}")
    search_yaml = composed(f"+experiment={EXPERIMENT}", "search=random")
    cfg = TrackingConfig(uri=uri, experiment_name=EXPERIMENT, max_child_runs=9)
    n_searches = (n_runs * 4 // 10) // 10
    n_backtests = n_runs - 10 * n_searches
    started = time.perf_counter()
    for i in range(n_backtests + n_searches):
        search = i >= n_backtests
        fast, slow = int(rng.integers(5, 50)), int(rng.integers(50, 250))
        record = {
            "task": "search" if search else "backtest",
            "job_id": f"job-{i}",
            "name": EXPERIMENT,
            "params": {"fast": fast, "slow": slow, "long_short": False},
            "metrics": dict(zip(METRICS, rng.normal(size=len(METRICS)).round(4), strict=True)),
            "objective": float(rng.normal()),
            "config_hash": f"{i:064x}",
            "started_at": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}.000+00:00",
            "ended_at": f"2026-01-01T01:{i // 60 % 60:02d}:{i % 60:02d}.000+00:00",
        }
        tables = {}
        if search:
            tables["trials"] = pd.DataFrame(
                {
                    "fast": rng.integers(5, 50, 20),
                    "slow": rng.integers(50, 250, 20),
                    "sharpe_ratio": rng.normal(size=20),
                    "total_return": rng.normal(size=20),
                }
            )
        run_dir = root / "runs" / str(i)
        results.write_result(
            run_dir, record, tables=tables, config_yaml=search_yaml if search else backtest_yaml
        )
        log_result(run_dir, cfg, infer_git=False)
    print(
        f"built {n_backtests} backtests + {n_searches} searches x 10 runs = "
        f"{n_backtests + 10 * n_searches} runs in {time.perf_counter() - started:.0f} s"
    )


def median_time(fn: Any, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cli(uri: str) -> None:
    """``backtest compare`` in a fresh process, as a user types it."""
    done = subprocess.run(
        [sys.executable, "-m", "backtest", "compare", EXPERIMENT, "--uri", uri, "--limit", "5"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert done.stdout.startswith("5 runs of"), done.stdout


THROUGH_MLFLOW = """
import sys
from backtest.tracking._compare import format_table, mlflow_runs, runs_table
table = runs_table(mlflow_runs(sys.argv[1], sys.argv[2]), sys.argv[1]).head(5)
print(format_table(table))
"""


def cli_through_mlflow(uri: str) -> None:
    """The same table read by ``mlflow.search_runs`` in a fresh process (compare before)."""
    subprocess.run(
        [sys.executable, "-c", THROUGH_MLFLOW, EXPERIMENT, uri],
        capture_output=True,
        check=True,
        cwd=ROOT,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs in the store (1000)")
    args = parser.parse_args()
    register_configs()
    # MLflow's pooled connections may still touch the store's -wal file at cleanup
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        build(Path(tmp), uri, args.runs)
        t_cli = median_time(lambda: cli(uri))
        t_cli_mlflow = median_time(lambda: cli_through_mlflow(uri), repeats=1)
        compare_runs(EXPERIMENT, uri=uri)  # warm: imports done
        t_top = median_time(lambda: compare_runs(EXPERIMENT, uri=uri))
        t_all = median_time(lambda: compare_runs(EXPERIMENT, uri=uri, children=True))
        n_top = len(compare_runs(EXPERIMENT, uri=uri))
        n_all = len(compare_runs(EXPERIMENT, uri=uri, children=True))
        mlflow_runs(EXPERIMENT, uri)  # warm: mlflow imported
        t_mlflow = median_time(lambda: mlflow_runs(EXPERIMENT, uri))
    print(f"1. `backtest compare {EXPERIMENT}`, fresh process: {t_cli:6.3f} s (target < 2 s)")
    print(
        f"   the same table through mlflow.search_runs, fresh process (compare before):"
        f" {t_cli_mlflow:6.3f} s, {t_cli_mlflow / t_cli:.1f}x longer"
    )
    print(f"2. compare_runs, warm process: {n_top} runs {t_top:6.3f} s,")
    print(f"   with --children {n_all} runs {t_all:6.3f} s")
    print(
        f"3. mlflow.search_runs of the experiment, warm process: {t_mlflow:6.3f} s,"
        f" {t_mlflow / t_all:.0f}x the time of compare_runs --children"
    )


if __name__ == "__main__":
    main()
