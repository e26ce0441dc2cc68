"""The MLflow UI shows our runs: a real server, a real headless Chromium, the rendered DOM (slow).

The experiment's runs page is a React app: the run names exist only after its
JavaScript has fetched the runs from the server, so finding them in the DOM that
Chromium dumps shows that a user opening the page sees them.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from backtest import results
from backtest.config import TrackingConfig
from backtest.tracking import log_result
from backtest.tracking._ui import ui_url
from tests.devtools import HEADLESS_FLAGS, chromium

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = [*HEADLESS_FLAGS, "--window-size=1400,900", "--virtual-time-budget=30000"]


def dumped_dom(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran (Chromium's ``--dump-dom``)."""
    return subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout


def rendered_text(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran, as visible text (tags stripped)."""
    out = dumped_dom(url, profile)
    out = re.sub(r"<(script|style)\b.*?</\1>", " ", out, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", out)))


def logged_backtest(
    tmp_path: Path,
    cfg: TrackingConfig,
    fast: int,
    metrics: dict[str, float],
    config: dict[str, Any],
) -> Any:
    """A backtest run folder (``fast``, ``slow=50``) written and logged to ``cfg``'s server."""
    run_dir = tmp_path / f"bt{fast}"
    record = {
        "task": "backtest",
        "job_id": f"bt-{fast}",
        "params": {"fast": fast, "slow": 50},
        "metrics": metrics,
    }
    results.write_result(run_dir, record, config_yaml=yaml.safe_dump(config))
    return log_result(run_dir, cfg)


def test_experiment_page_lists_the_runs(tmp_path: Path, mlflow_server: str) -> None:
    chromium()
    experiment = f"ui-{uuid.uuid4().hex[:8]}"
    cfg = TrackingConfig(uri=mlflow_server, experiment_name=experiment)
    names = []
    for fast in (5, 10):
        logged_backtest(tmp_path, cfg, fast, {"sharpe_ratio": fast / 10}, {"name": experiment})
        names.append(f"backtest fast={fast} slow=50")
    trials = pd.DataFrame(
        {"fast": [5, 10, 15], "slow": [50, 60, 70], "sharpe_ratio": [0.1, 0.9, 0.5]}
    )
    results.write_result(
        tmp_path / "search",
        {
            "task": "search",
            "job_id": "s",
            "params": {"fast": 10, "slow": 60},
            "metrics": {"sharpe_ratio": 0.9},
        },
        tables={"trials": trials},
        config_yaml=yaml.safe_dump(
            {"name": experiment, "search": {"space": {"fast": [5, 15], "slow": [50, 70]}}}
        ),
    )
    logged = log_result(tmp_path / "search", cfg)
    names.append("search fast=10 slow=60")

    text = rendered_text(
        f"{mlflow_server}/#/experiments/{logged.experiment_id}/runs", tmp_path / "profile"
    )
    assert experiment in text
    for name in names:
        assert name in text, f"{name!r} not rendered; page text: {text[:2000]}"
    assert "6 matching runs" in text  # three runs and the search's three nested trials


def screenshot(url: str, profile: Path, path: Path) -> Path:
    """A PNG of the page as a user sees it after its scripts ran."""
    subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={path}", url],
        capture_output=True,
        timeout=180,
        check=True,
    )
    return path


def test_experiment_opens_on_the_runs_table_with_metric_columns(
    tmp_path: Path, mlflow_server: str
) -> None:
    """The experiment's own page (no /runs in the URL) is the classic runs table, not
    MLflow 3's GenAI overview: run names and the metric columns are on screen."""
    chromium()
    from mlflow import MlflowClient

    experiment = f"table-{uuid.uuid4().hex[:8]}"
    cfg = TrackingConfig(uri=mlflow_server, experiment_name=experiment)
    strategy = {"_target_": "backtest.strategies.SmaCross"}
    for fast in (5, 10, 20):
        metrics = {"sharpe_ratio": fast / 10, "max_drawdown": 0.1}
        config = {"name": experiment, "strategy": strategy}
        logged = logged_backtest(tmp_path, cfg, fast, metrics, config)
    exp = MlflowClient(mlflow_server).get_experiment(logged.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"

    url = ui_url(mlflow_server, logged.experiment_id)  # the page our log line points at
    text = rendered_text(url, tmp_path / "profile")
    for fast in (5, 10, 20):
        assert f"backtest SmaCross fast={fast} slow=50" in text, text[:2000]
    assert "sharpe_ratio" in text and "max_drawdown" in text, text[:2000]
    assert "3 matching runs" in text
    png = screenshot(url, tmp_path / "profile2", tmp_path / "runs_table.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    keep = os.environ.get("BACKTEST_SCREENSHOT_DIR")
    if keep:  # CI keeps it as an artifact to look at
        shutil.copy(png, Path(keep) / "mlflow_runs_table.png")
