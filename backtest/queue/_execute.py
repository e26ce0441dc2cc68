"""The one function workers execute, and the payloads it accepts.

A queued job carries a single JSON string. Workers run
:func:`execute` on it and nothing else: :class:`backtest.queue._rqjob.BacktestRqJob`
refuses any payload that names another function before importing anything. The
payload says what to do:

- ``{"kind": "job", "job": <BacktestJob record>}``: run the job with
  :func:`backtest.tasks.run_backtest` (idempotent: a complete result is returned, not
  recomputed), so a job retried after a killed worker never publishes twice;
- ``{"kind": "study", "study": {...}}``: optimise a shared Optuna study
  (:mod:`backtest.queue._distributed`) until it has enough trials;
- ``{"kind": "noop"}``: do nothing (measures queue overhead, checks workers).

This module does not import rq or redis at import time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from backtest.errors import ConfigError
from backtest.masking import mask_logs
from backtest.tasks._jobs import BacktestJob

EXECUTE = "backtest.queue._execute.execute"
KINDS = ("job", "study", "noop")

log = logging.getLogger("backtest.queue")


def job_payload(job: BacktestJob) -> str:
    """The payload that runs ``job``."""
    return json.dumps({"kind": "job", "job": job.to_dict()}, sort_keys=True)


def study_payload(spec: dict[str, Any]) -> str:
    """The payload that runs one distributed-study worker loop."""
    return json.dumps({"kind": "study", "study": spec}, sort_keys=True)


def noop_payload() -> str:
    """The payload of a job that does nothing."""
    return json.dumps({"kind": "noop"})


def parse_payload(payload: object) -> dict[str, Any]:
    """Check a payload's shape and return it as a dict.

    Raises:
        ConfigError: not a JSON object with a known ``kind`` (names what is wrong).
    """
    if not isinstance(payload, str):
        raise ConfigError(
            f"job payload must be a JSON string, got {type(payload).__name__}", key="payload"
        )
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"job payload is not valid JSON: {exc}", key="payload") from exc
    if not isinstance(data, dict) or data.get("kind") not in KINDS:
        kind = data.get("kind") if isinstance(data, dict) else None
        raise ConfigError(f"job payload kind {kind!r} is not one of {KINDS}", key="payload.kind")
    return data


def payload_job(payload: object) -> BacktestJob | None:
    """The :class:`BacktestJob` inside a ``job`` payload, else ``None`` (never raises)."""
    try:
        data = parse_payload(payload)
        return BacktestJob.from_dict(data["job"]) if data["kind"] == "job" else None
    except (ConfigError, KeyError, TypeError):
        return None


def remove_partial_files(run_dir: Path) -> list[Path]:
    """Delete temporary files an interrupted write left in ``run_dir``.

    Results are written to ``.<name>.<random>.tmp`` and renamed into place; a job
    stopped mid-write (timeout, SIGKILL) can leave such a file behind. They never look
    complete (only ``result.json`` marks a complete run), but they are removed so a
    failed run leaves nothing that could be mistaken for output.
    """
    removed = []
    for folder in (run_dir, run_dir / "figures"):
        if folder.is_dir():
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


JOB_LOG = "backtest.log"  # Hydra's job log name (hydra.job.name: backtest) in a sweep folder
_LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's job_logging


@contextmanager
def _job_log(run_dir: Path) -> Iterator[None]:
    """Log this job into ``<run_dir>/backtest.log``, and the traceback if it fails.

    What the basic launcher's job log holds (Hydra's job logging): every log line of
    the job, and on failure ``job failed: <error>`` with its traceback. Secrets are
    masked as in every log line (:func:`~backtest.masking.mask_logs`).
    """
    handler = logging.FileHandler(run_dir / JOB_LOG, encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    except BaseException as exc:
        logging.getLogger("backtest").error(
            "job failed: %s: %s",
            type(exc).__name__,
            exc,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        raise
    finally:
        root.removeHandler(handler)
        handler.close()


def _count_attempt() -> int:
    """Record that an attempt of the current rq job started; returns the attempt number."""
    try:
        from rq import get_current_job

        from backtest.queue._redis import attempts_key
    except ImportError:  # pragma: no cover - only called on workers, where rq exists
        return 0
    current = get_current_job()
    if current is None:
        return 0
    return int(current.connection.hincrby(attempts_key(current.origin), current.id, 1))


def execute(payload: str) -> dict[str, Any]:
    """Run one queued payload (see the module docstring); the only job function.

    The payload is data: it runs under this worker's policy
    (:mod:`backtest.queue._policy`), checked before anything is read, written or
    computed. A payload holding ``${...}`` is refused; ``data.path`` must lie under the
    worker's data roots and the run directory under its output roots (a folder of its
    own job); the job's ``tracking.uri`` is ignored for the worker's own.

    Returns:
        A small JSON summary: for a job, its id, result path, objective and metrics.

    Raises:
        ConfigError: a malformed payload (names what is wrong).
        PayloadRefused: the payload asks for what the worker's policy does not allow.
        BacktestError: the job itself failed (bad config, bad data, ...).
    """
    from backtest.queue._policy import admit_job, confined, current, refuse_interpolations

    mask_logs()  # no secret in a worker's log lines either
    data = parse_payload(payload)
    refuse_interpolations(data)  # before any value of the payload is used
    policy = current()
    attempt = _count_attempt()
    kind = data["kind"]
    if kind == "noop":
        return {"kind": "noop", "attempt": attempt}
    if kind == "study":
        from backtest.queue._study import run_study_worker

        with confined(policy):
            result = run_study_worker(data["study"], policy)
        return {"kind": "study", "attempt": attempt, **result}
    job, run_dir = admit_job(BacktestJob.from_dict(data["job"]), policy)
    log.info("job %s (%s), attempt %d, into %s", job.job_id, job.task, attempt, run_dir)
    from backtest.results import load_result
    from backtest.tasks import run_backtest

    try:
        with _job_log(run_dir), confined(policy):
            run_backtest(job)
    except BaseException:
        remove_partial_files(run_dir)
        raise
    record = load_result(run_dir, job_id=job.job_id).record
    return {
        "kind": "job",
        "job_id": job.job_id,
        "attempt": attempt,
        "result_path": str(run_dir),
        "objective": record.get("objective"),
        "metrics": record.get("metrics", {}),
    }
