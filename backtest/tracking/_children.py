"""Nested runs: which trials or folds become MLflow child runs.

A search keeps its best ``max_child_runs`` trials as children (ranked by the
search metric in its direction; trials without a finite score rank last) and its
full trials table as an artifact, so a 10,000-trial search never creates 10,000
runs. A walk-forward keeps one child per fold, in fold order.

Children come from the run directory, so a run mirrored right away and one mirrored
later by ``python -m backtest.sync`` look the same: the ``result.json`` ``children``
section when it has one, else the ``folds`` table of a walk-forward (fold windows
and chosen parameters as params, scores as metrics) or the ``trials`` table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from backtest.results import StoredResult
from backtest.tracking._flatten import clean_key
from backtest.tracking._ui import VIEW_METRICS, view_rounded

# Columns that number a row rather than describe a parameter or an outcome.
_ROW_IDS = ("trial", "number", "trial_number", "fold")
_BOOKKEEPING = frozenset({*_ROW_IDS, "seed", "trial_seed", "status", "error"})


def _score(child: Mapping[str, Any], metric: str) -> float | None:
    value = (child.get("metrics") or {}).get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def select_children(
    children: Sequence[Mapping[str, Any]],
    *,
    task: str,
    metric: str,
    maximize: bool,
    cap: int,
) -> list[Mapping[str, Any]]:
    """The children to log: every fold of a walk-forward, else the best ``cap`` by ``metric``.

    >>> trials = [{"name": f"t{i}", "metrics": {"sharpe_ratio": s}}
    ...           for i, s in enumerate([0.5, float("nan"), 1.5, 1.0])]
    >>> [c["name"] for c in select_children(trials, task="search", metric="sharpe_ratio",
    ...                                     maximize=True, cap=2)]
    ['t2', 't3']
    """
    if task == "walkforward":
        return list(children)
    scored = [(s, i, c) for i, c in enumerate(children) if (s := _score(c, metric)) is not None]
    unscored = [c for c in children if _score(c, metric) is None]
    scored.sort(key=lambda item: (-item[0] if maximize else item[0], item[1]))
    return [c for _, _, c in scored][: max(cap, 0)] + unscored[: max(cap - len(scored), 0)]


def _plain(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat() if value == value.normalize() else value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return value


def children_from_table(
    table: pd.DataFrame, *, kind: str, param_columns: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """One child per row: ``param_columns`` and non-numeric columns are params, numbers metrics.

    >>> t = pd.DataFrame({"trial": [0, 1], "fast": [5, 10], "sharpe_ratio": [0.3, 0.7]})
    >>> children_from_table(t, kind="trial", param_columns=["fast"])[1]
    {'name': 'trial 1', 'params': {'fast': 10}, 'metrics': {'sharpe_ratio': 0.7}}
    """
    id_column = next((c for c in _ROW_IDS if c in table.columns), None)
    children: list[dict[str, Any]] = []
    for position, row in enumerate(table.to_dict(orient="records")):
        params: dict[str, Any] = {}
        metrics: dict[str, float] = {}
        for column, value in row.items():
            name = str(column)
            if name in _BOOKKEEPING:
                continue
            value = _plain(value)
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if name in param_columns or not numeric:
                if value is not None and not (isinstance(value, float) and math.isnan(value)):
                    params[name] = value
            else:
                metrics[name] = float(value)
        number = _plain(row[id_column]) if id_column else position
        children.append({"name": f"{kind} {number}", "params": params, "metrics": metrics})
    return children


def stored_children(stored: StoredResult, config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Children rebuilt from a run directory (see the module docstring)."""
    record = stored.record
    if isinstance(record.get("children"), list):
        return [dict(c) for c in record["children"]]
    strategy = config.get("strategy") or {}
    space = (config.get("search") or {}).get("space") or {}
    param_columns = [str(k) for k in (*strategy, *space) if k != "_target_"]
    if record.get("task") == "walkforward" and "folds" in stored.tables:
        return children_from_table(stored.table("folds"), kind="fold", param_columns=param_columns)
    if "trials" in stored.tables:
        return children_from_table(
            stored.table("trials"), kind="trial", param_columns=param_columns
        )
    return []


def child_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """A child run's metrics, the runs table's columns filled and rounded.

    A fold's out-of-sample numbers (``oos_sharpe_ratio``) are its result on the window it
    was tested on, so they also fill the headline columns (``sharpe_ratio``) the parent
    shows; the view's columns are rounded (:func:`backtest.tracking._ui.view_rounded`).

    >>> child_metrics({"is_score": 1.5, "oos_sharpe_ratio": 0.123456, "flag": True})
    {'is_score': 1.5, 'oos_sharpe_ratio': 0.123456, 'sharpe_ratio': 0.1235}
    """
    out = {
        clean_key(k): float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    for name in VIEW_METRICS:
        if name not in out and f"oos_{name}" in out:
            out[name] = out[f"oos_{name}"]
    return view_rounded(out)
