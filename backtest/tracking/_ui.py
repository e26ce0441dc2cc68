"""What a user sees in the MLflow UI: our experiment name, the runs-table view we link to.

The URL each run prints opens the experiment's runs table in a view saved on the
experiment (an experiment tag, MLflow's "shared view state"; :data:`RUNS_VIEW`):

* **nested**: MLflow 3.17's runs table nests child runs (a search's trials, a
  walk-forward's folds, a sweep's jobs) under their parent (``mlflow.parentRunId``)
  only while the table is sorted by start time with no search filter; sorted by any
  metric it shows every run flat. The view sorts newest first, so parents are rows
  with an expander and their children one click away.
* **headline metrics first**: ``selectedColumns`` shows :data:`VIEW_METRICS` and
  ``columnOrder`` puts them in that order right after the run name (widened to show
  a whole name) and start time; MLflow otherwise orders metric columns by name, which
  put Sharpe off-screen at 1400 px wide. Duration moves after them.
* **rounded**: MLflow shows a metric as logged, so those columns' metrics are logged
  to :data:`VIEW_DIGITS` significant digits (:func:`view_rounded`); the exact values
  stay in ``result.json``, the run directory's record, also attached to the run.

MLflow 3.17 offers nothing to choose its landing page: ``mlflow server`` has no option
for it and the home page (``/#/``) is a fixed "Welcome to MLflow" with GenAI feature
cards and the experiments list; the GenAI/model-training switch is kept in the
browser (``localStorage['mlflow.workflowType']``, default ``genai``). So the links we
print carry ``workflowType=machine_learning`` and open the experiment directly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from backtest.masking import mask_text

# Not "default": MLflow's own experiment is "Default", and two look-alikes confuse.
DEFAULT_EXPERIMENT = "backtest"

VIEW_KEY = "backtest"
VIEW_METRICS = ("sharpe_ratio", "total_return", "cagr", "max_drawdown", "objective")
"""The runs table's metric columns, in this order."""
VIEW_DIGITS = 4
# MLflow's sort key for the start time: the one order (with no filter) that nests runs.
_START_TIME = "attributes.start_time"
_RUN_NAME = "attributes.`Run Name`"  # the runs table's column id of the run name
RUNS_VIEW = {
    f"mlflow.sharedViewState.{VIEW_KEY}": json.dumps(
        {
            "selectedColumns": [f"metrics.`{m}`" for m in VIEW_METRICS],
            "columnOrder": [_RUN_NAME, *(f"metrics.`{m}`" for m in VIEW_METRICS)],
            "columnWidths": {_RUN_NAME: 270},  # "walkforward Momentum lookback=60" whole
            "orderByKey": _START_TIME,
            "orderByAsc": False,
            "searchFilter": "",
        }
    )
}
"""Experiment tags: the saved runs-table view opened by ``?viewStateShareKey=backtest``."""
UI_VIEW = f"workflowType=machine_learning&viewStateShareKey={VIEW_KEY}"


def view_rounded(metrics: Mapping[str, float]) -> dict[str, float]:
    """``metrics`` with the runs table's columns rounded to :data:`VIEW_DIGITS` digits.

    >>> view_rounded({"sharpe_ratio": 0.8123456789, "total_return": 12.3456, "pbo": 0.123456})
    {'sharpe_ratio': 0.8123, 'total_return': 12.35, 'pbo': 0.123456}
    """
    return {k: _round(v) if k in VIEW_METRICS else v for k, v in metrics.items()}


def _round(value: float) -> float:
    return float(f"{value:.{VIEW_DIGITS}g}") if math.isfinite(value) else value


def ui_url(server: str, experiment_id: str, run_id: str | None = None) -> str:
    """The MLflow UI page of an experiment (or one run) on the classic runs table.

    MLflow 3.17's UI opens every experiment on its GenAI "Overview" unless the page is
    asked for the model-training view (``workflowType=machine_learning``; the experiment
    tag ``mlflow.experimentKind`` is only read when that switch is absent), and shows
    no metric column until asked: ``viewStateShareKey`` opens :data:`RUNS_VIEW`.

    >>> ui_url("http://127.0.0.1:5000/", "3")
    'http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning&viewStateShareKey=backtest'
    """
    page = f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs"
    if run_id:
        page += f"/{run_id}"
    return mask_text(page) + "?" + UI_VIEW
