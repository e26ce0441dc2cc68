"""Freed memory is reused while a batch runs: no fresh pages per call of a strategy."""

from __future__ import annotations

import resource
import sys

import numba
import numpy as np
import pytest

from backtest.engine._memory import _glibc, reuse_freed_memory


@numba.njit(cache=False, nogil=True)
def _fill(n: int) -> float:  # what a strategy's compiled batch_positions does per call
    out = np.empty(n)
    for i in range(n):
        out[i] = i
    return out[n - 1]


def _faults(calls: int, n: int) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        _fill(n)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(not sys.platform.startswith("linux") or _glibc() is None, reason="glibc only")
def test_compiled_allocations_reuse_freed_memory_inside_and_not_after() -> None:
    n = 2_000_000  # 16 MB a call: 3,900 pages
    _fill(10)
    with reuse_freed_memory():
        _faults(1, n)  # the first call takes its pages once
        inside = _faults(5, n)
    # glibc's defaults: ~7,800 faults for these 5 calls (fresh pages each time)
    assert inside < 300, inside  # the same memory again, no fresh pages
    with reuse_freed_memory(), reuse_freed_memory():  # nests
        pass
