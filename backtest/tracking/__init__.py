"""MLflow mirror of the run directory: files are the record, MLflow is the mirror.

Every run directory becomes one MLflow run in the experiment named by the config
(``tracking.experiment_name``, else the config's ``name``):

* params: the resolved config flattened to dotted keys (``strategy.lookback``), plus
  the strategy parameters actually used under their bare names (``lookback``);
* metrics: the headline metrics, ``objective``, ``duration_s`` and every number of
  the ``search``, ``walkforward``, ``overfitting`` and ``montecarlo`` sections
  (``montecarlo.<...>``, ``overfitting.<...>``): Monte Carlo percentiles are
  metrics of the run they analyse;
* tags: ``backtest.experiment``, ``.task``, ``.config_hash``, ``.data_fingerprint``,
  ``.seed``, ``.git_commit``, ``.version``, ``.job_id`` and ``.run_key`` (one per
  written result, used by ``python -m backtest.sync`` to log each result exactly
  once); the printed summary is the run's description;
* artifacts: ``result.json``, ``config.yaml``, ``report.html``, ``tables/*.parquet``,
  ``figures/*.png``.

A search is a parent run with its best ``tracking.max_child_runs`` trials as nested
children (the full trials table is an artifact); a walk-forward is a parent with
one child per fold; each job of a Hydra multirun is a child of one sweep run.

The ``backtest`` command prints a run's summary while its mirror is logged in the
background (:func:`mirrors_after`); a fresh sqlite store is made from the schema
MLflow's migrations make (``mlflow_schema.sql``), and MLflow's own log lines never
reach the terminal (:mod:`backtest.tracking._store`).

Nothing here waits for an unreachable server: calls are bounded by
``tracking.timeout_s`` and fail with one :class:`~backtest.errors.BacktestError`;
the task runner turns that into one warning, and the run stays complete on disk.
``mlflow`` is imported only inside the functions that log.
"""

from __future__ import annotations

from backtest.tracking._background import mirror_soon, mirrors_after
from backtest.tracking._client import (
    DEFAULT_URI,
    bounded_http,
    experiment_id,
    preload,
    resolve_uri,
)
from backtest.tracking._flatten import flatten_config, record_metrics, run_key, run_params
from backtest.tracking._log import (
    LoggedRun,
    failure_status,
    git_commit,
    log_failure,
    log_result,
    read_config,
    tracking_config,
)

__all__ = [
    "DEFAULT_URI",
    "LoggedRun",
    "bounded_http",
    "experiment_id",
    "failure_status",
    "flatten_config",
    "git_commit",
    "log_failure",
    "log_result",
    "mirror_soon",
    "mirrors_after",
    "preload",
    "read_config",
    "record_metrics",
    "resolve_uri",
    "run_key",
    "run_params",
    "tracking_config",
]
