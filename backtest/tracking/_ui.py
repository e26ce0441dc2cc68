"""What a user sees in the MLflow UI: our default experiment name and links to the runs table."""

from __future__ import annotations

from backtest.masking import mask_text
from backtest.tracking._client import VIEW_KEY

# Not "default": MLflow's own experiment is "Default", and two look-alikes confuse.
DEFAULT_EXPERIMENT = "backtest"
UI_VIEW = f"workflowType=machine_learning&viewStateShareKey={VIEW_KEY}"


def ui_url(server: str, experiment_id: str, run_id: str | None = None) -> str:
    """The MLflow UI page of an experiment (or one run) on the classic runs table.

    MLflow 3.17's UI opens every experiment on its GenAI "Overview" unless the page is
    asked for the model-training view (``workflowType=machine_learning``; the experiment
    tag ``mlflow.experimentKind`` is only read when that switch is absent), and shows
    no metric column until asked: ``viewStateShareKey`` opens the view saved on the
    experiment (:data:`backtest.tracking._client.RUNS_VIEW`), headline metrics as columns.

    >>> ui_url("http://127.0.0.1:5000/", "3")
    'http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning&viewStateShareKey=backtest'
    """
    page = f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs"
    if run_id:
        page += f"/{run_id}"
    return mask_text(page) + "?" + UI_VIEW
