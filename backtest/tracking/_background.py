"""Mirroring while the user reads the result: the summary never waits for MLflow.

A run's files are its record and MLflow is a mirror, so nothing the user reads needs
the mirror to have finished. Inside :func:`mirrors_after` (the ``backtest`` command wraps
each run in it), :func:`mirror_soon` mirrors a written result on a background thread
and returns at once: the summary prints while MLflow imports itself (2-3 s in a fresh
process), opens the store and logs. The block's end waits for the mirrors it started,
saying so when one is still running, so the process never exits half-logged; Ctrl-C
while it waits leaves the mirror to ``python -m backtest.sync`` (a half-logged run is
closed and logged again there, exactly once). Outside such a block (a library call,
an RQ worker) :func:`mirror_soon` mirrors before it returns, as before.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backtest.config import TrackingConfig

log = logging.getLogger("backtest.tracking")

# How long the end of a block waits quietly before it says it is waiting for MLflow.
_QUIET_WAIT_S = 0.5


@dataclass(frozen=True, slots=True)
class _Pending:
    """A mirror on its thread, and the event set when it ends.

    The event, not ``Thread.is_alive``: a ``join`` interrupted by Ctrl-C marks the
    thread stopped while it still runs (Python 3.11's ``_wait_for_tstate_lock``).
    """

    run_dir: Path
    done: threading.Event


_PENDING: ContextVar[list[_Pending] | None] = ContextVar("backtest_mirrors", default=None)


def mirror_soon(
    run_dir: Path,
    tracking_cfg: TrackingConfig,
    children: Sequence[Mapping[str, Any]] | None,
    *,
    on_error: Callable[[Exception], None],
) -> None:
    """Mirror the complete result in ``run_dir`` to MLflow: now, or in the background.

    Args:
        run_dir: A run directory holding a complete result.
        tracking_cfg: Where to log.
        children: Nested runs for a task whose files hold none.
        on_error: Called with the error when mirroring fails (the result on disk is
            complete either way); in the background, on the mirror's thread.
    """
    from backtest.masking import reveal
    from backtest.tracking._client import resolve_uri

    try:  # resolved here: a relative sqlite path names one store whatever the thread sees
        uri = resolve_uri(reveal(tracking_cfg.uri))
    except Exception as exc:  # e.g. the store's folder cannot be made
        on_error(exc)
        return
    pending = _PENDING.get()

    done = threading.Event()

    def mirror() -> None:
        from backtest.tracking._mirror import mirror_result

        try:
            mirror_result(run_dir, tracking_cfg, children=children, uri=uri)
        except Exception as exc:
            on_error(exc)
        finally:
            done.set()

    if pending is None:
        mirror()
        return
    pending.append(_Pending(Path(run_dir), done))
    threading.Thread(target=mirror, name=f"mlflow-mirror {run_dir.name}", daemon=True).start()


@contextmanager
def mirrors_after() -> Iterator[None]:
    """Results written inside this block are mirrored in the background; its end waits.

    Used by the ``backtest`` command around a run and its printed summary. On leaving
    the block, each mirror still running is waited for (with one INFO line when it takes
    more than half a second); a ``KeyboardInterrupt``, in the block (the summary still
    printing) or while waiting, waits for nothing: it logs where each unfinished result
    is and how to mirror it later, then propagates (the mirrors' threads are daemons).
    """
    pending: list[_Pending] = []
    token = _PENDING.set(pending)
    interrupted = False
    try:
        yield
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        _PENDING.reset(token)
        if interrupted:
            _left_to_sync(pending)
        else:
            _wait(pending)


def _wait(pending: list[_Pending]) -> None:
    try:
        if not all(item.done.is_set() for item in pending):
            sys.stdout.flush()  # what the block printed is seen (also through a pipe) now
        for item in pending:
            if not item.done.wait(_QUIET_WAIT_S):
                log.info("finishing the MLflow mirror of %s (the result is complete)", item.run_dir)
            while not item.done.wait(0.2):  # short waits: Ctrl-C is heard while waiting
                pass
    except KeyboardInterrupt:
        _left_to_sync(pending)
        raise


def _left_to_sync(pending: list[_Pending]) -> None:
    """Ctrl-C: say how to mirror each result whose mirror has not finished."""
    for item in pending:
        if not item.done.is_set():
            log.warning(
                "MLflow mirror of %s interrupted; the result is complete, log it with: "
                "python -m backtest.sync %s",
                item.run_dir,
                item.run_dir,
            )
