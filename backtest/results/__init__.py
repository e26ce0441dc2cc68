"""The run directory: the only module that knows result file names and layout.

A run directory holds::

    result.json        task, params, metrics, seed, config hash, data fingerprint,
                       package version, job id, timestamps (written last)
    config.yaml        the resolved config
    equity.parquet     returns and equity per bar
    trades.parquet     one row per trade
    prices.parquet     the closes traded (thinned to at most 5,000 bars and 20 assets),
                       for the report's price panel
    costs.parquet      the engine's per-bar cost table (fees, slippage, fixed, borrow,
                       financing, cash_interest), in currency
    <name>.parquet     further tables (trials, folds, Monte Carlo paths summary)
    figures/*.png      pictures
    report.html        the self-contained HTML report (written after result.json)

Every file is written to a temporary name and renamed into place, and
``result.json`` is written last: a directory with a ``result.json`` is complete, so
a crash never leaves a half-written result that looks complete.

What disks and people do to a folder afterwards is checked on reading:
:func:`load_result` raises :class:`~backtest.errors.ResultCorrupt` (naming the folder
and the file) for a ``result.json`` that is not a JSON object, a Parquet table whose
footer is cut or garbled, or any entry that is a link leading out of the run folder
(links out are never followed, read or uploaded). Readers of many folders (the sweep
summary, ``backtest report``, ``backtest sync``) skip such a folder and go on.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backtest.errors import BacktestError, DiskFull, ResultCorrupt, ResultPathMissing

RESULT_FILE = "result.json"
CONFIG_FILE = "config.yaml"
EQUITY_FILE = "equity.parquet"
TRADES_FILE = "trades.parquet"
COSTS_FILE = "costs.parquet"
FIGURES_DIR = "figures"
REPORT_FILE = "report.html"
PRICES_TABLE = "prices"
PRICES_MAX_BARS = 5000
PRICES_MAX_ASSETS = 20
LOCK_FILE = ".lock"
FAILURE_FILE = "failure.json"  # why a sweep job failed (it has no result.json)
CLAIM_FILE = ".claim"
# What a run or sweep leaves in its directory: a folder holding one of these is in use.
_OUTPUT_MARKERS = (CLAIM_FILE, RESULT_FILE, ".hydra", "multirun.yaml")


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
            ResultCorrupt: the table cannot be read (cut short, garbled, a link out).
        """
        if name not in self.tables:
            raise ResultPathMissing(self.path / f"{name}.parquet")
        path = self.tables[name]
        _check_link(self.path, path)  # replaced by a link after load_result
        try:
            return pd.read_parquet(path)
        except FileNotFoundError as exc:  # removed after load_result
            raise ResultPathMissing(path) from exc
        except Exception as exc:  # pyarrow's errors: ArrowInvalid, OSError, ...
            raise ResultCorrupt(self.path, path.name, _unreadable(exc)) from exc


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


_FULL = (errno.ENOSPC, errno.EDQUOT)  # no space left, over quota


def full_disk(exc: BaseException, path: Path, needed: int | None = None) -> DiskFull | None:
    """``exc`` as a :class:`~backtest.errors.DiskFull` naming ``path``, if it says the disk is full.

    Args:
        exc: What a write raised.
        path: The file written (or the folder, for a write whose file is unknown).
        needed: Bytes the write needed, when known.
    """
    if isinstance(exc, DiskFull):
        return exc
    if not isinstance(exc, OSError) or exc.errno not in _FULL:
        return None
    folder, file = (path, "a file") if path.is_dir() else (path.parent, path.name)
    try:
        free: int | None = shutil.disk_usage(folder).free
    except OSError:
        free = None
    return DiskFull(folder, file, needed=needed, free=free)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    Raises:
        DiskFull: the disk is full: names the folder, the file and its size; the
            temporary file is removed, ``path`` is left as it was.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        if (full := full_disk(exc, path, len(data))) is not None:
            raise full from exc
        raise
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode())  # mkstemp creates 0600; results are for sharing
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if (full := full_disk(exc, path, len(data))) is not None:
            raise full from exc
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
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        frame.to_parquet(tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if (full := full_disk(exc, path, _parquet_size(frame))) is not None:
            raise full from exc
        raise
    return path


def _parquet_size(frame: pd.DataFrame) -> int | None:
    """Bytes ``frame`` takes as Parquet (rendered in memory; only when a write failed)."""
    import io

    try:
        buffer = io.BytesIO()
        frame.to_parquet(buffer)
        return len(buffer.getvalue())
    except Exception:
        return None


def figures_dir(run_dir: str | Path) -> Path:
    """The folder for PNG figures of a run (created)."""
    path = Path(run_dir) / FIGURES_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def price_table(prices: pd.DataFrame, trades: pd.DataFrame | None = None) -> pd.DataFrame:
    """The closes stored beside a result for the report's price panel (thinned).

    At most ``PRICES_MAX_ASSETS`` assets (those traded first, most trades first) and
    ``PRICES_MAX_BARS`` bars (every k-th bar, the last one kept), so a long or wide
    price history never bloats the run directory.
    """
    columns = [str(c) for c in prices.columns]
    if trades is not None and len(trades) and "asset" in trades.columns:
        counts = trades["asset"].astype(str).value_counts()
        traded = [c for c in counts.index if c in columns]
        columns = traded + [c for c in columns if c not in traded]
    frame = prices.copy()
    frame.columns = [str(c) for c in frame.columns]
    frame = frame[columns[:PRICES_MAX_ASSETS]]
    if len(frame) > PRICES_MAX_BARS:
        step = math.ceil(len(frame) / PRICES_MAX_BARS)
        keep = np.unique(np.r_[np.arange(0, len(frame), step), len(frame) - 1])
        frame = frame.iloc[keep]
    return frame


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

    Besides ``result.json`` (parsed), every Parquet table's footer is read (a few
    hundred bytes each), so a table cut short or garbled is found here, not halfway
    through a report or an upload; a table damaged inside a valid footer is found by
    :meth:`StoredResult.table`.

    Raises:
        ResultPathMissing: nothing complete at ``path``; the error names the path.
        ResultCorrupt: a file of the run cannot be read or is a link leading out of
            the run directory; names the directory and the file.
    """
    path = Path(path)
    run_dir = path.parent if path.name == RESULT_FILE else path
    file = run_dir / RESULT_FILE
    if not file.is_file() and not file.is_symlink():
        raise ResultPathMissing(run_dir, job_id=job_id)
    _check_links(run_dir)
    if not file.is_file():  # a dangling link inside the folder
        raise ResultPathMissing(run_dir, job_id=job_id)
    record = _read_record(run_dir, file)
    tables = {p.stem: p for p in sorted(run_dir.glob("*.parquet"))}
    listed = record.get("tables") or []
    missing = [name for name in listed if isinstance(name, str) and name not in tables]
    if missing:  # result.json lists the tables written before it; one has gone
        raise ResultPathMissing(run_dir / f"{missing[0]}.parquet", job_id=job_id)
    for table in tables.values():
        _check_parquet(run_dir, table)
    return StoredResult(run_dir, record, tables)


def _read_record(run_dir: Path, file: Path) -> dict[str, Any]:
    """The parsed ``result.json``: a JSON object, else :class:`ResultCorrupt`."""
    try:
        record = json.loads(file.read_bytes())
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        size = file.stat().st_size
        raise ResultCorrupt(
            run_dir, RESULT_FILE, f"is not valid JSON ({size} bytes; cut short?): {exc}"
        ) from exc
    if not isinstance(record, dict):
        raise ResultCorrupt(
            run_dir, RESULT_FILE, f"holds a JSON {type(record).__name__}, not an object"
        )
    return record


def _outside(run_dir: Path, entry: Path) -> Path | None:
    """Where ``entry`` leads when it is a link out of ``run_dir`` (or a loop), else ``None``."""
    if not entry.is_symlink():
        return None
    try:
        target = entry.resolve(strict=False)
    except (OSError, RuntimeError):  # a link loop
        return entry
    return None if target.is_relative_to(run_dir.resolve()) else target


def _check_link(run_dir: Path, entry: Path) -> None:
    target = _outside(run_dir, entry)
    if target is not None:
        raise ResultCorrupt(
            run_dir,
            entry.relative_to(run_dir).as_posix(),
            f"is a link to {str(target)!r}, outside the run folder (links out of a run "
            "folder are never read or uploaded)",
        )


def _check_links(run_dir: Path) -> None:
    """No entry of the run folder, nor of its ``figures/``, may lead out of it."""
    entries = list(run_dir.iterdir())
    figures = run_dir / FIGURES_DIR
    if figures.is_dir() and not figures.is_symlink():
        entries += list(figures.rglob("*"))
    for entry in entries:
        _check_link(run_dir, entry)


def _unreadable(exc: BaseException) -> str:
    first = (str(exc).splitlines() or [""])[0].split(". ")[0][:200]
    return f"cannot be read as Parquet (cut short or garbled): {type(exc).__name__}: {first}"


def _check_parquet(run_dir: Path, table: Path) -> None:
    """Read the table's footer (its schema and row groups): cheap, and finds a cut file."""
    import pyarrow.parquet as pq

    try:
        pq.read_metadata(table)
    except FileNotFoundError as exc:  # removed since the listing
        raise ResultPathMissing(table) from exc
    except Exception as exc:  # ArrowInvalid ("Parquet magic bytes not found"), OSError
        raise ResultCorrupt(run_dir, table.name, _unreadable(exc)) from exc


def incomplete_reason(run_dir: str | Path) -> str | None:
    """Why ``run_dir`` holds a ``result.json`` but no complete result, else ``None``.

    A table listed in ``result.json`` that is missing, cut short or garbled makes a
    result incomplete: it must be computed again, never served with empty trades. A
    ``result.json`` that cannot be read, or a link out of the folder, is not
    (:class:`ResultCorrupt` is raised): nothing says the folder belongs to the job.
    """
    try:
        load_result(run_dir)
    except ResultPathMissing as exc:
        return f"{exc.path} is missing"
    except ResultCorrupt as exc:
        if exc.file == RESULT_FILE or "outside the run folder" in exc.reason:
            raise
        return str(exc)
    return None


class DirectoryClaimed(BacktestError, FileExistsError):
    """An output directory already belongs to another run; nothing was written into it.

    Attributes:
        path: The directory.
        owner: What its claim file says (who claimed it, when), when readable.
    """

    def __init__(self, path: Path, owner: str, key: str) -> None:
        super().__init__(
            f"output directory {str(path)!r} already holds another run ({owner}); "
            f"choose a new one ({key}=...) or leave {key} at its default, which is unique"
        )
        self.path = path
        self.owner = owner
        self.key = key


def claim_dir(path: str | Path, *, key: str = "hydra.run.dir", note: str = "") -> Path:
    """Claim ``path`` for one run before anything is written into it.

    The claim is ``<path>/.claim``, created with ``O_CREAT | O_EXCL``: of several
    processes claiming one directory at once exactly one succeeds, and a directory
    that already holds a run (a claim, a ``result.json``, Hydra's ``.hydra/`` or
    ``multirun.yaml``) is refused, so two runs never write into one directory.

    Args:
        path: The run or sweep directory (created when missing).
        key: The setting that chose it, named in the error.
        note: Who claims it (written into the claim file).

    Returns:
        The claimed directory.

    Raises:
        DirectoryClaimed: the directory belongs to another run; it is left untouched.
    """
    path = Path(path)
    if path.is_dir():
        used = [m for m in _OUTPUT_MARKERS if (path / m).exists()]
        if used:
            raise DirectoryClaimed(path, _owner(path, used[0]), key)
    path.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path / CLAIM_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY, _umask_mode())
    except FileExistsError:
        raise DirectoryClaimed(path, _owner(path, CLAIM_FILE), key) from None
    import datetime
    import socket

    when = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
    with os.fdopen(fd, "w") as fh:
        fh.write(f"pid {os.getpid()} on {socket.gethostname()} at {when} {note}".strip() + "\n")
    return path


def _owner(path: Path, marker: str) -> str:
    if marker != CLAIM_FILE:
        return f"it has {marker}"
    try:
        return "claimed by " + (path / CLAIM_FILE).read_text().strip()
    except OSError:
        return "claimed"


@contextmanager
def locked(run_dir: str | Path) -> Iterator[None]:
    """Hold an exclusive cross-process lock on ``run_dir`` (``fcntl.flock`` of ``.lock``).

    Used around mirroring a result to MLflow, so a live run, a retry and several
    ``backtest sync`` processes never log the same result twice. The kernel drops the
    lock when its holder dies (even by SIGKILL), so a crash never blocks the next one.
    """
    import fcntl

    path = Path(run_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
