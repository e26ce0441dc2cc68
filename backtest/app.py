"""Turns a composed Hydra config into a job, runs it and prints the summary."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from backtest.jobs import BacktestJob, run_backtest
from backtest.logs import kv, use_structlog
from backtest.results import load_result

log = logging.getLogger("backtest")

_PERCENT = {"total_return", "cagr", "annual_volatility", "max_drawdown", "win_rate", "exposure"}


def _fmt(name: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        if name in _PERCENT:
            return f"{value:.2%}"
        if name == "n_trades":
            return f"{value:.0f}"
        return f"{value:.3f}"
    return str(value)


def format_summary(record: Mapping[str, Any]) -> str:
    """The short table printed at the end of a run, from its ``result.json`` record."""
    rows: list[tuple[str, str]] = [
        ("experiment", str(record.get("name"))),
        ("task", str(record.get("task"))),
        (
            "data",
            f"{record.get('n_bars')} bars, {len(record.get('symbols', []))} assets, "
            f"{record.get('start')} to {record.get('end')}",
        ),
        ("params", ", ".join(f"{k}={v}" for k, v in record.get("params", {}).items()) or "-"),
    ]
    if record.get("periods_per_year") is not None:
        rows.append(("periods_per_year", f"{record['periods_per_year']:g}"))
    rows += [(k, _fmt(k, v)) for k, v in record.get("metrics", {}).items()]
    rows += [(str(a), str(b)) for a, b in record.get("summary", [])]
    width = max(len(a) for a, _ in rows)
    lines = [f"{a:<{width}}  {b}" for a, b in rows]
    rule = "-" * max(len(line) for line in lines)
    return "\n".join([rule, *lines, rule])


def run_dir_for(cfg: DictConfig) -> Path:
    """``cfg.output_dir`` when set, else Hydra's run (or sweep job) directory."""
    if cfg.get("output_dir"):
        return Path(cfg.output_dir)
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def run(cfg: DictConfig) -> float | None:
    """Run the composed config and return its objective (for sweepers).

    The task is ``walkforward`` when ``walkforward`` is set, ``search`` when
    ``search.method`` is not ``none``, ``montecarlo`` for a backtest with a
    ``montecarlo`` section, otherwise ``backtest``.
    """
    use_structlog()  # only when structlog is installed
    run_dir = run_dir_for(cfg)
    job = BacktestJob.from_config(cfg, result_path=str(run_dir))
    log.info(kv("run started", task=job.task, job_id=job.job_id, run_dir=run_dir))
    run_backtest(job, progress=True)
    record = load_result(run_dir).record
    if cfg.get("summary", True):
        print(format_summary(record))
        print(f"result written to {run_dir}")
    objective = record.get("objective")
    return None if objective is None else float(objective)
