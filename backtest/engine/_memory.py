"""Keep freed memory for reuse while a batch runs (glibc's allocator; elsewhere a no-op).

The generic batched path asks the strategy for a block's positions again and again,
and a strategy's compiled code allocates its output each time (numba's allocator is
``malloc``, without the huge pages numpy asks for). glibc hands blocks over 128 KiB
to ``mmap``, and returns the freed top of its heap to the system above a threshold
that follows the last such block (twice its size): so each call's output came as
fresh pages, one page fault per 4 KiB, which cost more than the strategy's own work
(55 ms of 59 for 500 sets of 25,200 bars). From the first :func:`reuse_freed_memory`
on, blocks up to 32 MiB come from the heap (the highest value glibc's own moving
threshold reaches); while one is open, freed memory stays in the heap for the next
call, and after it the heap keeps at most 64 MiB of free memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
import threading
from collections.abc import Iterator

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap (glibc's DEFAULT_MMAP_THRESHOLD_MAX).
MMAP_THRESHOLD = 32 * 2**20
#: Free memory the heap keeps while a batch runs, and after it.
TRIM_WHILE_OPEN = 2**30
TRIM_AFTER = 64 * 2**20

_lock = threading.Lock()
_open = 0
_libc: ctypes.CDLL | bool | None = False  # False: not looked up yet


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is False:
        _libc = None
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL("libc.so.6")
                libc.gnu_get_libc_version  # noqa: B018 - glibc only (not musl)
                libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                _libc = libc
            except (OSError, AttributeError):
                _libc = None
    return _libc  # type: ignore[return-value]


@contextlib.contextmanager
def reuse_freed_memory() -> Iterator[None]:
    """Within: allocations up to 32 MiB reuse freed heap memory instead of new pages.

    Nests and may be entered from several threads; the outermost exit lets the heap
    shrink back to 64 MiB of free memory (blocks up to 32 MiB keep coming from it).
    """
    global _open
    libc = _glibc()
    if libc is None:
        yield
        return
    with _lock:
        if _open == 0:
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            libc.mallopt(M_TRIM_THRESHOLD, TRIM_WHILE_OPEN)
        _open += 1
    try:
        yield
    finally:
        with _lock:
            _open -= 1
            if _open == 0:
                libc.mallopt(M_TRIM_THRESHOLD, TRIM_AFTER)
