"""``hydra/launcher=rq``: sweeps as backtest jobs on workers, results and failures per override."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rq")

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"
SMALL = ["tracking=none", "data.n_bars=300", "data.n_assets=1"]

SLOW_STRATEGY = """
import os
import time
from dataclasses import dataclass

from backtest.strategies import SmaCross


@dataclass(frozen=True, slots=True)
class SlowSmaCross(SmaCross):
    def positions(self, prices):
        time.sleep(float(os.environ.get("BACKTEST_TEST_DELAY_S", "1")))
        return SmaCross.positions(self, prices)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


#: An environment marker this test module's sweeps (and every process they start) carry, so
#: that the "nothing outlived the sweep" checks see only their own processes, never those of
#: a test running beside them (pytest-xdist) or of anything else on the machine.
SWEEP_TAG = "BACKTEST_TEST_SWEEP"


def _our_processes(tag: str) -> set[int]:
    """Worker and embedded Redis processes started by this package under ``tag``."""
    import psutil

    pids = set()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "backtest.queue._cli" not in cmdline and "backtest-redis-" not in cmdline:
            continue
        try:
            if proc.environ().get(SWEEP_TAG) == tag:
                pids.add(proc.info["pid"])
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return pids


@pytest.fixture
def launcher_factory(in_tmp_cwd: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Make an ``rq`` launcher the way Hydra does for a sweeper (``launch`` per batch)."""
    from hydra._internal.callbacks import Callbacks
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.plugins import Plugins
    from hydra.types import HydraContext, RunMode

    monkeypatch.delenv("REDIS_URL", raising=False)
    made = []

    def make(*overrides: str) -> Any:
        GlobalHydra.instance().clear()
        hydra_ = Hydra.create_main_hydra2(
            task_name="backtest", config_search_path=create_config_search_path(str(CONF_DIR))
        )
        cfg = hydra_.compose_config(
            config_name="config",
            overrides=["hydra/launcher=rq", "hydra.launcher.progress=false", *overrides],
            run_mode=RunMode.MULTIRUN,
            with_log_configuration=False,
        )
        HydraConfig.instance().set_config(cfg)
        launcher = Plugins.instance().instantiate_launcher(
            hydra_context=HydraContext(
                config_loader=hydra_.config_loader, callbacks=Callbacks(cfg)
            ),
            task_function=lambda _cfg: None,
            config=cfg,
        )
        made.append(launcher)
        return launcher

    yield make
    from hydra_plugins.backtest_rq_launcher import _core

    for launcher in made:
        _core.close(launcher)
    GlobalHydra.instance().clear()


@pytest.mark.redis
@pytest.mark.slow
def test_batches_come_back_per_override_with_objectives_and_failures(
    launcher_factory: Any, in_tmp_cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hydra.core.utils import JobStatus

    from backtest.queue import JobFailed
    from backtest.tasks import run_backtest
    from backtest.tasks._jobs import BacktestJob

    tag = uuid.uuid4().hex
    monkeypatch.setenv(SWEEP_TAG, tag)  # inherited by the workers and Redis it starts
    launcher = launcher_factory(*SMALL, "queue.n_workers=2")
    # A sweeper passes every job its full override list.
    first = launcher.launch(
        [[*SMALL, "strategy.fast=5"], [*SMALL, "strategy.fast=60"]], initial_job_idx=0
    )
    assert launcher.runtime.queue.embedded
    assert len(launcher.runtime.workers.alive()) == 2
    # A second batch (as a sweeper sends them) reuses the queue and the workers.
    workers = [p.pid for p in launcher.runtime.workers.processes]
    second = launcher.launch([[*SMALL, "strategy.fast=10", "strategy.slow=30"]], initial_job_idx=2)
    assert [p.pid for p in launcher.runtime.workers.processes] == workers

    ok, bad = first
    (ok2,) = second
    assert ok.status == JobStatus.COMPLETED and ok2.status == JobStatus.COMPLETED
    assert ok.overrides == [*SMALL, "strategy.fast=5"]
    assert bad.status == JobStatus.FAILED
    assert isinstance(bad._return_value, JobFailed)
    assert "must be smaller" in str(bad._return_value)
    with pytest.raises(JobFailed):
        _ = bad.return_value

    sweep_dir = Path(str(launcher.config.hydra.sweep.dir)).absolute()
    for ret, num in ((ok, 0), (ok2, 2)):
        run_dir = sweep_dir / str(num)
        record = json.loads((run_dir / "result.json").read_text())
        assert ret.return_value == pytest.approx(record["objective"])
        assert ret.hydra_cfg.hydra.job.num == num
        recorded = (run_dir / ".hydra" / "overrides.yaml").read_text()
        assert all(o in recorded for o in ret.overrides)
        # The objective equals an in-process run of the same config.
        local = run_backtest(BacktestJob(config=record_config(ret), result_path="local" + str(num)))
        metric = ret.cfg.search.metric
        assert ret.return_value == pytest.approx(local.metrics[metric])
    assert not (sweep_dir / "1" / "result.json").exists()
    assert (sweep_dir / "1" / ".hydra" / "overrides.yaml").exists()

    from hydra_plugins.backtest_rq_launcher import _core

    _core.close(launcher)
    deadline = time.monotonic() + 15
    while _our_processes(tag) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _our_processes(tag), "workers or Redis outlived the sweep"


@pytest.mark.redis
@pytest.mark.parametrize(("workers", "user_threads"), [(2, None), (1, None), (1, "1")])
def test_local_workers_start_at_setup_with_a_share_of_the_cores_for_numba(
    launcher_factory: Any, monkeypatch: pytest.MonkeyPatch, workers: int, user_threads: str | None
) -> None:
    """Started before the first batch (they warm up while the sweeper validates), each
    with ``cores // workers`` numba threads, unless the user chose a number."""
    import psutil

    if user_threads is None:
        monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
        expected = str(max(1, len(os.sched_getaffinity(0)) // workers))
    else:
        monkeypatch.setenv("NUMBA_NUM_THREADS", user_threads)
        expected = user_threads
    launcher = launcher_factory(*SMALL, f"hydra.launcher.local_workers={workers}")
    assert launcher.runtime is not None, "no workers started at setup"
    procs = launcher.runtime.workers.alive()
    assert len(procs) == workers
    for proc in procs:
        assert psutil.Process(proc.pid).environ().get("NUMBA_NUM_THREADS") == expected


def record_config(ret: Any) -> dict[str, Any]:
    from backtest.tasks._jobs import plain_config

    config = plain_config(ret.cfg)
    config["output_dir"] = None
    return config


@pytest.mark.redis
@pytest.mark.slow
def test_command_line_sweep_on_an_embedded_redis(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    proc = subprocess.run(
        [sys.executable, "-m", "backtest", "-m", "hydra/launcher=rq", "strategy.fast=5,10", *SMALL],
        cwd=tmp_path,
        env=_env(**{SWEEP_TAG: tag}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = sorted(tmp_path.glob("outputs/backtest/multirun/*/*/result.json"))
    assert [p.parent.name for p in results] == ["0", "1"]
    fast = [json.loads(p.read_text())["params"]["fast"] for p in results]
    assert fast == [5, 10]
    assert "2 local worker(s)" in proc.stderr + proc.stdout
    time.sleep(1)
    assert not _our_processes(tag), "workers or Redis outlived the sweep"


@pytest.mark.redis
@pytest.mark.slow
def test_redis_stopped_during_a_sweep_fails_it_within_seconds(
    tmp_path: Path, own_redis: Any
) -> None:
    from backtest.queue._redis import connect

    support = tmp_path / "support"
    support.mkdir()
    (support / "slow_support.py").write_text(textwrap.dedent(SLOW_STRATEGY))
    env = _env(REDIS_URL=own_redis.url, BACKTEST_TEST_DELAY_S="3")
    env["PYTHONPATH"] = os.pathsep.join([str(support), env["PYTHONPATH"]])
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backtest",
            "-m",
            "hydra/launcher=rq",
            "hydra.launcher.local_workers=1",
            "hydra.launcher.progress=false",
            "hydra.launcher.outage_s=3",  # reported, waited out 3 s, then the sweep fails
            "allowed_modules=[slow_support]",
            "strategy._target_=slow_support.SlowSmaCross",
            "strategy.fast=5,6,7,8",
            *SMALL,
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        client = connect(own_redis.url)
        deadline = time.monotonic() + 120
        while not client.zcard("rq:wip:backtest") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.zcard("rq:wip:backtest"), "no job started"
        own_redis.stop()
        stopped = time.monotonic()
        stdout, stderr = proc.communicate(timeout=60)
        elapsed = time.monotonic() - stopped
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    said = stdout + stderr
    assert "is unreachable" in said and "waiting up to 3 s" in said  # the outage, reported
    # then one line naming the (masked) URL, no traceback (a QueueUnavailable, exit status 2)
    assert f"error: Redis at {own_redis.url} is unavailable" in stderr
    assert "Traceback" not in stderr and proc.returncode == 2
    assert elapsed < 20, f"the sweep took {elapsed:.1f} s to notice"


@pytest.mark.redis
@pytest.mark.slow
def test_concurrent_one_job_batches_from_sweeper_threads(
    launcher_factory: Any, in_tmp_cwd: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from hydra.core.utils import JobStatus

    launcher = launcher_factory(*SMALL, "queue.n_workers=2")
    fasts = [4, 6, 8, 12, 16, 24]
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [
            pool.submit(launcher.launch, [[*SMALL, f"strategy.fast={f}"]], n)
            for n, f in enumerate(fasts)
        ]
        returns = [f.result()[0] for f in futures]
    assert launcher.runtime is not None and len(launcher.runtime.workers.processes) == 2
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir)).absolute()
    for n, (fast, ret) in enumerate(zip(fasts, returns, strict=True)):
        assert ret.status == JobStatus.COMPLETED
        assert ret.hydra_cfg.hydra.job.num == n
        assert ret.cfg.strategy.fast == fast
        record = json.loads((sweep_dir / str(n) / "result.json").read_text())
        assert record["params"]["fast"] == fast
        assert ret.return_value == pytest.approx(record["objective"])


@pytest.mark.redis
@pytest.mark.slow
def test_optuna_sweeper_runs_its_trials_on_the_rq_launcher(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.backtest_optuna_sweeper.optuna_sweeper")
    import yaml

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "backtest",
            "-m",
            "hydra/sweeper=optuna",
            "hydra/launcher=rq",
            "hydra.sweeper.n_trials=6",
            "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.seed=1",
            "strategy.fast=range(3,30)",
            "strategy.slow=choice(40,60,80)",
            *SMALL,
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = tmp_path.glob("outputs/backtest/multirun/*")
    objectives = [json.loads(p.read_text())["objective"] for p in sweep.glob("*/result.json")]
    assert len(objectives) == 6
    summary = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert summary["n_complete"] == 6
    assert summary["best_value"] == pytest.approx(max(objectives))
