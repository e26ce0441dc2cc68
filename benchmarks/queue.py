"""Queue overhead and worker scaling: what RQ adds per job, and 1 vs 2 workers.

    python benchmarks/queue.py                  # embedded Redis (a Unix socket)
    python benchmarks/queue.py --url redis://:PASSWORD@127.0.0.1:6379/0
    python benchmarks/queue.py --quick          # fewer jobs, a smoke test
    python benchmarks/queue.py --sweep          # 40-job Hydra sweep: serial vs rq launcher

1. Per-job overhead: no-op jobs (the worker's job function returns at once).
   - latency: one job at a time, submit -> worker -> finished seen by the client
     (includes the client's 10 ms poll interval);
   - throughput: 200 no-ops submitted at once on one worker.
2. 200 short backtests (an SMA crossover on 500 synthetic bars, 200 different
   parameter sets, tracking off): in-process one after another (the reference),
   then on the queue with 1 and with 2 workers. Workers are started and warm before
   the clock starts. Reported: wall time, jobs per second and the speed-up of 2
   workers over 1 (bounded by the number of free cores).

3. ``--sweep`` only: a Hydra multirun of 40 one-second backtests (an SMA crossover on
   50,000 bars of 10 synthetic assets), run by the serial (basic) launcher and by the rq launcher
   with 2 local workers, each as the user runs it (``python -m backtest -m ...``): wall
   time of the whole command, workers' start-up included; every job's params and
   metrics (result.json) must be identical in both runs. The CPU time of each command
   (its workers included) and the load average before it are printed too: the machine
   may be shared, and a run that others slowed down shows a wall time far above its
   CPU time divided by the free cores.

Every job writes its result files; each run uses fresh output folders, so nothing is
answered from an earlier result.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# This file is named like the standard library's ``queue`` module, which redis imports:
# take its folder off the import path before redis is imported.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from backtest.config import QueueConfig  # noqa: E402
from backtest.config._hydra import register_configs  # noqa: E402
from backtest.queue import BacktestJobQueue  # noqa: E402
from backtest.tasks import run_backtest  # noqa: E402
from backtest.tasks._jobs import BacktestJob, plain_config  # noqa: E402


def base_config() -> dict[str, Any]:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=["tracking=none", "figures=false", "data.n_bars=500", "data.n_assets=1"],
        )
    GlobalHydra.instance().clear()
    return plain_config(cfg)


def backtest_jobs(n: int, out: Path) -> list[BacktestJob]:
    """``n`` different backtests writing under ``out`` (ids unique to this batch)."""
    base = base_config()
    jobs = []
    for i in range(n):
        config = json.loads(json.dumps(base))
        config["strategy"]["fast"] = 2 + i % 40
        config["strategy"]["slow"] = 50 + 10 * (i // 40)
        job_id = f"bench-{out.name}-{i:03d}"
        jobs.append(BacktestJob(config=config, job_id=job_id, result_path=str(out / job_id)))
    return jobs


def timed_queue_run(q: BacktestJobQueue, jobs: list[BacktestJob]) -> float:
    start = time.perf_counter()
    ids = q.submit_many(jobs)
    final = q.wait_statuses(ids, progress=False, poll_interval=0.01)
    elapsed = time.perf_counter() - start
    bad = [i for i, s in final.items() if s != "finished"]
    if bad:
        raise SystemExit(
            f"{len(bad)} job(s) did not finish, e.g. {bad[0]}: {q.failure_reason(bad[0])}"
        )
    return elapsed


def sweep_benchmark(n_jobs: int = 40, n_bars: int = 50_000, n_assets: int = 10) -> None:
    """Serial launcher vs rq launcher (2 local workers) on one ``n_jobs``-job sweep."""
    import subprocess

    work = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    common = [
        sys.executable, "-m", "backtest", "-m", "+experiment=sma_cross",
        f"data.n_bars={n_bars}", f"data.n_assets={n_assets}", "tracking=none", "summary=false",
        "figures=false", f"strategy.fast=range(2,{2 + n_jobs})",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    walls = {}
    outcomes: list[dict[str, Any]] = []
    try:
        for name, extra in [
            ("serial (basic launcher)", []),
            (
                "rq launcher, 2 local workers",
                [
                    "hydra/launcher=rq",
                    "hydra.launcher.local_workers=2",
                    "hydra.launcher.progress=false",
                ],
            ),
        ]:
            load = os.getloadavg()[0]
            cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            done = subprocess.run(
                [*common, *extra, f"hydra.sweep.dir={work / str(len(walls))}"],
                cwd=work, env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            walls[name] = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            used = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
            if done.returncode != 0:
                raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
            found = {
                p.parent.name: json.loads(p.read_text())
                for p in (work / str(len(walls) - 1)).glob("*/result.json")
            }
            outcomes.append({k: (r["params"], r["metrics"]) for k, r in found.items()})
            print(
                f"{name:<30} {walls[name]:6.1f} s  ({len(found)} results; "
                f"{used:.0f} CPU s incl. workers; load before {load:.1f})"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    serial, rq = walls.values()
    print(f"rq launcher speed-up over serial: {serial / rq:.2f}x ({os.cpu_count()} CPUs)")
    # The workers run numba on a share of the cores: the numbers must not change.
    same = outcomes[0] == outcomes[1]
    print(f"every job's params and metrics identical in both runs: {'yes' if same else 'NO'}")
    if not same:
        raise SystemExit("the rq launcher's results differ from the serial launcher's")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=None, help="Redis URL (default: an embedded server)")
    parser.add_argument("--quick", action="store_true", help="fewer jobs")
    parser.add_argument("--sweep", action="store_true", help="only the 40-job sweep comparison")
    args = parser.parse_args()
    if args.sweep:
        sweep_benchmark()
        return
    n_noop_latency, n_noop, n_jobs = (5, 40, 40) if args.quick else (30, 200, 200)
    work = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    rows: list[tuple[str, str, str, str]] = []
    try:
        name = f"bench-{os.getpid()}"
        with BacktestJobQueue(QueueConfig(redis_url=args.url, name=name, job_timeout=600)) as q:
            # 1. no-op overhead on one warm worker
            workers = q.start_workers(1, log_dir=work / "logs", output_roots=[work])
            q.wait_for_workers(1)
            q.wait_statuses([q.submit_noop()], progress=False)
            latencies = []
            for _ in range(n_noop_latency):
                start = time.perf_counter()
                q.wait_statuses([q.submit_noop()], progress=False, poll_interval=0.01)
                latencies.append(time.perf_counter() - start)
            start = time.perf_counter()
            ids = [q.submit_noop() for _ in range(n_noop)]
            q.wait_statuses(ids, progress=False, poll_interval=0.01)
            noop_wall = time.perf_counter() - start
            rows.append(
                (
                    "no-op, one at a time (latency)",
                    "1",
                    f"{statistics.median(latencies) * 1e3:.0f} ms/job (median)",
                    "",
                )
            )
            rows.append(
                (
                    f"{n_noop} no-ops at once",
                    "1",
                    f"{noop_wall:.2f} s",
                    f"{noop_wall / n_noop * 1e3:.1f} ms/job",
                )
            )

            # 2. short backtests: in process, then 1 and 2 workers
            local = backtest_jobs(n_jobs, work / "local")
            run_backtest(backtest_jobs(1, work / "warm")[0])
            start = time.perf_counter()
            for job in local:
                run_backtest(job)
            in_process = time.perf_counter() - start
            rows.append(
                (
                    f"{n_jobs} backtests in process",
                    "-",
                    f"{in_process:.2f} s",
                    f"{in_process / n_jobs * 1e3:.1f} ms/job",
                )
            )
            one = timed_queue_run(q, backtest_jobs(n_jobs, work / "one"))
            rows.append(
                (
                    f"{n_jobs} backtests on the queue",
                    "1",
                    f"{one:.2f} s",
                    f"{n_jobs / one:.1f} jobs/s",
                )
            )
            workers.stop()
            workers = q.start_workers(2, log_dir=work / "logs2", output_roots=[work])
            q.wait_for_workers(2)
            two = timed_queue_run(q, backtest_jobs(n_jobs, work / "two"))
            workers.stop()
            rows.append(
                (
                    f"{n_jobs} backtests on the queue",
                    "2",
                    f"{two:.2f} s",
                    f"{n_jobs / two:.1f} jobs/s",
                )
            )
            rows.append(("speed-up, 2 workers over 1", "", f"{one / two:.2f}x", ""))
            rows.append(
                (
                    "queue cost per backtest, 1 worker",
                    "",
                    f"{(one - in_process) / n_jobs * 1e3:.1f} ms/job",
                    "",
                )
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    header = ("measurement", "workers", "result", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    print(f"queue benchmark ({os.cpu_count()} CPUs; other processes may share them)")
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
