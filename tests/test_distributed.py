"""Distributed search: one Optuna study in Redis, trials pulled by real worker processes."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rq")

from backtest.config import QueueConfig
from backtest.errors import ConfigError
from backtest.queue import BacktestJobQueue, LocalWorkers
from backtest.queue._distributed import check_storage, distributed_search
from tests import configs
from tests.cli_run import backtest_command


def search_config(**strategy: Any) -> dict[str, Any]:
    from backtest.tasks._jobs import plain_config

    cfg = configs.compose("tracking=none", "data.n_bars=400", "data.n_assets=1", "search=tpe")
    config = plain_config(cfg)
    config["search"]["space"] = {"fast": {"low": 3, "high": 70}, "slow": [40, 60, 80, 100]}
    config["search"]["constraint"] = "fast < slow"
    if strategy:
        config["strategy"] = {**config["strategy"], **strategy}
        config["allowed_modules"] = ["slow_support"]
    return config


# --- storage checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "workers", "ok"),
    [
        ("sqlite:///study.db", 1, True),
        ("sqlite:///study.db", 2, False),
        ("redis://:pw@127.0.0.1:6379/0", 8, True),
        ("unix:///tmp/redis.sock", 8, True),
        ("postgresql://user@127.0.0.1:5432/test", 8, True),
        ("postgresql+psycopg2://127.0.0.1/test", 8, True),
        ("mongodb://127.0.0.1/x", 1, False),
    ],
    ids=["sqlite-1", "sqlite-2", "redis", "unix", "postgres", "postgres-driver", "unknown"],
)
def test_storage_is_checked_against_the_number_of_workers(url: str, workers: int, ok: bool) -> None:
    if ok:
        assert check_storage(url, workers) == url
    else:
        with pytest.raises(ConfigError) as info:
            check_storage(url, workers)
        assert info.value.key == "storage"


@pytest.mark.redis
def test_a_grid_is_refused_with_a_pointer_to_the_launcher(redis_url: str, queue_name: str) -> None:
    config = search_config()
    config["search"]["method"] = "grid"
    with BacktestJobQueue(QueueConfig(redis_url=redis_url, name=queue_name)) as q:
        with pytest.raises(ConfigError, match="hydra/launcher=rq") as info:
            distributed_search(config, q, n_trials=4)
        assert info.value.key == "search.method"


@pytest.mark.redis
def test_sqlite_with_several_workers_is_refused_before_anything_is_queued(
    redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    with BacktestJobQueue(QueueConfig(redis_url=redis_url, name=queue_name)) as q:
        with pytest.raises(ConfigError, match="SQLite") as info:
            distributed_search(
                search_config(),
                q,
                n_trials=4,
                n_workers=2,
                storage=f"sqlite:///{tmp_path / 'study.db'}",
            )
        assert info.value.key == "storage"
        assert q.queue.count == 0
        assert not (tmp_path / "study.db").exists()


# --- heartbeats --------------------------------------------------------------------------------


@pytest.mark.redis
def test_a_trial_without_heartbeats_is_failed_and_requeued_with_its_parameters(
    redis_url: str,
) -> None:
    import optuna
    from optuna.exceptions import ExperimentalWarning

    from backtest.queue._storage import study_storage

    storage = study_storage(redis_url, heartbeat_interval=1, grace_period=2, max_retry=3)
    study = optuna.create_study(study_name=f"hb-{uuid.uuid4().hex}", storage=storage)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        alive = study.ask()
        dead = study.ask()
    alive.suggest_int("fast", 3, 30)
    params = {"fast": dead.suggest_int("fast", 3, 30), "slow": dead.suggest_int("slow", 40, 90)}
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        storage.record_heartbeat(alive._trial_id)  # only one of them beats
        time.sleep(0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    states = {t.number: t.state.name for t in study.get_trials()}
    assert states[alive.number] == "RUNNING"
    assert states[dead.number] == "FAIL"
    (retry,) = [t for t in study.get_trials() if t.state.name == "WAITING"]
    assert retry.params == params
    assert retry.system_attrs["retry_history"] == [dead.number]


# --- real workers ----------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.slow
def test_two_workers_fill_one_study_and_each_value_is_a_real_backtest(
    redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    from backtest.data import load_prices
    from backtest.engine import simulate
    from backtest.strategies import SmaCross
    from backtest.tasks import typed_settings

    config = search_config()
    cfg = QueueConfig(redis_url=redis_url, name=queue_name, job_timeout=300, n_workers=2)
    with (
        BacktestJobQueue(cfg) as q,
        LocalWorkers(
            redis_url,
            queue_name,
            2,
            maintenance_interval=2,
            monitoring_interval=1,
            heartbeat_grace=3,
        ),
    ):
        result = distributed_search(
            config,
            q,
            n_trials=16,
            heartbeat_interval=1,
            grace_period=4,
            progress=False,
            study_name=f"two-{uuid.uuid4().hex[:8]}",
        )
    trials = result.trials
    # Exactly 16, or one more when both workers take the last slot at the same moment;
    # proposals the constraint rejects are not trials.
    assert 16 <= len(trials) <= 17
    assert set(trials["status"]) == {"ok"}
    complete = trials
    assert (complete["fast"] < complete["slow"]).all()
    assert result.best_value == pytest.approx(complete["sharpe_ratio"].max())
    # Independent reference: the same backtests run here, one by one.
    settings = typed_settings(config)
    prices = load_prices(settings.data)
    for _, row in complete.head(4).iterrows():
        strategy = SmaCross(fast=int(row["fast"]), slow=int(row["slow"]))
        local = simulate(
            prices,
            strategy,
            fee_bps=settings.engine.fee_bps,
            slippage_bps=settings.engine.slippage_bps,
        )
        assert row["sharpe_ratio"] == pytest.approx(local.metrics["sharpe_ratio"])
        assert row["max_drawdown"] == pytest.approx(local.metrics["max_drawdown"])


@pytest.mark.redis
@pytest.mark.slow
def test_killed_worker_trial_is_retried_with_the_same_parameters(
    redis_url: str, queue_name: str, tmp_path: Path, slow_strategy_dir: Path
) -> None:
    import optuna

    from backtest.queue._storage import study_storage

    config = search_config(_target_="slow_support.SlowSmaCross", delay_s=1.0)
    name = f"kill-{uuid.uuid4().hex[:8]}"
    cfg = QueueConfig(redis_url=redis_url, name=queue_name, job_timeout=300, retries=2, n_workers=2)
    pool = LocalWorkers(
        redis_url,
        queue_name,
        2,
        maintenance_interval=2,
        monitoring_interval=1,
        heartbeat_grace=3,
        env={"PYTHONPATH": str(slow_strategy_dir)},
        allowed_modules=["slow_support"],
        log_dir=tmp_path / "logs",
    )
    storage = study_storage(redis_url, heartbeat_interval=1, grace_period=4)
    with BacktestJobQueue(cfg) as q, pool:
        import threading

        outcome: dict[str, Any] = {}
        driver = threading.Thread(
            target=lambda: outcome.update(
                result=distributed_search(
                    config,
                    q,
                    n_trials=10,
                    heartbeat_interval=1,
                    grace_period=4,
                    progress=False,
                    study_name=name,
                    timeout=240,
                )
            )
        )
        driver.start()
        # Wait until both workers run trials, then kill one of them (and its trial).
        victim = None
        deadline = time.monotonic() + 120
        while victim is None and time.monotonic() < deadline:
            try:
                study = optuna.load_study(study_name=name, storage=storage)
                running = [t for t in study.get_trials() if t.state.name == "RUNNING"]
            except KeyError:
                running = []
            if len(running) >= 2:
                victim = pool.processes[0].pid
            time.sleep(0.1)
        assert victim is not None
        os.killpg(victim, signal.SIGKILL)
        driver.join(300)
        assert not driver.is_alive()
    result = outcome["result"]
    trials = result.trials
    assert 10 <= (trials["status"] == "ok").sum() <= 11
    failed = trials[trials["status"] == "failed"]
    assert len(failed) == 1 and result.n_retried == 1
    retry = trials[trials["retry_of"] == failed["trial"].iloc[0]]
    assert len(retry) == 1 and retry["status"].iloc[0] == "ok"
    for column in ("fast", "slow"):
        assert retry[column].iloc[0] == failed[column].iloc[0]
    assert np.isfinite(result.best_value)
    print(json.dumps({"retried_trial": int(failed["trial"].iloc[0])}))


@pytest.mark.redis
@pytest.mark.slow
def test_command_writes_an_ordinary_search_result_and_logs_it_to_mlflow(tmp_path: Path) -> None:
    """``backtest search-distributed`` on a private Redis: where it wrote is printed, the
    trials table has the columns of an ordinary search, result.json names no dead socket,
    and the run is in MLflow like every other run."""
    from mlflow import MlflowClient

    from backtest.results import load_result
    from backtest.search import grid_search

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = backtest_command(
        "search-distributed",
        "--n-trials",
        "6",
        "--workers",
        "1",
        "--output",
        "out",
        "+experiment=sma_cross",
        "search=random",
        "+search.space={fast: [5, 10, 20], slow: [40, 60]}",
        "data.n_bars=300",
        "queue.n_workers=1",
        f"tracking.uri={store}",
        cwd=tmp_path,
        env={"REDIS_URL": None},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "result written to out" in proc.stdout
    stored = load_result(tmp_path / "out")
    trials = stored.table("trials")
    ordinary = grid_search(
        {"fast": [5], "slow": [40]}, lambda p: {"sharpe_ratio": 1.0}, metric="sharpe_ratio"
    ).trials
    assert set(ordinary.columns) <= set(trials.columns) | {"sharpe_ratio"}
    assert {"trial", "fast", "slow", "status", "error", "sharpe_ratio"} <= set(trials.columns)
    assert set(trials["status"]) == {"ok"}
    storage = stored.record["distributed"]["storage"]
    assert "unix://" not in storage and "private Redis" in storage
    page = (tmp_path / "out" / "report.html").read_text()  # a report like a local search's
    assert 'data-section="search"' in page and "search-distributed" in page
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("sma_cross")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], "tags.`backtest.kind` = 'run'")
    assert len(runs) == 1 and runs[0].data.tags["backtest.task"] == "search"
    trials_logged = client.search_runs([experiment.experiment_id], "tags.`backtest.kind` = 'trial'")
    assert len(trials_logged) == len(trials)  # nested like an ordinary search's trials
    # MLflow keeps the runs table's columns to 4 significant digits (result.json: exact)
    assert runs[0].data.metrics["objective"] == float(f"{stored.record['objective']:.4g}")
