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
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

from backtest import results
from backtest.results._sweep_table import SUMMARY_NAME, summarize_sweep, write_summary

__all__ = [
    "SUMMARY_NAME",
    "ClaimOutputDir",
    "SweepSummary",
    "summarize_sweep",
    "write_failure",
    "write_summary",
]

log = logging.getLogger("backtest.cli._callbacks")

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
        self._report = True

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        """Arrange for the summary to be written even if the multirun stops on an error."""
        self._pending = Path(str(config.hydra.sweep.dir)).absolute()
        self._report = bool(config.get("report", True))
        atexit.register(self._at_exit)

    def _at_exit(self) -> None:
        if self._pending is None or not self._pending.is_dir():
            return
        if _untouched(self._pending):  # stopped before any job (a missing package, ...)
            _remove_sweep_dir(self._pending)
            return
        self._summarize(self._pending, report=self._report)

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        """A failed sweep job: its traceback into its log, its overrides and error on disk.

        A single run's error is the command's own one-line message (its untouched run
        directory is removed, see :func:`backtest.app.run`).
        """
        from hydra.core.utils import JobStatus
        from hydra.types import RunMode

        if job_return.status != JobStatus.FAILED or config.hydra.get("mode") != RunMode.MULTIRUN:
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
        self._summarize(Path(str(config.hydra.sweep.dir)), report=bool(config.get("report", True)))

    @staticmethod
    def _summarize(sweep_dir: Path, *, report: bool = True) -> None:
        try:
            table = write_summary(sweep_dir)
        except Exception as exc:  # the jobs' results are on disk whatever happens here
            log.warning("sweep summary not written: %s", exc)
            return
        if report:
            _sweep_report(sweep_dir)
        ok = table[table["status"] == "ok"]
        failed = table[table["status"] != "ok"]
        for _, row in failed.iterrows():  # failed, or corrupt (its result cannot be read)
            log.error(
                "job %s %s (%s): %s", row["job"], row["status"], row["overrides"], row.get("error")
            )
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


def _untouched(sweep_dir: Path) -> bool:
    """Whether a sweep directory holds only its claim and Hydra's ``multirun.yaml``."""
    return all(e.name in (results.CLAIM_FILE, "multirun.yaml") for e in sweep_dir.iterdir())


def _remove_sweep_dir(sweep_dir: Path) -> None:
    """Remove a sweep directory no job wrote into, and its parents it leaves empty.

    Only folders under the working directory are removed (``outputs/<name>/multirun/``).
    """
    import shutil

    shutil.rmtree(sweep_dir, ignore_errors=True)
    cwd = Path.cwd().absolute()
    for parent in sweep_dir.parents:
        if parent == cwd or cwd not in parent.parents or not parent.is_dir():
            break
        if any(parent.iterdir()):
            break
        parent.rmdir()


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

    A single run given ``output_dir=DIR`` runs in ``DIR``: Hydra's run directory
    becomes ``DIR`` (its ``.hydra/`` and ``backtest.log`` go there, beside the
    result), so the run leaves exactly one folder, not also an
    ``outputs/<name>/<time>/`` holding only the log.

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
        """Claim ``hydra.run.dir``, which is ``output_dir`` when that is set."""
        output_dir = config.get("output_dir")
        if output_dir:
            from omegaconf import read_write

            # Hydra reads hydra.run.dir after this callback (hydra.core.utils.run_job).
            with read_write(config.hydra.run):
                config.hydra.run.dir = str(Path(str(output_dir)).absolute())
            self._claim(str(config.hydra.run.dir), "output_dir")
            return
        self._claim(str(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        """Claim ``hydra.sweep.dir`` (its job directories are inside it)."""
        self._claim(str(config.hydra.sweep.dir), "hydra.sweep.dir")
