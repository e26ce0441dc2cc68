"""Per-path random streams for the compiled resampling kernels.

Every Monte Carlo path owns its own stream, keyed by the path's number, so a
report never depends on how paths are split into chunks or spread over workers.

The compiled kernels cannot call NumPy's ``Generator`` cheaply once per path
(building 10,000 ``SeedSequence`` children alone costs about 0.1 s, more than
resampling a 2,520-bar path 10,000 times), so they use the same recipe in
compiled code: a 256-bit key drawn once from ``np.random.SeedSequence(seed)``,
hashed with the path number through SplitMix64 into the state of a
xoshiro256** generator (Blackman and Vigna's recommended seeding). Streams of
different paths start at unrelated points of a 2^256 - 1 period.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53


def root_key(seed: int | None) -> NDArray[np.uint64]:
    """The 256-bit key every path stream of one run derives from.

    Args:
        seed: The run's root seed; ``None`` draws fresh entropy from the OS.

    Returns:
        Four ``uint64`` words from ``np.random.SeedSequence(seed)``.
    """
    return np.random.SeedSequence(seed).generate_state(4, np.uint64).astype(np.uint64)


@numba.njit(cache=True, nogil=True, inline="always")
def _mix(z: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, nogil=True)
def seed_path(
    state: NDArray[np.uint64], key: NDArray[np.uint64], path: int
) -> None:  # pragma: no cover
    """Fill the xoshiro256** ``state`` of path number ``path`` from the run's ``key``."""
    x = key[0] ^ _mix(key[1] ^ _mix(np.uint64(path) + key[2]))
    x = x ^ key[3]
    for i in range(4):
        x = x + _GOLDEN
        state[i] = _mix(x)


@numba.njit(cache=True, nogil=True, inline="always")
def _rotl(x: np.uint64, k: int) -> np.uint64:  # pragma: no cover - compiled
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@numba.njit(cache=True, nogil=True)
def next_u64(state: NDArray[np.uint64]) -> np.uint64:  # pragma: no cover - compiled
    """Advance xoshiro256** and return 64 random bits."""
    s0 = state[0]
    s1 = state[1]
    s2 = state[2]
    s3 = state[3]
    result = _rotl(s1 * np.uint64(5), 7) * np.uint64(9)
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    state[0] = s0
    state[1] = s1
    state[2] = s2
    state[3] = s3
    return result


@numba.njit(cache=True, nogil=True)
def uniform(state: NDArray[np.uint64]) -> float:  # pragma: no cover - compiled
    """A uniform float in ``[0, 1)`` with 53 random bits."""
    # through int64: a 53-bit value converts exactly, and signed conversion is one
    # instruction where unsigned 64-bit conversion is a branchy sequence
    return float(np.int64(next_u64(state) >> np.uint64(11))) * _TO_UNIT


@numba.njit(cache=True, nogil=True)
def randint(state: NDArray[np.uint64], n: int) -> int:  # pragma: no cover - compiled
    """A uniform integer in ``[0, n)`` (bias below ``n / 2**53``)."""
    i = int(uniform(state) * n)
    return i if i < n else n - 1
