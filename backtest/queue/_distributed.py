"""Distributed parameter search: workers on several machines optimise one Optuna study.

:func:`distributed_search` creates a study in shared storage and queues one "study
worker" job per worker; each worker (``python -m backtest.worker``, anywhere) loads
the study and pulls trials until the study has ``n_trials`` finished ones. Storage:

- ``redis://`` / ``rediss://`` / ``unix://`` (default: the queue's own Redis): Optuna's
  journal on Redis (``JournalRedisBackend``), with heartbeats added here;
- ``postgresql://`` / ``mysql://``: Optuna's ``RDBStorage`` with its heartbeats
  (needs the database driver, e.g. ``psycopg2``);
- ``sqlite:///``: one worker only. SQLite does not support concurrent writers, so
  more than one worker is refused with a :class:`~backtest.errors.ConfigError`.

A killed worker stops sending heartbeats for its running trial; after
``grace_period`` seconds another worker marks the trial failed and queues a new one
with the same parameters (Optuna's ``RetryHeartbeatStaleTrialCallback``), and the
killed worker's queue job is itself retried by the queue.

Reproducibility: each worker's sampler is seeded from ``search.seed`` and its index,
but which worker evaluates which trial depends on timing, so a model-based search
(TPE) over several workers is not bit-for-bit repeatable; a grid is.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from backtest.errors import ConfigError, TrialsFailed
from backtest.masking import mask_url
from backtest.search._result import OK

if TYPE_CHECKING:
    import optuna

    from backtest.queue import BacktestJobQueue

log = logging.getLogger("backtest.queue._distributed")

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
RDB_SCHEMES = ("postgresql", "postgres", "mysql")
SAMPLERS = ("tpe", "cmaes", "random")


@dataclass(frozen=True, slots=True)
class DistributedSearchResult:
    """The outcome of a distributed search.

    Attributes:
        study_name: The Optuna study.
        storage: Where it lives (password masked; a private Redis that is gone after
            the run is named as such).
        trials: One row per trial, the columns of an ordinary search: ``trial``,
            every parameter, every metric, ``seed``, ``status`` (``ok``, ``failed``)
            and ``error``; plus ``retry_of`` (the trial a retry repeats, for trials
            re-run after a killed worker).
        best_params: Parameters of the best complete trial.
        best_value: Its objective.
        n_retried: Trials re-run because their worker died.
    """

    study_name: str
    storage: str
    trials: pd.DataFrame
    best_params: dict[str, Any] = field(default_factory=dict)
    best_value: float = float("nan")
    n_retried: int = 0


# --- storage ---------------------------------------------------------------------------------


def check_storage(url: str, n_workers: int) -> str:
    """Return ``url`` if it can serve ``n_workers`` workers, else raise ``ConfigError``.

    >>> check_storage("sqlite:///study.db", 1)
    'sqlite:///study.db'
    >>> check_storage("sqlite:///study.db", 2)
    Traceback (most recent call last):
    ...
    backtest.errors.ConfigError: storage 'sqlite:///study.db' is SQLite, which cannot be shared by 2 workers (no concurrent writers); use the queue's Redis (the default), redis://... or postgresql://...
    """  # noqa: E501 - a doctest's expected output is one line
    if url.startswith("sqlite"):
        if n_workers > 1:
            raise ConfigError(
                f"storage {url!r} is SQLite, which cannot be shared by {n_workers} workers "
                "(no concurrent writers); use the queue's Redis (the default), redis://... "
                "or postgresql://...",
                key="storage",
            )
        return url
    if url.startswith(REDIS_SCHEMES) or url.split(":", 1)[0].split("+")[0] in RDB_SCHEMES:
        return url
    raise ConfigError(
        f"storage {url!r} is not supported: use redis://, unix://, postgresql://, mysql:// "
        "or (one worker only) sqlite://",
        key="storage",
    )


# --- the driver ------------------------------------------------------------------------------


def default_study_name(config: Mapping[str, Any] | Any) -> str:
    """``backtest-<config hash>``: the same search configured twice is the same study."""
    from backtest.tasks._jobs import config_hash, plain_config

    return f"backtest-{config_hash(plain_config(config))[:16]}"


def distributed_search(
    config: Mapping[str, Any] | Any,
    queue: BacktestJobQueue,
    *,
    n_trials: int | None = None,
    n_workers: int | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    heartbeat_interval: int = 5,
    grace_period: int = 20,
    max_retry: int = 3,
    timeout: float | None = None,
    progress: bool = True,
    output_dir: str | Path | None = None,
) -> DistributedSearchResult:
    """Optimise ``search.space`` of ``config`` with workers pulling from one shared study.

    Args:
        config: A composed config (``DictConfig``) or plain mapping; its ``search``
            section gives the space, metric, direction, constraint and seed.
        queue: The queue whose workers run the study (``python -m backtest.worker``).
        n_trials: Finished trials wanted (``search.n_iter`` when unset).
        n_workers: Study-worker jobs queued (``queue.n_workers`` when unset).
        storage: Optuna storage URL; the queue's Redis when unset.
        study_name: Study name; derived from the config hash when unset, so running
            the same search again continues the same study.
        heartbeat_interval: Seconds between a running trial's heartbeats.
        grace_period: Seconds without heartbeat after which a trial counts as dead.
        max_retry: Times a dead worker's trial is re-run with the same parameters.
        timeout: Seconds to wait for the workers.
        progress: Show a progress bar.
        output_dir: Write ``result.json`` (best parameters and metrics), ``config.yaml``
            and the ``trials`` table there, and mirror them to MLflow (``tracking``).

    Raises:
        ConfigError: SQLite storage with more than one worker, no search space, ...
        TrialsFailed: no trial completed.
    """
    import optuna

    from backtest.tasks._jobs import now_iso, plain_config

    started_at = now_iso()
    plain = plain_config(config)
    search = plain.get("search") or {}
    if not search.get("space"):
        raise ConfigError("a distributed search needs search.space", key="search.space")
    sampler = str(search.get("method", "tpe")).split(".")[-1]
    if sampler not in SAMPLERS:
        raise ConfigError(
            f"a distributed search needs an Optuna sampler: search.method one of {SAMPLERS}, "
            f"got {sampler!r} (a grid runs fastest on one machine, or as a sweep with "
            "hydra/launcher=rq)",
            key="search.method",
        )
    n_trials = int(n_trials or search.get("n_iter") or 50)
    n_workers = int(n_workers or queue.config.n_workers)
    url = check_storage(storage or queue.url, n_workers)
    name = study_name or default_study_name(plain)
    minimize = str(search.get("direction", "maximize")).split(".")[-1] == "minimize"
    direction = (
        optuna.study.StudyDirection.MINIMIZE if minimize else (optuna.study.StudyDirection.MAXIMIZE)
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from backtest.queue._storage import study_storage

    store = study_storage(
        url, heartbeat_interval=heartbeat_interval, grace_period=grace_period, max_retry=max_retry
    )
    study = optuna.create_study(
        study_name=name, storage=store, direction=direction, load_if_exists=True
    )
    spec = {
        # masked: each worker connects with the URL from its own environment
        # (REDIS_URL for the queue's Redis, BACKTEST_STUDY_STORAGE for another store)
        "storage": mask_url(url),
        "study_name": name,
        "config": plain,
        "n_trials": n_trials,
        "heartbeat_interval": heartbeat_interval,
        "grace_period": grace_period,
        "max_retry": max_retry,
        "seed": int(search.get("seed", plain.get("seed", 0))),
        "sampler": sampler,
    }
    ids = queue.submit_study(spec, n_workers)
    log.info("study %s: %d trials on %d worker job(s)", name, n_trials, n_workers)
    statuses = queue.wait_statuses(ids, timeout, progress=progress)
    reasons = [queue.failure_reason(i) for i, st in statuses.items() if st != "finished"]
    # the queue's private Redis is gone after the run: say so rather than name its socket
    where = (
        "the queue's private Redis (stopped after the run)"
        if (storage is None and queue.embedded)
        else mask_url(url)
    )
    try:
        result = _result(study, name, where)
    except TrialsFailed as exc:
        if reasons:
            raise TrialsFailed(f"{exc}; the study workers failed: {reasons[0]}") from exc
        raise
    if output_dir is not None:
        _write(Path(output_dir), result, plain, n_workers, started_at)
        if plain.get("report", True):  # the same page as a local search's, from its files
            from backtest.tasks import _report

            _report(Path(output_dir))
        _track(Path(output_dir), plain)
    return result


_STATUS = {"COMPLETE": "ok", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}


def _write(
    run_dir: Path,
    result: DistributedSearchResult,
    plain: dict[str, Any],
    n: int,
    started_at: str,
) -> None:
    """``result.json``, ``config.yaml`` and the trials table, as an ordinary search writes."""
    import yaml

    from backtest import __version__
    from backtest.results import write_result
    from backtest.tasks._jobs import config_hash, now_iso

    trials = result.trials
    metric = str((plain.get("search") or {}).get("metric", "sharpe_ratio"))
    ok = trials[trials["status"] == OK]
    best_row = ok.loc[ok[metric] == result.best_value].iloc[0]
    skip = {"trial", "seed", "status", "error", "retry_of", *result.best_params}
    metrics = {c: best_row[c] for c in trials.columns if c not in skip}
    where = result.storage
    write_result(
        run_dir,
        {
            "task": "search",
            "job_id": f"search-distributed-{result.study_name}"[:128],
            "name": plain.get("name"),
            "params": result.best_params,
            "metrics": metrics,
            "objective": result.best_value,
            "seed": plain.get("seed"),
            "config_hash": config_hash(plain),
            "version": __version__,
            "started_at": started_at,
            "ended_at": now_iso(),
            "search": {  # what the report's search section reads, as a local search writes
                "method": (plain.get("search") or {}).get("method"),
                "metric": metric,
                "direction": (plain.get("search") or {}).get("direction", "maximize"),
                "space": dict((plain.get("search") or {}).get("space") or {}),
                "n_trials": len(trials),
                "n_failed": int((trials["status"] == "failed").sum()),
                "best_trial": int(best_row["trial"]),
                "best_params": result.best_params,
                "best_score": result.best_value,
            },
            "distributed": {
                "study_name": result.study_name,
                "storage": where,
                "n_workers": n,
                "n_trials": len(trials),
                "n_complete": len(ok),
                "n_failed": int((trials["status"] == "failed").sum()),
                "n_retried": result.n_retried,
            },
        },
        tables={"trials": trials},
        config_yaml=yaml.safe_dump(plain, sort_keys=False),
    )


def _track(run_dir: Path, plain: Mapping[str, Any]) -> None:
    """Mirror the written result to MLflow like any run; a failure warns, the files stay."""
    from backtest.tracking._log import log_result, tracking_config

    cfg = tracking_config(plain)
    if not cfg.enabled:
        return
    try:
        log_result(run_dir, cfg)
    except Exception as exc:
        log.warning(
            "MLflow tracking failed (%s); the result is complete in %s and can be logged "
            "later with: backtest sync %s",
            exc,
            run_dir,
            run_dir,
        )


def _result(study: optuna.Study, name: str, where: str) -> DistributedSearchResult:
    """The study as a search result, its trials in the columns of an ordinary search.

    One row per trial: ``trial``, the parameters, every metric, ``seed``, ``status``,
    ``error``, plus ``retry_of``.
    """
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    rows = []
    for t in trials:
        if t.state == TrialState.PRUNED:
            continue  # a proposal the constraint rejected: not a trial
        history = t.system_attrs.get("retry_history", [])
        rows.append(
            {
                "trial": t.number,
                **t.params,
                **{k: v for k, v in t.user_attrs.items() if k != "error"},
                "seed": None,  # the worker's sampler seed proposes; a backtest uses none
                "status": _STATUS.get(t.state.name, t.state.name.lower()),
                "error": t.user_attrs.get("error", ""),
                "retry_of": history[0] if history else None,
            }
        )
    table = pd.DataFrame(rows)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise TrialsFailed(f"study {name!r}: no trial completed ({len(trials)} trials)")
    best = study.best_trial
    return DistributedSearchResult(
        study_name=name,
        storage=where,
        trials=table,
        best_params=dict(best.params),
        best_value=float(best.value if best.value is not None else np.nan),
        n_retried=int(table["retry_of"].notna().sum()) if len(table) else 0,
    )
