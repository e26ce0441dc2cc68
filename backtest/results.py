"""The run directory: the only module that knows result file names and layout.

A run directory holds::

    result.json        task, params, metrics, seed, config hash, data fingerprint,
                       package version, job id, timestamps (written last)
    config.yaml        the resolved config
    equity.parquet     returns and equity per bar
    trades.parquet     one row per trade
    costs.parquet      the engine's per-bar cost table (fees, slippage, fixed, borrow,
                       financing, cash_interest), in currency
    <name>.parquet     further tables (trials, folds, Monte Carlo paths summary)
    figures/*.png      pictures

Every file is written to a temporary name and renamed into place, and
``result.json`` is written last: a directory with a ``result.json`` is complete, so
a crash never leaves a half-written result that looks complete.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backtest.errors import ResultPathMissing

RESULT_FILE = "result.json"
CONFIG_FILE = "config.yaml"
EQUITY_FILE = "equity.parquet"
TRADES_FILE = "trades.parquet"
COSTS_FILE = "costs.parquet"
FIGURES_DIR = "figures"


@dataclass(frozen=True, slots=True)
class StoredResult:
    """A result read back from a run directory.

    Attributes:
        path: The run directory.
        record: The parsed ``result.json``.
        tables: Name -> lazily read Parquet table (``equity``, ``trades``, ...).
    """

    path: Path
    record: dict[str, Any]
    tables: dict[str, Path] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        """The headline metrics."""
        return dict(self.record.get("metrics", {}))

    def table(self, name: str) -> pd.DataFrame:
        """Read one Parquet table of the run (``equity``, ``trades``, ``trials``, ...).

        Raises:
            ResultPathMissing: the run has no such table.
        """
        if name not in self.tables:
            raise ResultPathMissing(self.path / f"{name}.parquet")
        return pd.read_parquet(self.tables[name])


def _jsonable(value: Any) -> Any:
    """Plain JSON values: NaN and inf become null, numpy scalars become Python ones."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode())  # mkstemp creates 0600; results are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, record: Mapping[str, Any]) -> None:
    """Atomically write a JSON document (NaN written as null)."""
    text = json.dumps(_jsonable(record), indent=2, sort_keys=False, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def write_table(run_dir: str | Path, name: str, table: pd.DataFrame | pd.Series) -> Path:
    """Atomically write one Parquet table ``<name>.parquet`` into the run directory."""
    run_dir = Path(run_dir)
    frame = table.to_frame() if isinstance(table, pd.Series) else table
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    path = run_dir / f"{name}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        frame.to_parquet(tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def figures_dir(run_dir: str | Path) -> Path:
    """The folder for PNG figures of a run (created)."""
    path = Path(run_dir) / FIGURES_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_result(
    run_dir: str | Path,
    record: Mapping[str, Any],
    *,
    tables: Mapping[str, pd.DataFrame | pd.Series] | None = None,
    config_yaml: str | None = None,
) -> Path:
    """Write a complete result: tables and config first, ``result.json`` last.

    Args:
        run_dir: The run directory (created).
        record: The ``result.json`` content: task, params, metrics, seed, config_hash,
            data_fingerprint, version, ...
        tables: Name -> table, written as ``<name>.parquet``.
        config_yaml: The resolved config as YAML.

    Returns:
        The path of ``result.json``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, table in (tables or {}).items():
        write_table(run_dir, name, table)
    if config_yaml is not None:
        atomic_write_bytes(run_dir / CONFIG_FILE, config_yaml.encode())
    path = run_dir / RESULT_FILE
    write_json(path, {**record, "tables": sorted((tables or {}).keys())})
    return path


def has_result(run_dir: str | Path) -> bool:
    """Whether a complete result exists in ``run_dir``."""
    return (Path(run_dir) / RESULT_FILE).is_file()


def load_result(path: str | Path, *, job_id: str | None = None) -> StoredResult:
    """Read a result back from its run directory (or its ``result.json``).

    Raises:
        ResultPathMissing: nothing complete at ``path``; the error names the path.
    """
    path = Path(path)
    run_dir = path.parent if path.name == RESULT_FILE else path
    file = run_dir / RESULT_FILE
    if not file.is_file():
        raise ResultPathMissing(run_dir, job_id=job_id)
    record = json.loads(file.read_text())
    tables = {p.stem: p for p in sorted(run_dir.glob("*.parquet"))}
    return StoredResult(run_dir, record, tables)


# MLflow's artifact stores hold copies of result.json; they are mirrors, not runs.
_NOT_RUNS = ("mlartifacts", "mlruns")


def find_results(root: str | Path) -> list[Path]:
    """Every complete run directory under ``root`` (sorted), skipping MLflow artifact copies."""
    root = Path(root)
    return sorted(
        p.parent
        for p in root.rglob(RESULT_FILE)
        if not any(part in _NOT_RUNS for part in p.relative_to(root).parts)
    )
