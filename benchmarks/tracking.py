"""Tracking overhead: what MLflow logging adds to a one-second backtest and to a search.

    python benchmarks/tracking.py                     # sqlite store in a temporary folder
    python benchmarks/tracking.py --uri http://127.0.0.1:5000
    python benchmarks/tracking.py --quick             # fewer repeats, a smoke test
    python benchmarks/tracking.py --fresh-process     # only section 5

1. A backtest sized to take about one second without tracking (SMA crossover on
   synthetic prices, the number of bars calibrated), run through the task runner
   with ``tracking=none`` and with tracking on, alternately, after one warm-up of each
   (MLflow imported, the store's tables created, numba compiled). Reported: the
   median of each and the overhead ratio (target: at most 10 %).
2. A 100-trial random search, run once without tracking, then mirrored with
   ``log_result``: the parent with its best 10 trials as children (the default cap)
   and with all 100 as children (target: at most 5 s).
3. The one-off cost a fresh process pays before its first log: ``import mlflow`` and
   opening the store (paid once per process, not per run; a long-lived worker or a
   sweep in one process pays it once).
4. A fresh sqlite store, first use (``--fresh-store`` runs only this): the time from
   asking for the new store to reading it, ``import mlflow`` excluded, in a fresh
   process each (median of 3): made from the shipped schema snapshot (what
   ``backtest.tracking`` does through MLflow's client; the sqlite client makes it from
   the same snapshot without MLflow, section 5), by MLflow's migrations with our WAL
   settings (what it does for another MLflow version), and by MLflow alone with its
   defaults (what ``backtest.tracking`` did before, minus the WAL settings; what
   ``mlflow ui`` does on a new store). Target: under 3 s.
5. A fresh process that logs one finished result (``--fresh-process`` runs only this),
   as every ``python -m backtest`` run does after its summary: wall and CPU of the whole
   process (Python, backtest's imports, the log), median of 3, into a new store and into
   an existing one, through the sqlite client (what ``backtest.tracking`` does for a
   local store) and through MLflow's client (``BACKTEST_MLFLOW_CLIENT=mlflow``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backtest.config import TrackingConfig  # noqa: E402
from backtest.config._hydra import register_configs  # noqa: E402
from backtest.tasks import execute_job  # noqa: E402
from backtest.tasks._jobs import BacktestJob  # noqa: E402
from backtest.tracking import log_result  # noqa: E402


def compose(*overrides: str) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


class Runs:
    """Runs jobs into fresh output folders and times them."""

    def __init__(self, root: Path, uri: str) -> None:
        self.root, self.uri, self.count = root, uri, 0

    def time(self, tracking: bool, *overrides: str) -> tuple[float, Path]:
        self.count += 1
        out = self.root / f"run{self.count}"
        cfg = compose(
            *overrides,
            f"output_dir={out}",
            "tracking.experiment_name=bench",
            f"tracking.uri={self.uri}",
            f"tracking.enabled={str(tracking).lower()}",
        )
        job = BacktestJob.from_config(cfg)
        started = time.perf_counter()
        execute_job(job)
        return time.perf_counter() - started, out


def one_second_backtest(runs: Runs, repeats: int) -> None:
    base = ["+experiment=sma_cross", "data.n_assets=8"]
    n_bars = 25_200  # 100 years of daily bars; calibrated so the untracked run takes ~1 s
    for _ in range(4):
        elapsed, _ = runs.time(False, *base, f"data.n_bars={n_bars}")
        n_bars = min(55_000, max(2_520, int(n_bars / elapsed)))  # dates must stay < 2230
    sized = [*base, f"data.n_bars={n_bars}"]
    cfg = TrackingConfig(uri=runs.uri, experiment_name="bench")
    runs.time(True, *sized)  # warm-up with tracking: MLflow imported, store ready
    off, on, logging, ratios = [], [], [], []
    for _ in range(repeats):
        elapsed, run_dir = runs.time(False, *sized)
        started = time.perf_counter()
        log_result(run_dir, cfg)  # exactly what the task runner adds after writing files
        cost = time.perf_counter() - started
        off.append(elapsed)
        logging.append(cost)
        ratios.append(cost / elapsed)
        on.append(runs.time(True, *sized)[0])
    m_off, m_on = statistics.median(off), statistics.median(on)
    print(f"1. one-second backtest ({n_bars:,} bars x 8 assets, {repeats} runs each, median)")
    print(
        f"   untracked run {m_off:6.3f} s, its log_result {statistics.median(logging):6.3f} s:"
        f" overhead {statistics.median(ratios):+.1%}  (target <= +10%)"
    )
    print(
        f"   whole runs, tracking off {m_off:6.3f} s / on {m_on:6.3f} s: "
        f"{m_on / m_off - 1:+.1%} (noisier: two different runs)"
    )


def search_logging(runs: Runs, repeats: int) -> None:
    _, run_dir = runs.time(
        False,
        "+experiment=sma_cross",
        "search=random",
        "search.n_iter=100",
        "+search.space.fast=[5,10,15,20,25,30,35,40]",
        "+search.space.slow=[50,75,100,125,150,175,200,250]",
        "data.n_bars=2520",
    )
    print("2. logging a 100-trial search (parent, children, trials table and figures; median)")
    for cap in (10, 100):
        cfg = TrackingConfig(uri=runs.uri, experiment_name="bench-search", max_child_runs=cap)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            logged = log_result(run_dir, cfg)
            times.append(time.perf_counter() - started)
        print(
            f"   {logged.n_children:3d} child runs: {statistics.median(times):6.3f} s  "
            f"(target <= 5 s, ratio {statistics.median(times) / 5:.2f} of the budget)"
        )


COLD = """
import time
t0 = time.perf_counter()
import mlflow
t1 = time.perf_counter()
mlflow.MlflowClient(tracking_uri={uri!r}).get_experiment_by_name("bench")
t2 = time.perf_counter()
print(f"{{t1 - t0:.3f}} {{t2 - t1:.3f}}")
"""


def cold_start(uri: str) -> None:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}  # as backtest.tracking sets it
    out = subprocess.run(
        [sys.executable, "-c", COLD.format(uri=uri)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.split()
    imp, store = float(out[0]), float(out[1])
    print("3. one-off cost of a fresh process before its first log")
    print(f"   import mlflow {imp:.3f} s + open the store {store:.3f} s = {imp + store:.3f} s")


FRESH = """
import sys, time
from backtest.tracking import _store
from backtest.tracking._client import client_for, preload
how, uri = sys.argv[1], sys.argv[2]
if how == "migrations":
    _store.SCHEMA_FILE = _store.SCHEMA_FILE.with_name("absent.sql")  # as for another MLflow
preload()  # import mlflow: not part of the store's cost
import mlflow
t0 = time.perf_counter()
if how == "mlflow":
    mlflow.MlflowClient(tracking_uri=uri).get_experiment_by_name("bench")
else:
    client_for(uri).get_experiment_by_name("bench")
print(f"{time.perf_counter() - t0:.4f}")
"""


def fresh_store(root: Path) -> None:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    times: dict[str, float] = {}
    for how in ("snapshot", "migrations", "mlflow"):
        runs = []
        for i in range(3):
            uri = f"sqlite:///{root}/fresh-{how}-{i}/mlflow.db"
            (root / f"fresh-{how}-{i}").mkdir()
            done = subprocess.run(
                [sys.executable, "-c", FRESH, how, uri],
                capture_output=True,
                text=True,
                check=True,
                env=env,
                cwd=ROOT,
            )
            runs.append(float(done.stdout.split()[-1]))
        times[how] = statistics.median(runs)
    snap = times["snapshot"]
    print("4. a fresh sqlite store, first use (import mlflow excluded; median of 3 processes)")
    print(f"   from the schema snapshot       {snap:7.3f} s  (target < 3 s)")
    print(
        f"   MLflow's migrations, WAL       {times['migrations']:7.3f} s  "
        f"({times['migrations'] / snap:.0f}x the snapshot)"
    )
    print(
        f"   MLflow alone, its defaults     {times['mlflow']:7.3f} s  "
        f"({times['mlflow'] / snap:.0f}x the snapshot)"
    )


LOG_ONE = """
import sys
from backtest.config import TrackingConfig
from backtest.tracking import log_result
log_result(sys.argv[1], TrackingConfig(uri=sys.argv[2], experiment_name="bench"), infer_git=False)
print("mlflow imported:", "mlflow" in sys.modules)
"""


def _result_dir(root: Path) -> Path:
    """A finished backtest's run directory (written by the task runner, tracking off)."""
    cfg = compose("+experiment=sma_cross", "data.n_bars=500", "tracking=none", "figures=false")
    run_dir = root / "logged-result"
    job = BacktestJob.from_config(cfg, result_path=str(run_dir))
    execute_job(job)
    return run_dir


def fresh_process(root: Path, repeats: int = 3) -> None:
    """Section 5: a fresh process logging one result, the sqlite client against MLflow's."""
    run_dir = _result_dir(root)
    rows = {}
    for writer in ("sqlite", "mlflow"):
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
        env.pop("BACKTEST_MLFLOW_CLIENT", None)
        if writer == "mlflow":
            env["BACKTEST_MLFLOW_CLIENT"] = "mlflow"
        for store in ("new", "existing"):
            times, cpus, imported = [], [], set()
            for i in range(repeats):
                folder = root / f"log-{writer}-{store}-{i if store == 'new' else 0}"
                folder.mkdir(exist_ok=True)
                uri = f"sqlite:///{folder}/mlflow.db"
                if store == "existing" and i == 0:  # the store made (and one run logged) first
                    subprocess.run([sys.executable, "-c", LOG_ONE, str(run_dir), uri],
                                   check=True, env=env, capture_output=True, cwd=ROOT)  # fmt: skip
                before = os.times()
                t0 = time.perf_counter()
                out = subprocess.run(
                    [sys.executable, "-c", LOG_ONE, str(run_dir), uri],
                    check=True, env=env, capture_output=True, text=True, cwd=ROOT,
                )  # fmt: skip
                times.append(time.perf_counter() - t0)
                after = os.times()
                cpus.append(
                    after.children_user + after.children_system
                    - before.children_user - before.children_system
                )  # fmt: skip
                imported.add(out.stdout.strip().splitlines()[-1].split()[-1])
            rows[writer, store] = (statistics.median(times), statistics.median(cpus), imported)
    print("5. a fresh process logging one result (whole process; median of 3)")
    for (writer, store), (wall, cpu, imported) in rows.items():
        print(
            f"   {writer:6s} client, {store:8s} store  {wall:6.3f} s wall  {cpu:6.3f} s CPU  "
            f"(MLflow imported: {'/'.join(sorted(imported))})"
        )
    for store in ("new", "existing"):
        ratio = rows["mlflow", store][0] / rows["sqlite", store][0]
        print(f"   {store} store: MLflow's client takes {ratio:.1f}x the sqlite client's wall time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", help="tracking URI (default: sqlite in a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="one repeat each")
    parser.add_argument("--fresh-store", action="store_true", help="only section 4")
    parser.add_argument("--fresh-process", action="store_true", help="only section 5")
    args = parser.parse_args()
    register_configs()
    repeats = 1 if args.quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        if args.fresh_store:
            fresh_store(Path(tmp))
            return
        if args.fresh_process:
            fresh_process(Path(tmp))
            return
        uri = args.uri or f"sqlite:///{tmp}/mlflow.db"
        print(f"tracking URI: {uri}")
        runs = Runs(Path(tmp), uri)
        one_second_backtest(runs, repeats)
        search_logging(runs, 1 if args.quick else 3)
        cold_start(uri)
        fresh_store(Path(tmp))
        fresh_process(Path(tmp), 1 if args.quick else 3)


if __name__ == "__main__":
    main()
