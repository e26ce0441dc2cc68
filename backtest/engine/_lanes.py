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


#: Groups of sets per lane in :func:`run_chunks`: sets differ in cost (a short window
#: trades more), and a lane that finished early takes another group instead of waiting.
CHUNKS_PER_LANE = 8


def run_chunks(fn: Callable[[int, int], object], k: int, lanes: int) -> None:
    """``fn(lo, hi)`` over ``range(k)`` cut into contiguous groups, on up to ``lanes`` threads.

    :data:`CHUNKS_PER_LANE` groups per lane (one group where ``lanes <= 1``); each set
    is in exactly one group, so the outcome does not depend on the number of lanes.
    """
    chunks = max(1, min(k, CHUNKS_PER_LANE * lanes if lanes > 1 else 1))
    run_in_lanes(lambda c: fn(c * k // chunks, (c + 1) * k // chunks), range(chunks), lanes)
