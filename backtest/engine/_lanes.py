"""Threads the batched paths share: kept between calls, made anew after a fork.

A search calls the batched paths again and again (walk-forward: once per fold and
window), so starting threads per call would cost more than small batches' work. Work
given to the lanes is compiled code that releases the GIL (and a strategy's own
``batch_positions``, which may). A lane never hands work to the lanes again (that runs
on the lane itself), so nested use cannot wait on itself.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_owner = (0, 0)  # (pid, size) of _pool
_inside = threading.local()


def _mark_lane() -> None:
    _inside.lane = True


def _executor(size: int) -> ThreadPoolExecutor:
    global _pool, _owner
    with _lock:
        pid = os.getpid()
        if _pool is None or _owner[0] != pid or _owner[1] < size:
            if _pool is not None and _owner[0] == pid:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(size, thread_name_prefix="backtest-lane",
                                       initializer=_mark_lane)  # fmt: skip
            _owner = (pid, size)
        return _pool


def run_in_lanes(fn: Callable[[T], R], items: Iterable[T], lanes: int) -> list[R]:
    """``[fn(x) for x in items]`` on up to ``lanes`` threads, in order.

    The first error raised by ``fn`` is raised here (after every item has run or failed).
    Serial where ``lanes <= 1``, for a single item, or on a lane itself.
    """
    items = list(items)
    if lanes <= 1 or len(items) <= 1 or getattr(_inside, "lane", False):
        return [fn(x) for x in items]
    pool = _executor(lanes)
    futures = [pool.submit(fn, x) for x in items]
    return [f.result() for f in futures]
