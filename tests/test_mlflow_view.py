"""The MLflow view our links open: children nested, headline metrics first and rounded.

MLflow 3.17's runs table nests child runs under their parent only while it is sorted
by start time with no filter, orders metric columns by name unless told, and shows a
metric as logged. The fast tests read what was logged with MLflow's client; the slow
one opens the printed link in a real headless Chromium (1400 x 900) against a real
``mlflow server`` and reads the rendered table.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from backtest import results
from backtest.config import TrackingConfig
from backtest.tracking import log_result
from backtest.tracking._ui import RUNS_VIEW, ui_url

SHARPE = 0.8123456789  # the parent's, as a run computes it: many digits
N_FOLDS = 32


def rounded(value: float) -> float:
    """Four significant digits, written independently of backtest.tracking."""
    if value == 0:
        return 0.0
    digits = 4 - int(np.floor(np.log10(abs(value)))) - 1
    return round(value, digits)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


def client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def walkforward_run(root: Path, experiment: str) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(7)
    folds = pd.DataFrame(
        {
            "fold": range(N_FOLDS),
            "test_start": pd.date_range("2000-01-01", periods=N_FOLDS, freq="QS"),
            "lookback": rng.integers(20, 200, N_FOLDS),
            "is_score": rng.normal(1.0, 0.3, N_FOLDS),
            "oos_sharpe_ratio": rng.normal(0.5, 0.4, N_FOLDS),
            "oos_total_return": rng.normal(0.02, 0.05, N_FOLDS),
            "oos_max_drawdown": rng.uniform(0.02, 0.2, N_FOLDS),
        }
    )
    record = {
        "task": "walkforward",
        "job_id": uuid.uuid4().hex[:8],
        "name": experiment,
        "params": {"lookback": 60},
        "metrics": {
            "sharpe_ratio": SHARPE,
            "total_return": 0.3141592653,
            "cagr": 0.0712345678,
            "max_drawdown": 0.2718281828,
        },
        "objective": SHARPE,
        "walkforward": {"n_folds": N_FOLDS, "efficiency": 0.4242424242},
    }
    config = {
        "name": experiment,
        "strategy": {"_target_": "backtest.strategies.Momentum", "lookback": 60},
        "search": {"metric": "sharpe_ratio", "space": {"lookback": [20, 200]}},
    }
    run_dir = root / "wf"
    results.write_result(
        run_dir, record, tables={"folds": folds}, config_yaml=yaml.safe_dump(config)
    )
    return run_dir, folds


def logged_walkforward(root: Path, uri: str, experiment: str) -> tuple[Any, pd.DataFrame]:
    """:func:`walkforward_run` logged to ``uri``: the logged run and the folds."""
    run_dir, folds = walkforward_run(root, experiment)
    return log_result(run_dir, TrackingConfig(uri=uri, experiment_name=experiment)), folds


def test_folds_are_children_with_the_headline_columns_filled_and_rounded(
    tmp_path: Path, store: str
) -> None:
    experiment = f"view-{uuid.uuid4().hex[:8]}"
    run_dir, folds = walkforward_run(tmp_path, experiment)
    logged = log_result(run_dir, TrackingConfig(uri=store, experiment_name=experiment))
    c = client(store)
    parent = c.get_run(logged.run_id)
    assert parent.data.metrics["sharpe_ratio"] == 0.8123 == rounded(SHARPE)
    assert parent.data.metrics["cagr"] == 0.07123 and parent.data.metrics["objective"] == 0.8123
    assert parent.data.metrics["walkforward.efficiency"] == 0.4242424242  # not a column: exact
    stored = json.loads((run_dir / results.RESULT_FILE).read_text())
    assert stored["metrics"]["sharpe_ratio"] == SHARPE  # the record keeps every digit
    kids = c.search_runs(
        [logged.experiment_id],
        f"tags.`mlflow.parentRunId` = '{logged.run_id}'",
        order_by=["attributes.start_time DESC"],  # the view's order
        max_results=100,
    )
    assert [k.info.run_name for k in kids] == [f"fold {i}" for i in range(N_FOLDS)]
    for kid, row in zip(kids, folds.itertuples(), strict=True):
        m = kid.data.metrics
        assert m["sharpe_ratio"] == rounded(row.oos_sharpe_ratio)  # the fold's own result
        assert m["total_return"] == rounded(row.oos_total_return)
        assert m["max_drawdown"] == rounded(row.oos_max_drawdown)
        assert m["oos_sharpe_ratio"] == row.oos_sharpe_ratio and m["is_score"] == row.is_score
        assert "cagr" not in m  # no out-of-sample CAGR in this table: nothing made up
        assert kid.info.start_time >= parent.info.start_time


def test_the_saved_view_nests_children_and_leads_with_the_headline_metrics(
    tmp_path: Path, store: str
) -> None:
    experiment = f"old-{uuid.uuid4().hex[:8]}"
    c = client(store)
    key = next(iter(RUNS_VIEW))
    old = json.dumps({"orderByKey": "metrics.`sharpe_ratio`", "orderByAsc": False})
    exp_id = c.create_experiment(experiment, tags={key: old})  # as an older version made it
    logged_walkforward(tmp_path, store, experiment)
    view = json.loads(c.get_experiment(exp_id).tags[key])
    assert view["orderByKey"] == "attributes.start_time" and not view.get("searchFilter")
    metrics = ["sharpe_ratio", "total_return", "cagr", "max_drawdown", "objective"]
    assert view["selectedColumns"] == [f"metrics.`{m}`" for m in metrics]
    assert view["columnOrder"][1:] == view["selectedColumns"]
    assert view["columnOrder"][0] == "attributes.`Run Name`"


# --- the page in a real browser -------------------------------------------------------


def _rows(dom: str) -> dict[str, str]:
    """The HTML of each row of the runs table's scrolling part, by run id."""
    starts = [
        (m.start(), m.group(1))
        for m in re.finditer(r'<div[^>]*role="row"[^>]*row-id="([0-9a-f]{32})"', dom)
    ]
    rows: dict[str, str] = {}
    for (start, run_id), (end, _) in zip(starts, [*starts[1:], (len(dom), "")], strict=True):
        chunk = dom[start:end]
        if 'col-id="metrics.`sharpe_ratio`"' in chunk:
            rows[run_id] = chunk
        elif 'col-id="attributes.`Run Name`"' in chunk:
            rows[f"name:{run_id}"] = chunk
    return rows


def _cell(row: str, col_id: str) -> str:
    found = re.search(
        rf'col-id="{re.escape(col_id)}"[^>]*>.*?class="ag-cell-value">(.*?)</span>', row, re.S
    )
    assert found, f"no {col_id} cell in {row[:500]}"
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


@pytest.mark.slow
def test_the_linked_view_nests_folds_and_trials_and_shows_sharpe_at_1400px(
    tmp_path: Path, mlflow_server: str
) -> None:
    from test_mlflow_ui import CHROMIUM_FLAGS, dumped_dom, screenshot

    assert "--window-size=1400,900" in CHROMIUM_FLAGS
    experiment = f"nest-{uuid.uuid4().hex[:8]}"
    cfg = TrackingConfig(uri=mlflow_server, experiment_name=experiment)
    wf, _ = logged_walkforward(tmp_path, mlflow_server, experiment)
    trials = pd.DataFrame(
        {"trial": range(12), "fast": range(2, 14), "slow": range(60, 72),
         "sharpe_ratio": np.linspace(-0.3, 1.4321987, 12)}
    )  # fmt: skip
    results.write_result(
        tmp_path / "search",
        {"task": "search", "job_id": "s", "params": {"fast": 13, "slow": 71},
         "metrics": {"sharpe_ratio": 1.4321987}},
        tables={"trials": trials},
        config_yaml=yaml.safe_dump(
            {"name": experiment, "search": {"space": {"fast": [2, 14], "slow": [60, 72]}}}
        ),
    )  # fmt: skip
    search = log_result(tmp_path / "search", cfg)
    plain = []
    for fast in (5, 10):
        results.write_result(
            tmp_path / f"bt{fast}",
            {"task": "backtest", "job_id": f"bt{fast}", "params": {"fast": fast, "slow": 50},
             "metrics": {"sharpe_ratio": fast / 7}},
            config_yaml=yaml.safe_dump({"name": experiment}),
        )  # fmt: skip
        plain.append(log_result(tmp_path / f"bt{fast}", cfg).run_id)

    url = ui_url(mlflow_server, wf.experiment_id)  # the link a run prints
    dom = dumped_dom(url, tmp_path / "p")
    rows = _rows(dom)
    top = {k for k in rows if not k.startswith("name:")}
    # 4 top-level rows of the 46 runs: 32 folds and 10 trials nested under their parents
    assert top == {wf.run_id, search.run_id, *plain}, sorted(rows)
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text))
    assert "46 matching runs" in text  # 4 runs, 32 folds, the best 10 trials
    assert "fold 0" not in text and "trial 11" not in text  # one click away, not flat
    for parent in (wf.run_id, search.run_id):  # an expander on each parent, none elsewhere
        assert "<button" in rows[f"name:{parent}"]
    assert all("<button" not in rows[f"name:{p}"] for p in plain)
    # the parent row shows its Sharpe, rounded; the search's best trial too
    assert _cell(rows[wf.run_id], "metrics.`sharpe_ratio`") == "0.8123"
    assert _cell(rows[wf.run_id], "metrics.`total_return`") == "0.3142"
    assert _cell(rows[search.run_id], "metrics.`sharpe_ratio`") == "1.432"
    # Sharpe is the first column after the pinned name and date (493 px): on screen at
    # 1400 px beside MLflow's side bar and its Assistant panel (see the screenshot)
    header = re.search(r'role="columnheader"[^>]*col-id="metrics.`sharpe_ratio`"[^>]*>', dom)
    assert header and 'style="left: 0px; width: 100px;"' in header.group(0)
    pinned = re.search(r'ag-pinned-left-cols-container"[^>]*width: (\d+)px', dom)
    assert pinned and int(pinned.group(1)) <= 520
    png = screenshot(url, tmp_path / "p2", tmp_path / "nested_view.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    keep = os.environ.get("BACKTEST_SCREENSHOT_DIR")
    if keep:
        shutil.copy(png, Path(keep) / "mlflow_nested_view.png")


# Rows of the runs table as the page shows them: name, and the Sharpe cell of the same row.
_ROWS_JS = """(() => {
  const names = {}, sharpe = {};
  document.querySelectorAll('[role=row][row-index]').forEach(row => {
    const i = row.getAttribute('row-index');
    const name = row.querySelector('[col-id="attributes.`Run Name`"] a');
    const cell = row.querySelector('[col-id="metrics.`sharpe_ratio`"]');
    if (name) names[i] = name.textContent.trim();
    if (cell) sharpe[i] = cell.textContent.trim();
  });
  return Object.keys(names).sort((a, b) => a - b).map(i => [names[i], sharpe[i] || null]);
})()"""


@pytest.mark.slow
def test_expanding_the_walkforward_row_lists_its_folds_in_order_with_their_sharpe(
    tmp_path: Path, mlflow_server: str
) -> None:
    """Acting as a user: open the printed link at 1400 x 900, click the parent's expander."""
    from tests.devtools import Browser, chromium

    experiment = f"expand-{uuid.uuid4().hex[:8]}"
    logged, folds = logged_walkforward(tmp_path, mlflow_server, experiment)
    name = "walkforward Momentum lookback=60"
    with Browser(chromium(), tmp_path / "profile") as browser:
        browser.open(ui_url(mlflow_server, logged.experiment_id))
        browser.wait_for(f"document.body.innerText.includes({json.dumps(name)})")
        assert browser.evaluate(_ROWS_JS) == [[name, "0.8123"]]  # one row: folds nested
        browser.evaluate(
            "[...document.querySelectorAll('[role=row]')].find(r => r.innerText.includes("
            f"{json.dumps(name)}) && r.querySelector('button')).querySelector('button').click()"
        )
        browser.wait_for("document.body.innerText.includes('fold 7')")
        shown = browser.evaluate(_ROWS_JS)
        png = browser.screenshot(tmp_path / "expanded.png")
    assert shown[0] == [name, "0.8123"]
    # the folds under it, in fold order, each with its out-of-sample Sharpe, rounded (the
    # table draws the rows that fit in its viewport: at least the first ten)
    folds_shown = shown[1:]
    assert len(folds_shown) >= 10
    for i, (fold, sharpe) in enumerate(folds_shown):
        assert fold == f"fold {i}"
        assert float(sharpe) == rounded(folds["oos_sharpe_ratio"][i])
    assert png.stat().st_size > 20_000
    keep = os.environ.get("BACKTEST_SCREENSHOT_DIR")
    if keep:
        shutil.copy(png, Path(keep) / "mlflow_expanded_walkforward.png")


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_a_sweeps_row_shows_its_best_job_so_far(tmp_path: Path, store: str, direction: str) -> None:
    """Jobs logged in any order: the sweep's objective is the best of those logged."""
    experiment = f"sweep-{direction}-{uuid.uuid4().hex[:6]}"
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra:\n  overrides:\n    task: [x=1,2,3]\n")
    objectives = {2: 0.9111111, 0: 0.5123456, 1: 1.2345678}  # the order they finish in
    cfg = TrackingConfig(uri=store, experiment_name=experiment)
    c = client(store)
    shown = []
    for job, value in objectives.items():
        results.write_result(
            sweep / str(job),
            {"task": "backtest", "job_id": f"j{job}", "metrics": {"sharpe_ratio": value},
             "objective": value},
            config_yaml=yaml.safe_dump(
                {"name": experiment, "search": {"metric": "sharpe_ratio", "direction": direction}}
            ),
        )  # fmt: skip
        logged = log_result(sweep / str(job), cfg)
        shown.append(c.get_run(logged.parent_run_id).data.metrics["objective"])
    pick = max if direction == "maximize" else min
    seen = list(objectives.values())
    assert shown == [rounded(pick(seen[: i + 1])) for i in range(3)]
    history = c.get_metric_history(logged.parent_run_id, "job_objective")
    assert sorted((m.step, m.value) for m in history) == sorted(
        (job, rounded(v)) for job, v in objectives.items()
    )
