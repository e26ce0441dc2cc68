"""The summary of a Hydra multirun: one row per job, written into the sweep directory.

``python -m backtest -m strategy.fast=5,10 strategy.slow=50,100`` runs four jobs; at
the end :class:`SweepSummary` (a Hydra callback enabled in ``conf/hydra/default.yaml``)
reads every job directory of the sweep and writes ``summary.csv`` and
``summary.parquet``: the job number, its overrides, status, objective, parameters,
every metric and its run directory, best objective first. It reads only the files the
jobs wrote, so it works with any launcher (in process, RQ workers, ...) and any
sweeper (basic, our Optuna sweeper).
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import sys
import traceback
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from backtest import results

log = logging.getLogger("backtest.sweep")

SUMMARY_NAME = "summary"
_HYDRA_DIR = ".hydra"


def _overrides(job_dir: Path) -> list[str]:
    path = job_dir / _HYDRA_DIR / "overrides.yaml"
    if not path.is_file():
        return []
    loaded = yaml.safe_load(path.read_text()) or []
    return [str(o) for o in loaded]


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
    ``failed`` and empty metrics. Rows are sorted best objective first (the direction
    is the one its jobs optimised; largest first when unknown), then by job number.

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
        if results.has_result(job_dir):
            record = results.load_result(job_dir).record
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
        else:
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


try:  # Hydra is a dependency, but keep this module importable without it
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object  # type: ignore[misc,assignment]


def _sweep_report(sweep_dir: Path) -> None:
    """Write the sweep's ``report.html``; a failure warns (the summary is written)."""
    try:
        from backtest.report import build_sweep_report

        path = build_sweep_report(sweep_dir)
    except Exception as exc:
        log.warning("sweep report not written: %s: %s", type(exc).__name__, exc)
        return
    log.info("sweep report: %s", path)


class SweepSummary(Callback):
    """Hydra callback: write the sweep summary when a multirun ends, whatever happened.

    Enabled in ``conf/hydra/default.yaml`` under ``callbacks``. Hydra skips
    ``on_multirun_end`` when a job raised (the sweep exits non-zero), so the summary is
    also written at process exit when the multirun did not end normally. A failed job
    run in this process gets its traceback in its own log and a ``failure.json``
    (overrides, error) that the summary lists.
    """

    def __init__(self) -> None:
        self._pending: Path | None = None

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        """Arrange for the summary to be written even if the multirun stops on an error."""
        self._pending = Path(str(config.hydra.sweep.dir)).absolute()
        atexit.register(self._at_exit)

    def _at_exit(self) -> None:
        if self._pending is not None and self._pending.is_dir():
            self._summarize(self._pending)

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        """A failed job: its traceback into its log, its overrides and error on disk."""
        from hydra.core.utils import JobStatus

        if job_return.status != JobStatus.FAILED:
            return
        error = job_return._return_value  # the property would re-raise it
        if not isinstance(error, BaseException):
            return
        job_log = logging.getLogger("backtest")
        job_log.error(
            "job failed: %s: %s",
            type(error).__name__,
            error,
            exc_info=(type(error), error, error.__traceback__),
        )
        for handler in logging.getLogger().handlers + job_log.handlers:
            handler.flush()
        run_dir = Path(str(config.hydra.runtime.output_dir))
        write_failure(run_dir, list(job_return.overrides or []), error)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        """Summarise the sweep directory; a failure here never fails the sweep."""
        self._pending = None
        self._summarize(Path(str(config.hydra.sweep.dir)))

    @staticmethod
    def _summarize(sweep_dir: Path) -> None:
        try:
            table = write_summary(sweep_dir)
        except Exception as exc:  # the jobs' results are on disk whatever happens here
            log.warning("sweep summary not written: %s", exc)
            return
        if config.get("report", True):
            _sweep_report(sweep_dir)
        ok = table[table["status"] == "ok"]
        failed = table[table["status"] != "ok"]
        for _, row in failed.iterrows():
            log.error("job %s failed (%s): %s", row["job"], row["overrides"], row.get("error"))
        if len(ok) and ok["objective"].notna().any():
            best = ok.iloc[0]
            log.info(
                "sweep summary: %d job(s), %d failed; best objective %.6g (job %s: %s) -> %s",
                len(table),
                len(failed),
                best["objective"],
                best["job"],
                best["overrides"],
                sweep_dir / f"{SUMMARY_NAME}.csv",
            )
        else:
            log.info(
                "sweep summary: %d job(s), %d failed -> %s",
                len(table),
                len(failed),
                sweep_dir / f"{SUMMARY_NAME}.csv",
            )


def write_failure(run_dir: Path, overrides: list[str], error: BaseException | str) -> None:
    """Record why a sweep job failed (``failure.json``: overrides, error, traceback)."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    trace = (
        ""
        if isinstance(error, str)
        else "".join(traceback.format_exception(type(error), error, error.__traceback__))
    )
    results.write_json(
        run_dir / results.FAILURE_FILE,
        {"overrides": overrides, "error": text, "traceback": trace},
    )


class ClaimOutputDir(Callback):
    """Hydra callback: claim the run (or sweep) directory before Hydra writes into it.

    Enabled in ``conf/hydra/default.yaml``. A directory that holds another run is
    refused before Hydra writes its ``.hydra/*.yaml`` or a log line there (see
    :func:`backtest.results.claim_dir`): the message of
    :class:`~backtest.results.DirectoryClaimed` is printed and the process exits with
    status 2.

    Args:
        reuse: Accept a directory that already holds a run (to resume an Optuna sweep
            into its own directory: ``hydra.callbacks.claim_output_dir.reuse=true``).
    """

    def __init__(self, reuse: bool = False) -> None:
        self.reuse = reuse

    def _claim(self, directory: str, key: str) -> None:
        if self.reuse:
            return
        try:
            results.claim_dir(Path(directory).absolute(), key=key, note=key)
        except results.DirectoryClaimed as exc:
            # Hydra turns an Exception in a callback into a warning and carries on
            # writing into the directory: only SystemExit stops it in time.
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from exc

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        """Claim ``hydra.run.dir``."""
        self._claim(str(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        """Claim ``hydra.sweep.dir`` (its job directories are inside it)."""
        self._claim(str(config.hydra.sweep.dir), "hydra.sweep.dir")
