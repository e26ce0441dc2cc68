"""Per-trial seeds: ``SeedSequence(root, spawn_key=(trial,))`` for many trials at once.

A trial's seed depends only on the search's root seed and the trial number, never on
the number of workers or the order trials finish in. numpy's ``SeedSequence`` costs
a few microseconds per trial in Python; :func:`trial_seeds` runs the same hash
(``numpy/random/bit_generator.pyx``) vectorised over trials and is tested against it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

_INIT_A = np.uint32(0x43B0D7E5)
_MULT_A = np.uint32(0x931E8875)
_INIT_B = np.uint32(0x8B51F9DD)
_MULT_B = np.uint32(0x58F38DED)
_MIX_MULT_L = np.uint32(0xCA01F9DD)
_MIX_MULT_R = np.uint32(0x4973F715)
_XSHIFT = np.uint32(16)
_POOL_SIZE = 4


def root_seed(seed: int | np.random.Generator | None) -> int:
    """The search's root entropy: the int itself, fresh entropy for ``None``, or a draw.

    Raises:
        ValueError: a negative seed.
    """
    if seed is None:
        return int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63))
    value = int(seed)
    if value < 0:
        raise ValueError(f"seed must be >= 0, got {value}")
    return value


def _words(value: int) -> list[int]:
    """``value`` as little-endian uint32 words (``[0]`` for 0), as numpy does."""
    words = []
    while True:
        words.append(value & 0xFFFFFFFF)
        value >>= 32
        if not value:
            return words


def trial_seeds(root: int, trials: NDArray[np.int64]) -> NDArray[np.int64]:
    """``SeedSequence(root, spawn_key=(t,)).generate_state(1)[0]`` for each trial ``t``.

    Args:
        root: The root entropy (an int >= 0).
        trials: Trial numbers in ``[0, 2**32)``.

    Returns:
        One seed in ``[0, 2**32)`` per trial, as int64.

    Examples:
        >>> seeds = trial_seeds(42, np.arange(3))
        >>> int(seeds[1]) == int(np.random.SeedSequence(42, spawn_key=(1,)).generate_state(1)[0])
        True
    """
    trials = np.asarray(trials, dtype=np.int64)
    if trials.size and (trials.min() < 0 or trials.max() >= 2**32):
        raise ValueError("trial numbers must be in [0, 2**32)")
    run = _words(root)
    run += [0] * (_POOL_SIZE - len(run))  # padded because a spawn key follows
    k = trials.shape[0]
    entropy = [np.full(k, w, dtype=np.uint32) for w in run]
    entropy.append(trials.astype(np.uint32))
    with np.errstate(over="ignore"):
        hash_const = np.uint32(_INIT_A)

        def hashmix(value: NDArray[np.uint32]) -> NDArray[np.uint32]:
            nonlocal hash_const
            value = value ^ hash_const
            hash_const = np.uint32(hash_const * _MULT_A)
            value = value * hash_const
            return value ^ (value >> _XSHIFT)

        def mix(x: NDArray[np.uint32], y: NDArray[np.uint32]) -> NDArray[np.uint32]:
            result = _MIX_MULT_L * x - _MIX_MULT_R * y
            return result ^ (result >> _XSHIFT)

        pool = [hashmix(entropy[i]) for i in range(_POOL_SIZE)]
        for src in range(_POOL_SIZE):
            for dst in range(_POOL_SIZE):
                if src != dst:
                    pool[dst] = mix(pool[dst], hashmix(pool[src]))
        for src in range(_POOL_SIZE, len(entropy)):
            for dst in range(_POOL_SIZE):
                pool[dst] = mix(pool[dst], hashmix(entropy[src]))
        value = pool[0] ^ _INIT_B
        value = value * np.uint32(_INIT_B * _MULT_B)
        value = value ^ (value >> _XSHIFT)
    return value.astype(np.int64)
