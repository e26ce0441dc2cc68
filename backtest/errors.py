"""The exception tree of ``backtest``.

Every error raised on purpose by this package derives from :class:`BacktestError`
and from the built-in exception that means the same thing, so callers can catch
either::

    BacktestError (Exception)
    ├── ConfigError (ValueError)               a bad config value; names the key
    ├── DataValidationError (ValueError)       bad price data; names column, timestamp, count
    ├── JobNotFound (LookupError)              an unknown or expired job id; carries ``job_id``
    ├── JobNotFinished (RuntimeError)          a job has no result yet; carries ``status``
    │   └── JobFailed                          it failed or was cancelled; carries ``reason``
    ├── WaitTimeout (TimeoutError)             waiting for jobs ran out of time; ``pending``
    ├── ResultPathMissing (FileNotFoundError)  no result where one was expected; carries ``path``
    ├── ResultCorrupt (ValueError)             a run folder's file is unreadable or links out of
    │                                          the folder; carries ``path`` and ``file``
    ├── DiskFull (OSError)                     the disk a run writes to is full; names the
    │                                          folder, the file and the space it needs
    ├── TrialsFailed (RuntimeError)            every trial of a search failed; says why
    ├── StrategyContractError                  a strategy looks ahead, or its batch_positions
    │                                          disagrees with positions; names strategy and bar
    ├── PathDivergence (RuntimeError)          a search's (or fold's) numbers differ from the
    │                                          single backtest of the same set; names strategy,
    │                                          set and the first differing metric
    └── QueueUnavailable (ConnectionError)     Redis could not be reached; names the URL

Context lives in attributes, not only in the message. :func:`describe` is how the
command line prints one: the message, secrets masked, and a :func:`hint` naming the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class BacktestError(Exception):
    """Base of every error raised by backtest."""


class ConfigError(BacktestError, ValueError):
    """A configuration value is invalid.

    Attributes:
        key: The dotted config key or parameter name at fault, when known.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class DataValidationError(BacktestError, ValueError):
    """Price data failed validation.

    Attributes:
        column: The offending column (a symbol's closes, a field such as ``"open"``,
            or ``"index"``).
        timestamp: The first offending timestamp, when there is one.
        count: How many values are affected.
        symbol: The symbol, when ``column`` names a field (``open``, ``volume``, ...).
    """

    def __init__(
        self,
        message: str,
        *,
        column: str | None = None,
        timestamp: object | None = None,
        count: int = 0,
        symbol: str | None = None,
    ) -> None:
        super().__init__(message)
        self.column = column
        self.timestamp = timestamp
        self.count = count
        self.symbol = symbol


class JobNotFound(BacktestError, LookupError):
    """No job with this id exists (or it expired and its result directory is gone).

    Attributes:
        job_id: The id that was asked for.
    """

    def __init__(self, job_id: str, message: str | None = None) -> None:
        super().__init__(message or f"no job with id {job_id!r}")
        self.job_id = job_id


class ResultPathMissing(BacktestError, FileNotFoundError):
    """A result was expected at a path that does not hold one.

    Attributes:
        path: The path that was looked at.
        job_id: The job the result belongs to, when known.
    """

    def __init__(self, path: str | Path, *, job_id: str | None = None) -> None:
        where = f" for job {job_id!r}" if job_id else ""
        super().__init__(f"no result{where} at {str(path)!r}")
        self.path = Path(path)
        self.job_id = job_id


class ResultCorrupt(BacktestError, ValueError):
    """A run folder holds a result that cannot be read (readers skip it and go on).

    A file is cut short (a full disk, a copy interrupted), is not what its name says
    (``trades.parquet`` that is not Parquet, ``result.json`` that is not JSON), or is a
    link leading out of the run folder, which is never followed.

    Attributes:
        path: The run folder.
        file: The file at fault, relative to the run folder (``trades.parquet``).
        reason: What is wrong with it.
    """

    def __init__(self, path: str | Path, file: str, reason: str) -> None:
        super().__init__(
            f"corrupt result in {str(path)!r}: {file} {reason}; "
            "run it again into a new folder, or delete this one"
        )
        self.path = Path(path)
        self.file = file
        self.reason = reason


class DiskFull(BacktestError, OSError):
    """The disk a run writes to is full (or over quota): the run was refused.

    Nothing half-written is left: every file is written to a temporary name that is
    removed, and a run refused this way has no ``result.json``.

    Attributes:
        path: The folder that was written to.
        file: The file that did not fit.
        needed: Bytes that file needed, when known.
        free: Bytes free on that disk when it failed, when known.
    """

    def __init__(
        self, path: str | Path, file: str, needed: int | None = None, free: int | None = None
    ) -> None:
        need = f"needs {_size(needed)}" if needed is not None else "needs more space"
        left = f" ({_size(free)} free)" if free is not None else ""
        super().__init__(
            f"no space left on the disk holding {str(path)!r}: {file} {need}{left}; free "
            "some space there or write to another disk (hydra.run.dir=... or output_dir=...), "
            "then run again"
        )
        self.path = Path(path)
        self.file = file
        self.needed = needed
        self.free = free


def _size(n: int) -> str:
    """Bytes in a unit people read: ``812 B``, ``5.2 MB``, ``1.3 GB``."""
    size, unit = float(n), "B"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 999.95 or unit == "TB":
            break
        size /= 1000
    return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"


class JobNotFinished(BacktestError, RuntimeError):
    """A job has no result (yet): it is queued, running, failed or cancelled.

    Attributes:
        job_id: The job.
        status: Its status (``queued``, ``started``, ``failed``, ``cancelled``).
        reason: Why it failed, when it did.
    """

    def __init__(self, job_id: str, status: str, reason: str | None = None) -> None:
        why = f": {reason}" if reason else ""
        super().__init__(f"job {job_id!r} has no result, it is {status}{why}")
        self.job_id = job_id
        self.status = status
        self.reason = reason


class JobFailed(JobNotFinished):
    """A job failed (or was cancelled) and published no result."""


class WaitTimeout(BacktestError, TimeoutError):
    """:meth:`BacktestJobQueue.wait` ran out of time.

    Attributes:
        pending: The jobs that had not finished.
    """

    def __init__(self, pending: Sequence[str], timeout_s: float) -> None:
        shown = ", ".join(pending[:5]) + (" ..." if len(pending) > 5 else "")
        super().__init__(f"{len(pending)} job(s) not done after {timeout_s:g} s: {shown}")
        self.pending = list(pending)


class TrialsFailed(BacktestError, RuntimeError):
    """Every trial of a search failed, so there is no best result."""


class StrategyContractError(BacktestError):
    """A strategy breaks its contract: it looks ahead, or its fast path disagrees.

    Attributes:
        strategy: The strategy class name.
        params: The parameter set at fault.
        bar: The first bar (timestamp) that differs.
        asset: The asset column where it differs first.
    """

    def __init__(
        self,
        message: str,
        *,
        strategy: str,
        params: dict[str, object] | None = None,
        bar: object = None,
        asset: object = None,
    ) -> None:
        super().__init__(message)
        self.strategy = strategy
        self.params = dict(params or {})
        self.bar = bar
        self.asset = asset


class PathDivergence(BacktestError, RuntimeError):
    """A fast path gave another number than the single backtest of the same settings.

    Every search and every walk-forward fold re-runs its chosen set (and a few sampled
    others) through :func:`~backtest.engine.simulate` and compares; this is raised instead
    of printing a result the engine would not reproduce (a bug of the fast path, never of
    the user's settings).

    Attributes:
        strategy: The strategy class name.
        params: The parameter set (searched and fixed parameters, ``engine.<key>`` too).
        metric: The first metric that differs (``sharpe_ratio``, ``n_trades``, ...).
        fast: Its value on the fast path (the trial's).
        single: Its value in the single backtest.
        where: Which trial or fold (``trial 12``, ``fold 3 (train ...)``).
    """

    def __init__(
        self,
        message: str,
        *,
        strategy: str,
        params: dict[str, object],
        metric: str,
        fast: float,
        single: float,
        where: str,
    ) -> None:
        super().__init__(message)
        self.strategy = strategy
        self.params = dict(params)
        self.metric = metric
        self.fast = fast
        self.single = single
        self.where = where


class QueueUnavailable(BacktestError, ConnectionError):
    """The job queue's Redis server could not be reached.

    Attributes:
        url: The Redis URL, with any password masked.
    """

    def __init__(self, url: str, message: str) -> None:
        super().__init__(message)
        self.url = url


def hint(exc: BaseException) -> str | None:
    """What to do about an error, in command-line terms (``None`` when the message says it).

    >>> hint(DataValidationError("column 'A': 2 NaN price(s), first at 2020-01-02"))
    'repair the data with data.repair=ffill (forward-fill) or data.repair=drop'
    >>> hint(ConfigError("empty", key="search.space"))
    "give the space on the command line: '+search.space.fast=[5,10,20]'"
    """
    text = str(exc)
    if isinstance(exc, DataValidationError):
        if "data.repair=" in text:
            return None  # the message names its repair
        if any(w in text for w in ("NaN", "infinite", "non-positive", "high < low")):
            return "repair the data with data.repair=ffill (forward-fill) or data.repair=drop"
        if "not sorted" in text or "duplicate" in text:
            return "data.repair=drop drops duplicate timestamps and sorts the bars"
        return None
    if isinstance(exc, QueueUnavailable):
        return "start Redis or point REDIS_URL / queue.redis_url at a running server"
    if isinstance(exc, ConfigError):
        if exc.key == "search.space" and "+search.space" not in text:
            return "give the space on the command line: '+search.space.fast=[5,10,20]'"
        if exc.key and exc.key not in text:
            return f"check {exc.key}"
    return None


def describe(exc: BaseException) -> str:
    """The message printed for an error: ``error: ...`` (secrets masked) and any ``hint: ...``.

    ``--verbose`` (or ``HYDRA_FULL_ERROR=1``) shows the traceback instead (``backtest --help``).
    """
    first = str(exc).strip() or type(exc).__name__
    from backtest.masking import mask_text

    lines = [f"error: {mask_text(first)}"]
    advice = hint(exc)
    if advice:
        lines.append(f"hint: {advice}")
    return "\n".join(lines)
