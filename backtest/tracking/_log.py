"""Logging one run directory (or one failed job) as MLflow runs."""

from __future__ import annotations

import functools
import getpass
import logging
import subprocess
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from backtest import results
from backtest.config import TrackingConfig
from backtest.errors import BacktestError
from backtest.masking import mask_text, reveal
from backtest.results._summary import format_summary
from backtest.tracking import _client
from backtest.tracking._children import child_metrics, select_children, stored_children
from backtest.tracking._flatten import (
    RUN_KEY_TAG,
    clean_key,
    iso_to_ms,
    param_value,
    record_metrics,
    run_key,
    run_name,
    run_params,
    tag_value,
)
from backtest.tracking._report_file import report_to_upload
from backtest.tracking._sweep import log_job_objective, sweep_parent
from backtest.tracking._ui import DEFAULT_EXPERIMENT, ui_url, view_rounded

log = logging.getLogger("backtest.tracking")

PARENT_TAG = "mlflow.parentRunId"
# A child run (trial, fold) repeats only these of its parent's tags; the rest is one
# click away on the parent, and fewer rows keep a 100-child search fast to log.
_CHILD_TAGS = ("backtest.experiment", "backtest.task", "backtest.job_id", "mlflow.user")


@dataclass(frozen=True, slots=True)
class LoggedRun:
    """Where a result went in MLflow.

    Attributes:
        run_id: The MLflow run of the result.
        experiment_id: Its experiment.
        run_key: The ``backtest.run_key`` tag (one per written result).
        n_children: Nested child runs logged (trials or folds).
        parent_run_id: The sweep's parent run, for a job of a Hydra multirun.
        uri: The tracking URI used.
    """

    run_id: str
    experiment_id: str
    run_key: str
    n_children: int
    parent_run_id: str | None
    uri: str


def tracking_config(config: Mapping[str, Any]) -> TrackingConfig:
    """The ``tracking`` section of a plain config as a :class:`TrackingConfig`."""
    section = config.get("tracking") or {}
    known = {f.name for f in fields(TrackingConfig)}
    return TrackingConfig(**{k: v for k, v in section.items() if k in known})


def read_config(run_dir: Path) -> dict[str, Any]:
    """The resolved config a run directory was computed from (empty when absent)."""
    path = run_dir / results.CONFIG_FILE
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text())
    return data if isinstance(data, dict) else {}


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the ``backtest`` source checkout, ``None`` outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def _base_tags(record: Mapping[str, Any], experiment: str, commit: str | None) -> dict[str, str]:
    from backtest import __version__

    tags = {
        "backtest.experiment": experiment,
        "backtest.task": record.get("task"),
        "backtest.job_id": record.get("job_id"),
        "backtest.config_hash": record.get("config_hash"),
        "backtest.data_fingerprint": record.get("data_fingerprint"),
        "backtest.seed": record.get("seed"),
        "backtest.version": record.get("version") or __version__,
        "backtest.git_commit": commit,
        "mlflow.source.git.commit": commit,
        "mlflow.source.name": "backtest",
        "mlflow.source.type": "LOCAL",
        "mlflow.user": _user(),
    }
    return {k: tag_value(v) for k, v in tags.items() if v is not None}


def _log_files(client: Any, run: Any, stored: results.StoredResult) -> None:
    """Upload the run's files: config and result at the root, ``tables/``, ``figures/``."""
    put = client.artifact_writer(run)
    for name in (results.RESULT_FILE, results.CONFIG_FILE):
        if (stored.path / name).is_file():
            put(str(stored.path / name))
    if (stored.path / results.REPORT_FILE).is_file():  # a sweep job's: plotly.js embedded
        with report_to_upload(stored.path / results.REPORT_FILE) as page:
            put(str(page))
    for table in stored.tables.values():
        put(str(table), "tables")
    figures = stored.path / results.FIGURES_DIR
    for png in sorted(figures.rglob("*.png")) if figures.is_dir() else []:
        put(str(png), png.parent.relative_to(stored.path).as_posix())


def _log_children(
    client: Any,
    experiment_id: str,
    parent_id: str,
    children: Sequence[Mapping[str, Any]],
    *,
    kind: str,
    base_tags: Mapping[str, str],
    start_ms: int,
    end_ms: int,
) -> None:
    for position, child in enumerate(children):
        tags = {**base_tags, PARENT_TAG: parent_id, "backtest.kind": kind}
        run = client.create_run(
            experiment_id,
            # one millisecond apart, the first child latest: the runs table, newest first,
            # lists a search's trials best first and a walk-forward's folds in order
            start_time=start_ms + len(children) - 1 - position,
            tags=tags,
            run_name=str(child.get("name", kind))[:250],
        )
        params = {clean_key(k): param_value(v) for k, v in (child.get("params") or {}).items()}
        metrics = child_metrics(child.get("metrics") or {})
        client.log_plain(run.info.run_id, params=params, metrics=metrics, timestamp_ms=end_ms)
        client.set_terminated(run.info.run_id, "FINISHED", end_time=end_ms)


@contextmanager
def _connected(
    cfg: TrackingConfig, uri: str, experiment: str, what: str
) -> Iterator[tuple[Any, str]]:
    """A client and the experiment id, every call bounded; any failure one ``BacktestError``."""
    with _client.bounded_http(cfg.timeout_s):
        try:
            _client.check_reachable(uri, cfg.timeout_s)
            with _client.connect(uri) as client:
                yield client, _client.experiment_id(client, experiment, uri)
        except BacktestError:
            raise
        except Exception as exc:
            lines = [line for line in str(exc).splitlines() if line.strip()]
            # the first line, and the last where SQLAlchemy put its context first ("(raised
            # as a result of Query-invoked autoflush; ...)" hid "database is locked")
            first = " ".join(dict.fromkeys(lines[:1] + lines[-1:]))
            raise BacktestError(
                mask_text(
                    f"logging {what} to MLflow at {uri} failed: {type(exc).__name__}: {first}"
                )
            ) from exc


def _used_params(record: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters a run used: its strategy's, and a search's best engine keys too.

    ``result.json``'s ``params`` are the strategy's; a search over ``engine.stop_loss``
    keeps its best value in ``search.best_params``, logged as
    ``selected.engine.stop_loss`` (the config's ``engine.stop_loss`` is the default the
    search did not use), so ``backtest compare`` shows the parent's best beside its trials.

    >>> _used_params({"params": {"fast": 5},
    ...               "search": {"best_params": {"fast": 5, "engine.fee": 0.001}}})
    {'fast': 5, 'engine.fee': 0.001}
    """
    best = (record.get("search") or {}).get("best_params") or {}
    return {**(record.get("params") or {}), **{k: v for k, v in best.items() if "." in str(k)}}


def _note(record: Mapping[str, Any]) -> str:
    try:
        return "```\n" + format_summary(record) + "\n```"
    except (TypeError, ValueError, KeyError):
        return ""


def log_result(
    run_dir: str | Path,
    tracking_cfg: TrackingConfig | None = None,
    children: Sequence[Mapping[str, Any]] | None = None,
    *,
    uri: str | None = None,
    infer_git: bool = True,
) -> LoggedRun:
    """Mirror a complete run directory into MLflow.

    Args:
        run_dir: A run directory holding ``result.json``.
        tracking_cfg: Where and how to log; the run's own ``tracking`` config when unset.
        children: Nested runs (dicts of ``name``, ``params``, ``metrics``) for a task
            whose files hold none. A search's ``trials`` table and a walk-forward's
            ``folds`` table are the record and win, so a run logged now and one logged
            later by ``backtest.tracking._sync`` look the same.
        uri: Overrides the tracking URI of ``tracking_cfg``.
        infer_git: Tag the current git commit of the source when the record has none
            (true when logging right after the run; ``backtest.tracking._sync`` turns it off).

    Returns:
        The run ids and counts logged.

    Raises:
        ResultPathMissing: ``run_dir`` holds no complete result.
        BacktestError: MLflow is unreachable or refused the run; names the URI.
    """
    stored = results.load_result(run_dir)
    record = stored.record
    config = read_config(stored.path)
    cfg = tracking_cfg or tracking_config(config)
    tracking_uri = _client.resolve_uri(reveal(uri or cfg.uri))
    experiment = cfg.experiment_name or str(
        record.get("name") or config.get("name") or DEFAULT_EXPERIMENT
    )
    commit = record.get("git_commit") or (git_commit() if infer_git else None)
    key = run_key(record)
    start_ms = iso_to_ms(record.get("started_at")) or int(time.time() * 1000)
    end_ms = iso_to_ms(record.get("ended_at")) or int(time.time() * 1000)
    nested: list[Mapping[str, Any]] = [*stored_children(stored, config)] or [*(children or [])]
    search = config.get("search") or {}
    chosen = select_children(
        nested,
        task=str(record.get("task")),
        metric=str(search.get("metric", "sharpe_ratio")),
        maximize=str(search.get("direction", "maximize")).endswith("maximize"),
        cap=cfg.max_child_runs,
    )
    base = _base_tags(record, experiment, commit)
    tags = {
        **base,
        RUN_KEY_TAG: key,
        "backtest.kind": "run",
        "backtest.run_dir": tag_value(stored.path.resolve()),
        "backtest.children_total": str(len(nested)),
        "backtest.children_logged": str(len(chosen)),
        "mlflow.note.content": tag_value(_note(record)),
    }
    metrics = view_rounded(record_metrics(record))  # exact values: result.json (attached)
    with _connected(cfg, tracking_uri, experiment, str(stored.path)) as (client, exp_id):
        parent = sweep_parent(client, exp_id, stored.path, experiment)
        if parent:
            tags[PARENT_TAG] = parent
        job = stored.path.name if stored.path.name.isdigit() else None  # a sweep's job number
        name = run_name(record, config, job=job)
        run = client.create_run(exp_id, start_time=start_ms, run_name=name, tags=tags)
        run_id = run.info.run_id
        try:
            client.log_plain(
                run_id,
                params=run_params(config, _used_params(record)),
                metrics=metrics,
                timestamp_ms=end_ms,
            )
            _log_files(client, run, stored)
            kind = "fold" if record.get("task") == "walkforward" else "trial"
            _log_children(
                client,
                exp_id,
                run_id,
                chosen,
                kind=kind,
                base_tags={
                    **{k: base[k] for k in _CHILD_TAGS if k in base},
                    "backtest.parent_run_key": key,
                },
                start_ms=start_ms,
                end_ms=end_ms,
            )
            if parent and "objective" in metrics:  # the sweep's row: its best job so far
                log_job_objective(
                    client,
                    parent,
                    int(job or 0),
                    metrics["objective"],
                    maximize=str(search.get("direction", "maximize")).endswith("maximize"),
                )
            client.set_terminated(run_id, "FINISHED", end_time=end_ms)
        except BaseException:
            _end_quietly(client, run_id, "FAILED")  # never left RUNNING; sync redoes it
            raise
    where = (
        ui_url(tracking_uri, exp_id, run_id)
        if _client.is_http(tracking_uri)
        else f"run {run_id} in {tracking_uri} (view: mlflow ui --backend-store-uri "
        f"{tracking_uri}, then open {ui_url('http://127.0.0.1:5000', exp_id)})"
    )
    where = mask_text(where)
    log.info(
        "logged %s to MLflow: %s (experiment %r, %d child runs)",
        stored.path,
        where,
        experiment,
        len(chosen),
    )
    return LoggedRun(run_id, exp_id, key, len(chosen), parent, tracking_uri)


def _end_quietly(client: Any, run_id: str, status: str) -> None:
    """Best effort: never leave a half-logged run RUNNING (the server may be gone)."""
    try:
        client.set_terminated(run_id, status)
    except Exception:  # the original error is the one worth reporting
        log.debug("could not mark MLflow run %s %s", run_id, status, exc_info=True)


def failure_status(error: BaseException) -> str:
    """``KILLED`` for an interrupted or terminated job, ``FAILED`` for any other error.

    >>> failure_status(KeyboardInterrupt()), failure_status(ValueError("bad"))
    ('KILLED', 'FAILED')
    """
    return "KILLED" if isinstance(error, KeyboardInterrupt | SystemExit) else "FAILED"


def log_failure(
    job: Any,
    error: BaseException,
    *,
    run_dir: str | Path | None = None,
    tracking_cfg: TrackingConfig | None = None,
) -> str | None:
    """Log a job that did not finish as an ended MLflow run (``FAILED`` or ``KILLED``).

    The run carries the flattened config, the usual tags, ``backtest.error`` and the
    traceback as its description; it is never left ``RUNNING``.

    Args:
        job: The :class:`~backtest.tasks._jobs.BacktestJob` that failed.
        error: What stopped it (``KeyboardInterrupt``/``SystemExit`` mean ``KILLED``).
        run_dir: Its run directory (attaches the run to a multirun sweep's parent).
        tracking_cfg: Where to log; the job config's ``tracking`` section when unset.

    Returns:
        The MLflow run id, or ``None`` when tracking is disabled.

    Raises:
        BacktestError: MLflow is unreachable or refused the run.
    """
    config = dict(job.config)
    cfg = tracking_cfg or tracking_config(config)
    if not cfg.enabled:
        return None
    uri = _client.resolve_uri(reveal(cfg.uri))
    experiment = cfg.experiment_name or str(config.get("name") or DEFAULT_EXPERIMENT)
    status = failure_status(error)
    record = {
        "task": job.task,
        "job_id": job.job_id,
        "config_hash": job.config_hash,
        "seed": config.get("seed"),
    }
    tags = {
        **_base_tags(record, experiment, git_commit()),
        "backtest.kind": "run",
        "backtest.status": status.lower(),
        "backtest.error": tag_value(mask_text(f"{type(error).__name__}: {error}")),
        "mlflow.note.content": tag_value(
            "```\n" + mask_text("".join(traceback.format_exception(error))) + "```"
        ),
    }
    now = int(time.time() * 1000)
    start = iso_to_ms(getattr(job, "started_at", None)) or now
    with _connected(cfg, uri, experiment, f"the {status} job {job.job_id}") as (client, exp_id):
        if run_dir is not None:
            parent = sweep_parent(client, exp_id, Path(run_dir), experiment)
            if parent:
                tags[PARENT_TAG] = parent
        params = {k: v for k, v in (config.get("strategy") or {}).items() if k != "_target_"}
        name = run_name({"task": job.task, "params": params}, config) + f" ({status.lower()})"
        run = client.create_run(exp_id, start_time=start, tags=tags, run_name=name)
        client.log_plain(run.info.run_id, params=run_params(config, {}), timestamp_ms=now)
        client.set_terminated(run.info.run_id, status, end_time=now)
    return str(run.info.run_id)
