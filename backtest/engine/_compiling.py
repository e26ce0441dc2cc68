"""Say once when numba compiles (a first run, or a new machine): the wait has a reason.

Every kernel is ``@njit(cache=True)``: compiled on its first call on a machine, then loaded
from the cache next to its module (or ``NUMBA_CACHE_DIR``) by every later process. numba
announces a compilation (a cache miss) with its ``numba:compile`` event, never a cache hit,
so a listener on it speaks exactly when a user is about to wait, and only then.
"""

from __future__ import annotations

import logging
import threading

from numba.core import event

log = logging.getLogger("backtest.engine")

#: What a user is told the first time a process compiles (measured on a 2-core machine:
#: a cold ``+experiment=sma_grid`` compiles for about 10-20 s, the flagship 20-40 s).
NOTICE = (
    "compiling the engine's kernels for this machine (first run only: about 10-40 s; "
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
        """Nothing to say when a compilation ends."""


_LISTENER = _FirstCompile()
event.register("numba:compile", _LISTENER)
