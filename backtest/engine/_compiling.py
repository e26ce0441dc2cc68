"""Say once when numba compiles (a first run, or a new machine), and compile each kernel once.

Every kernel is ``@njit(cache=True)``: compiled on its first call on a machine, then loaded
from the cache next to its module (or ``NUMBA_CACHE_DIR``) by every later process. numba
announces a compilation (a cache miss) with its ``numba:compile`` event, never a cache hit,
so a listener on it speaks exactly when a user is about to wait, and only then.

Processes that start together on a fresh cache (a sweep's queue workers, a Hydra multirun's
jobs, test processes) would each compile the same kernels at the same time: on a 2-core
machine four workers took four times the CPU of one. numba checks its cache only before it
compiles, so :func:`share_compilations` makes a cache miss of one of our kernels wait on a
lock file beside that kernel's cache index: the first process compiles and saves it, the
others then load it from the cache instead of compiling it again. (numba's own index update
is not safe between processes either: two processes saving two signatures of one kernel
could each drop the other's; under the lock they take turns.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from numba.core import event

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: every process compiles for itself
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("backtest.engine")

#: What a user is told the first time a process compiles (measured on a 2-core machine: a
#: cold ``+experiment=sma_grid`` compiles for about 8 s, the flagship 12 s; twice that when
#: the machine is busy).
NOTICE = (
    "compiling the engine's kernels for this machine (first run only: about 5-30 s; "
    "later runs load them from numba's cache)"
)


class _FirstCompile(event.Listener):
    """Logs :data:`NOTICE` on the first compilation of the process, then stays silent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.said = False

    def on_start(self, ev: event.Event) -> None:
        with self._lock:
            if self.said:
                return
            self.said = True
        log.info(NOTICE)

    def on_end(self, ev: event.Event) -> None:
        """A compilation that failed gives up its kernel's lock (a saved one gave it up)."""
        # numba 0.68's Event.is_failed reads its own flag inverted: the details say it
        if getattr(ev, "_exc_details", None) is not None and ev.data is not None:
            _LOCKS.done(getattr(ev.data.get("dispatcher"), "_cache", None))


_LISTENER = _FirstCompile()
event.register("numba:compile", _LISTENER)

#: How long a process waits for another one compiling the same kernel before it compiles the
#: kernel itself (a holder that died releases its lock at once: the system drops it).
LOCK_WAIT_S = 600.0


class _KernelLocks:
    """The kernels' lock files this process holds, by path, re-entrant.

    A kernel compiled while the compilation of its caller waits on it holds both; numba
    compiles one kernel at a time per process, so no two threads of this process use them
    at once.
    """

    def __init__(self) -> None:
        self._held: dict[str, tuple[int, int]] = {}  # path -> (file descriptor, depth)
        self._pending: dict[int, list[str]] = {}  # id(cache) -> paths held until it saves

    def acquire(self, path: str) -> bool:
        """Hold ``path``'s lock (waiting for another process); False where it cannot be taken."""
        if path in self._held:
            fd, depth = self._held[path]
            self._held[path] = (fd, depth + 1)
            return True
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return False
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    return False
                time.sleep(0.02)
            except OSError:
                os.close(fd)
                return False
        self._held[path] = (fd, 1)
        return True

    def release(self, path: str) -> None:
        """Give up one hold of ``path``; the lock is released with the last one."""
        fd, depth = self._held.pop(path)
        if depth > 1:
            self._held[path] = (fd, depth - 1)
            return
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def hold_until_saved(self, cache: object, path: str) -> None:
        """Keep ``path`` held until ``cache`` saves what this process compiles (:meth:`done`)."""
        self._pending.setdefault(id(cache), []).append(path)

    def done(self, cache: object) -> None:
        """Release the lock held for ``cache``'s compilation (saved, or failed)."""
        paths = self._pending.get(id(cache))
        if paths:
            self.release(paths.pop())
            if not paths:
                del self._pending[id(cache)]


_LOCKS = _KernelLocks()


def _lock_path(cache: Any) -> str | None:
    """The lock file beside ``cache``'s index, its folder created; None where it cannot be."""
    try:
        cache._impl.locator.ensure_cache_path()
        return os.path.join(cache._cache_path, cache._cache_file._index_name + ".lock")
    except (AttributeError, OSError):
        return None


def share_compilations(package: str = "backtest.") -> bool:
    """Make processes compile each kernel of ``package`` once between them (module docstring).

    Wraps numba's ``FunctionCache.load_overload`` / ``save_overload``: a miss of one of the
    package's kernels takes the kernel's lock and looks in the cache again (another process
    may have just saved it); still missing, this process compiles it and releases the lock
    once it is saved (or the compilation failed). Other functions are left as numba has them.
    Returns whether it is in place (not where numba's cache lacks these methods, or on
    systems without ``fcntl``: each process then compiles for itself, as numba does).
    """
    try:
        from numba.core.caching import FunctionCache
    except ImportError:  # pragma: no cover - a numba without its cache module
        return False
    if fcntl is None or getattr(FunctionCache, "_backtest_shared", False):
        return fcntl is not None
    load: Callable[..., Any] = FunctionCache.load_overload
    save: Callable[..., Any] = FunctionCache.save_overload

    def load_overload(self: Any, sig: Any, target_context: Any) -> Any:
        found = load(self, sig, target_context)
        module = getattr(getattr(self, "_py_func", None), "__module__", "") or ""
        if found is not None or not module.startswith(package):
            return found
        path = _lock_path(self)
        if path is None or not _LOCKS.acquire(path):
            return None  # compile it here, as numba would
        found = load(self, sig, target_context)  # saved by the process we waited for?
        if found is not None:
            _LOCKS.release(path)
            return found
        _LOCKS.hold_until_saved(self, path)
        return None

    def save_overload(self: Any, sig: Any, data: Any) -> Any:
        try:
            return save(self, sig, data)
        finally:
            _LOCKS.done(self)

    FunctionCache.load_overload = load_overload  # type: ignore[method-assign]
    FunctionCache.save_overload = save_overload  # type: ignore[method-assign]
    FunctionCache._backtest_shared = True  # type: ignore[attr-defined]
    return True


share_compilations()
