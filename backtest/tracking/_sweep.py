"""Hydra multirun sweeps: one parent run per sweep directory, its jobs nested under it."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import yaml

from backtest.tracking._flatten import param_value

SWEEP_MARKER = "multirun.yaml"  # Hydra writes it into every multirun sweep directory


def sweep_parent(client: Any, experiment_id: str, run_dir: Path, experiment: str) -> str | None:
    """The parent run of a Hydra multirun sweep, created by the first job that logs.

    Jobs of one sweep share its directory (which holds Hydra's ``multirun.yaml``).
    Jobs that race to create the parent each create one, then keep the earliest
    and delete their own if it lost, so the sweep ends with one parent.
    """
    sweep_dir = run_dir.resolve().parent
    marker = sweep_dir / SWEEP_MARKER
    if not marker.is_file():
        return None
    key = str(sweep_dir)
    found = client.runs_tagged([experiment_id], "backtest.sweep_key", key)
    mine = None
    if not found:
        now = int(time.time() * 1000)
        sweep = yaml.safe_load(marker.read_text()) or {}
        overrides = (((sweep.get("hydra") or {}).get("overrides") or {}).get("task")) or []
        run = client.create_run(
            experiment_id,
            start_time=now,
            run_name=f"sweep {sweep_dir.name}",
            tags={
                "backtest.kind": "sweep",
                "backtest.sweep_key": key,
                "backtest.experiment": experiment,
            },
        )
        mine = run.info.run_id
        params = {"sweep.overrides": param_value(list(overrides))}
        client.log_plain(mine, params=params, timestamp_ms=now)
        client.log_artifact(mine, str(marker))
        client.set_terminated(mine, "FINISHED", end_time=now)
        found = client.runs_tagged([experiment_id], "backtest.sweep_key", key) or [run]
    winner = min(found, key=lambda r: (r.info.start_time, r.info.run_id))
    if mine is not None and winner.info.run_id != mine:
        client.delete_run(mine)
    return str(winner.info.run_id)


def log_job_objective(
    client: Any, parent_id: str, job: int, value: float, *, maximize: bool
) -> float:
    """Record a job's objective on its sweep's parent run; the sweep's best so far.

    The job's own value goes under ``job_objective`` at step ``job`` (the chart of the
    sweep), and ``objective`` gets the best of every job logged so far, at the highest
    job number seen with the current time, so it is the value MLflow's runs table shows
    on the sweep's row (its latest: highest step, then latest time). Jobs logging at the
    same moment may each miss the other's value until the next job logs.
    """
    now = int(time.time() * 1000)
    client.log_plain(parent_id, metrics={"job_objective": value}, timestamp_ms=now, step=job)
    history = client.get_metric_history(parent_id, "job_objective")
    values = [m.value for m in history if math.isfinite(m.value)] or [value]
    best = max(values) if maximize else min(values)
    step = max([m.step for m in history] or [job])
    client.log_plain(parent_id, metrics={"objective": best}, timestamp_ms=now + 1, step=step)
    return best
