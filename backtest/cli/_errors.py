"""One clear line for a :class:`~backtest.errors.BacktestError`, a hint, and exit status 2.

A traceback helps whoever debugs the package, not whoever mistyped a key: it is shown
only with ``--verbose`` or ``HYDRA_FULL_ERROR=1``. Errors that are not ours (a bug)
keep their traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from backtest.errors import BacktestError, describe

EXIT_USER_ERROR = 2


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
