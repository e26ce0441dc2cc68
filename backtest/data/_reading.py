"""Reading data files: the folders a queue worker may read from, and one table reader.

Every data file (prices, a membership table, corporate actions, a benchmark) is read
through here, so a worker's ``--data-root`` confinement and its rule of never quoting
file content hold for all of them. Imports nothing else of :mod:`backtest.data`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backtest.errors import ConfigError, DataValidationError

# Set on queue workers (backtest.queue._policy): price files are read only under these
# folders, and errors about data never quote what a file holds.
_READ_ROOTS: tuple[Path, ...] | None = None


def confine_reads(roots: Sequence[Path] | None) -> tuple[Path, ...] | None:
    """Read price files only under ``roots`` from now on (``None`` lifts it).

    Called by a queue worker with its ``--data-root`` folders: a job's ``data.path``
    outside them is refused before the file is looked at (even whether it exists), and
    no error about a file quotes its content (a header, a value), so a file read by
    mistake or by malice tells the job's writer nothing.

    Returns:
        The previous roots, to restore.
    """
    global _READ_ROOTS
    previous = _READ_ROOTS
    _READ_ROOTS = None if roots is None else tuple(Path(r).resolve() for r in roots)
    return previous


def check_readable(path: Path) -> None:
    """Refuse a price file outside the read roots (when confined); names the path as given.

    Raises:
        ConfigError: the path (symlinks followed) lies outside every root.
    """
    if _READ_ROOTS is None:
        return
    resolved = Path(os.path.abspath(path)).resolve()
    if not any(resolved == r or resolved.is_relative_to(r) for r in _READ_ROOTS):
        raise ConfigError(
            f"data.path {str(path)!r} is outside the folders this worker reads data from; "
            "put the file under one of them, or start the worker with --data-root <its folder>",
            key="data.path",
        )


def shown(value: object) -> str:
    """``repr(value)`` for an error message, or a placeholder where file content is kept back."""
    return repr(value) if _READ_ROOTS is None else "(content not shown on a worker)"


def as_numbers(
    values: pd.Series,
    where: str,
    what: str,
    *,
    dated: bool = True,
    blank_ok: bool = False,
    check: bool = True,
    hint: str = "",
    **fields: Any,
) -> pd.Series:
    """``values`` as float64; a cell of text (not a number) is an error naming ``where``.

    The error counts such cells and shows the first (its timestamp too where the index is
    ``dated``), adds ``hint`` and carries ``fields`` (``column``, ``symbol``). An empty
    cell is NaN, not text; with ``blank_ok`` so is a cell of blanks; with ``check=False``
    text becomes NaN too.
    """
    numbers = pd.to_numeric(values, errors="coerce")
    text = numbers.isna() & values.notna()
    if blank_ok:
        text &= values.astype(str).str.strip() != ""
    hits = np.flatnonzero(text.to_numpy(dtype=bool))
    if check and hits.size:
        n, first = int(hits.size), values.index[hits[0]]
        when = {"timestamp": first} if dated else {}
        raise DataValidationError(
            f"{where}: {n} non-numeric {what}, first{f' at {first}' if dated else ''} "
            f"({shown(values.iloc[hits[0]])}){f'; {hint}' if hint else ''}",
            count=n,
            **when,
            **fields,
        )
    return numbers.astype(np.float64)


def read_table(path: Path, file_format: str | None) -> pd.DataFrame:
    """A CSV or Parquet table (by ``file_format`` or the suffix), under the read roots only."""
    check_readable(path)  # on a worker: before even looking whether it exists
    if not path.is_file():
        raise DataValidationError(f"price file not found: {str(path)!r}")
    if file_format is None:
        file_format = "parquet" if path.suffix.lower() in {".parquet", ".pq"} else "csv"
    if file_format not in {"csv", "parquet"}:
        raise ConfigError(
            f"unknown file format {file_format!r} (csv or parquet)", key="data.source"
        )
    try:
        if file_format == "parquet":
            frame = pd.read_parquet(path)
            if not isinstance(frame.index, pd.RangeIndex):
                frame = frame.reset_index()
            return frame
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        why = str(exc) if confined() is None else type(exc).__name__
        raise DataValidationError(
            f"cannot read price file {str(path)!r} as {file_format}: {why}"
        ) from exc


def confined() -> tuple[Path, ...] | None:
    """The folders reads are confined to on a queue worker, or ``None`` (unconfined)."""
    return _READ_ROOTS
