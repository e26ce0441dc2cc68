"""The table of a Hydra multirun: one row per job, read from the files its jobs wrote.

Used by :mod:`backtest.cli._callbacks` (``summary.csv``) and by the sweep page of
:mod:`backtest.report`; it depends on the result files only, so both can use it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from backtest import results
from backtest.errors import ResultCorrupt

SUMMARY_NAME = "summary"
_HYDRA_DIR = ".hydra"


def _overrides(job_dir: Path) -> list[str]:
    path = job_dir / _HYDRA_DIR / "overrides.yaml"
    if not path.is_file() or path.is_symlink() or path.parent.is_symlink():
        return []  # missing, or a link (never followed out of a job folder)
    try:
        loaded = yaml.safe_load(path.read_text()) or []
    except (OSError, ValueError, yaml.YAMLError):  # cut short or garbled: not needed
        return []
    return [str(o) for o in loaded] if isinstance(loaded, list) else []


def _job_number(job_dir: Path, sweep_dir: Path) -> int | None:
    path = job_dir / _HYDRA_DIR / "hydra.yaml"
    if path.is_file():
        try:
            num = yaml.safe_load(path.read_text())["hydra"]["job"]["num"]
            return int(num)
        except (KeyError, TypeError, ValueError, yaml.YAMLError):
            pass
    rel = job_dir.relative_to(sweep_dir)
    return int(rel.parts[0]) if rel.parts and rel.parts[0].isdigit() else None


def _failure(job_dir: Path) -> str:
    """The error a failed job recorded (``failure.json``), else a hint why there is none."""
    path = job_dir / results.FAILURE_FILE
    try:
        return str(json.loads(path.read_text()).get("error") or "")
    except (OSError, ValueError):
        return "no result (the job did not finish or is still running)"


def _job_dirs(sweep_dir: Path) -> list[Path]:
    """Every job directory: one with Hydra's record of the job or a result."""
    found = {p.parent.parent for p in sweep_dir.rglob(f"{_HYDRA_DIR}/overrides.yaml")}
    found |= {p.parent for p in sweep_dir.rglob(results.RESULT_FILE)}
    found |= {p.parent for p in sweep_dir.rglob(results.FAILURE_FILE)}
    return sorted(found - {sweep_dir})


def summarize_sweep(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per job of a sweep: overrides, status, objective, params, metrics, run dir.

    A job without a complete result (it failed or is still running) has status
    ``failed`` and empty metrics; a job whose result cannot be read (a file cut short
    or garbled, a link out of its folder: :class:`~backtest.errors.ResultCorrupt`) has
    status ``corrupt`` and that error, and the other jobs are read on. Rows are sorted
    best objective first (the direction is the one its jobs optimised; largest first
    when unknown), then by job number.

    Args:
        sweep_dir: The multirun directory (``hydra.sweep.dir``).
    """
    sweep_dir = Path(sweep_dir)
    rows: list[dict[str, Any]] = []
    maximize = True
    for job_dir in _job_dirs(sweep_dir):
        row: dict[str, Any] = {
            "job": _job_number(job_dir, sweep_dir),
            "overrides": " ".join(_overrides(job_dir)),
        }
        try:
            record = results.load_result(job_dir).record if results.has_result(job_dir) else None
        except ResultCorrupt as exc:
            row.update(status="corrupt", task=None, objective=math.nan, error=str(exc))
            record = None
        if record is not None:
            objective = record.get("objective")
            row.update(
                status="ok",
                task=record.get("task"),
                objective=math.nan if objective is None else float(objective),
            )
            search = record.get("search") or {}
            if search.get("direction") == "minimize":
                maximize = False
            for name, value in (record.get("params") or {}).items():
                row[f"param.{name}"] = (
                    json.dumps(value) if isinstance(value, list | dict) else value
                )
            for name, value in (record.get("metrics") or {}).items():
                row[name] = math.nan if value is None else value
        elif "status" not in row:
            row.update(status="failed", task=None, objective=math.nan)
            row["error"] = _failure(job_dir)
        row["run_dir"] = str(job_dir.resolve())
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(
            columns=["job", "overrides", "status", "error", "task", "objective", "run_dir"]
        )
    table = table.sort_values(
        ["objective", "job"],
        ascending=[not maximize, True],
        na_position="last",
        kind="stable",
        ignore_index=True,
    )
    if "error" not in table:
        table["error"] = ""
    table["error"] = table["error"].fillna("")
    ordered = ["job", "overrides", "status", "error", "task", "objective"]
    params = sorted(c for c in table.columns if c.startswith("param."))
    rest = [c for c in table.columns if c not in ordered and c not in params and c != "run_dir"]
    return table[ordered + params + rest + ["run_dir"]]


def write_summary(sweep_dir: str | Path) -> pd.DataFrame:
    """Write ``summary.csv`` and ``summary.parquet`` into ``sweep_dir``; return the table."""
    sweep_dir = Path(sweep_dir)
    table = summarize_sweep(sweep_dir)
    results.atomic_write_bytes(
        sweep_dir / f"{SUMMARY_NAME}.csv", table.to_csv(index=False).encode()
    )
    results.write_table(sweep_dir, SUMMARY_NAME, table)
    return table
