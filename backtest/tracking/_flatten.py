"""Turning a run directory's record into MLflow params, metrics and tags (no MLflow here).

MLflow keeps params as strings of at most 6,000 characters, metric and tag keys of
at most 250 characters made of letters, digits and ``_ - . / : `` and spaces. These
helpers produce exactly that, so one bad key never fails a whole batch.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
TAG_PREFIX = "backtest."
RUN_KEY_TAG = "backtest.run_key"

# Top-level record keys that are not sections of numbers (or are logged otherwise).
_NOT_SECTIONS = frozenset({"params", "metrics", "children"})
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-./: ]")
# Keys inside sections that hold inputs or parameter values, not outcomes.
_NOT_METRICS = frozenset(
    {
        "space",
        "params",
        "best_params",
        "chosen_params",
        "last_params",
        "jitter",
        "seed",
        "counts",
        "mode",
    }
)


def clean_key(key: str) -> str:
    """A valid MLflow key: unsupported characters become ``_``, at most 250 characters.

    >>> clean_key("montecarlo.total_return.p5%")
    'montecarlo.total_return.p5_'
    """
    return _BAD_KEY_CHARS.sub("_", str(key))[:MAX_KEY]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def param_value(value: Any) -> str:
    """A config value as MLflow shows it: strings as they are, the rest as compact JSON.

    >>> [param_value(v) for v in ("momentum", 20, 0.5, True, None, [5, 10])]
    ['momentum', '20', '0.5', 'true', 'null', '[5,10]']
    """
    text = (
        value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    )
    return _clip(text, MAX_PARAM_VALUE)


def tag_value(value: Any) -> str:
    """A tag value: a string of at most 8,000 characters."""
    return _clip(str(value), MAX_TAG_VALUE)


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """The resolved config as dotted keys -> string values (MLflow params).

    Nested mappings become dotted keys; lists and empty mappings stay one value.

    >>> flatten_config({"seed": 42, "strategy": {"fast": 10, "slow": 50}, "symbols": []})
    {'seed': '42', 'strategy.fast': '10', 'strategy.slow': '50', 'symbols': '[]'}
    """
    out: dict[str, str] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_config(value, prefix=f"{dotted}."))
        else:
            out[clean_key(dotted)] = param_value(value)
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(float(value)):
        return float(value)
    return None


def numeric_leaves(section: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, float]]:
    """Every finite number (or bool, as 0/1) inside nested mappings, with its dotted key.

    Lists, and inputs such as ``space``, ``best_params`` and ``seed``, are skipped:
    they stay in ``result.json``, which is logged as an artifact.

    >>> dict(numeric_leaves({"pbo": 0.25, "dsr": {"value": 0.9}, "n": [1, 2], "seed": 4},
    ...                     "overfitting."))
    {'overfitting.pbo': 0.25, 'overfitting.dsr.value': 0.9}
    """
    for key, value in section.items():
        dotted = f"{prefix}{key}"
        if key in _NOT_METRICS:
            continue
        if isinstance(value, Mapping):
            yield from numeric_leaves(value, f"{dotted}.")
        else:
            number = _number(value)
            if number is not None:
                yield clean_key(dotted), number


def record_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """The metrics of a run: headline metrics, objective, duration and every section's numbers.

    Headline metrics keep their names (``sharpe_ratio``); numbers in sections such as
    ``search``, ``walkforward``, ``overfitting`` and ``montecarlo`` are prefixed with
    the section (``montecarlo.total_return.p5``), so Monte Carlo percentiles and
    overfitting statistics are metrics of the run they analyse.

    >>> record_metrics({"metrics": {"sharpe_ratio": 1.2, "cagr": None}, "objective": 1.2,
    ...                 "overfitting": {"pbo": 0.1}, "seed": 42})
    {'sharpe_ratio': 1.2, 'objective': 1.2, 'overfitting.pbo': 0.1}
    """
    out: dict[str, float] = {}
    for key, value in (record.get("metrics") or {}).items():
        number = _number(value)
        if number is not None:
            out[clean_key(key)] = number
    objective = _number(record.get("objective"))
    if objective is not None:
        out["objective"] = objective
    started, ended = record.get("started_at"), record.get("ended_at")
    if started and ended:
        try:
            seconds = datetime.fromisoformat(ended) - datetime.fromisoformat(started)
            out["duration_s"] = seconds.total_seconds()
        except ValueError:
            pass
    for key, value in record.items():
        if key not in _NOT_SECTIONS and isinstance(value, Mapping):
            out.update(numeric_leaves(value, f"{key}."))
    return out


def run_params(config: Mapping[str, Any], selected: Mapping[str, Any]) -> dict[str, str]:
    """Params of a run: the flattened config plus the strategy parameters actually used.

    The used parameters (the best of a search, the configured ones of a backtest)
    are logged under their bare names (``fast``), so parents and their child trials
    share one column in the MLflow UI; a name that clashes with a config key is
    logged as ``selected.<name>``.

    >>> run_params({"seed": 1, "strategy": {"fast": 5}}, {"fast": 10})
    {'seed': '1', 'strategy.fast': '5', 'fast': '10'}
    """
    params = flatten_config(config)
    for key, value in selected.items():
        name = clean_key(key)
        if name in params:
            name = clean_key(f"selected.{key}")
        params[name] = param_value(value)
    return params


def run_key(record: Mapping[str, Any]) -> str:
    """The identity of one written result, stored as the ``backtest.run_key`` tag.

    The same result logged twice has the same key (so ``backtest.tracking._sync`` logs it once);
    the same config run again into another directory is another result with another key.

    >>> run_key({"job_id": "backtest-1", "config_hash": "ab", "started_at": "t0"})
    '9977301f560955655b32456e107195dc'
    """
    identity = {
        k: record.get(k)
        for k in ("job_id", "config_hash", "data_fingerprint", "started_at", "ended_at")
    }
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def iso_to_ms(text: str | None) -> int | None:
    """Milliseconds since the epoch of an ISO time (``None`` when absent or unparsable)."""
    if not text:
        return None
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        return None


MAX_RUN_NAME = 60


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return str(value)


def run_name(
    record: Mapping[str, Any], config: Mapping[str, Any], *, job: str | None = None
) -> str:
    """A short, readable MLflow run name: task, strategy, the parameters used (and job number).

    Runs of one sweep differ in their parameters or, failing that, in the sweep's job
    number, so their names differ; long names are cut at 60 characters.

    >>> run_name({"task": "search", "params": {"fast": 10, "slow": 60.0}},
    ...          {"strategy": {"_target_": "backtest.strategies.SmaCross"}}, job="3")
    'search SmaCross fast=10 slow=60 #3'
    """
    target = str((config.get("strategy") or {}).get("_target_") or "")
    strategy = target.rsplit(".", 1)[-1]
    params = " ".join(f"{k}={_short(v)}" for k, v in (record.get("params") or {}).items())
    name = " ".join(p for p in (str(record.get("task") or "run"), strategy, params) if p)
    if len(name) > MAX_RUN_NAME:
        name = name[: MAX_RUN_NAME - 1] + "…"
    return f"{name} #{job}" if job else name
