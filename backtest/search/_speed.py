"""Is a strategy's own fast path worth it? Measured on a search's first batch, logged once.

A ``batch_positions`` or ``batch_weights`` can be correct and still slower than calling
``positions`` once per set (a Python loop per set inside it, an uncompiled rolling
window per set, a large array per set...): the search would then be slower with its
fast path than without it, and nothing would say so. On the first batch a search makes
with a strategy's own fast path, the time per set of that batch is compared with the
time per set of the plain path (the engine's path for the same strategy without a
fast path of its own: one ``positions`` call per set), measured on up to 4 sets of the
same batch. Both are timed warm, after one set each (what is loaded or compiled once
per search is not in the times). Both are logged once; a fast path that is slower is
a warning. The built-in fused kernels are not timed (the engine's benchmarks do).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

log = logging.getLogger("backtest.search")

PLAIN_SETS = 4
"""Sets of the batch the plain path is timed on (spread over it; after one warm-up set)."""
FEW_SETS = (
    " (this search sends few sets per batch, as samplers that ask one set at a time do: "
    "a fast path gains most on grids and random searches)"
)


def without_fast_path(strategy_cls: type) -> type:
    """The same strategy with no fast path of its own: what a search runs without one.

    A subclass that redefines ``positions`` (as the same function) does not inherit the
    fast path (:func:`~backtest.strategies.has_fast_path`'s ownership rule).
    """
    return type(
        strategy_cls.__name__,
        (strategy_cls,),
        {"positions": strategy_cls.positions, "__module__": strategy_cls.__module__},
    )


def plain_seconds_per_set(
    strategy_cls: type, prices: Any, frame: pd.DataFrame, engine: Mapping[str, Any]
) -> float | None:
    """Seconds per set of the plain path: the batch's sets without the fast path.

    The engine evaluates them as for a strategy without ``batch_positions`` or
    ``batch_weights`` (one ``positions`` call per set, the same kernels after it).

    Args:
        strategy_cls: The strategy class.
        prices: :class:`~backtest.data.Bars` or wide closes.
        frame: The batch's parameter sets (strategy parameters, maybe ``engine.<key>``).
        engine: The run's engine options (:func:`~backtest.engine.simulate` keywords).

    Returns:
        The time per set over up to :data:`PLAIN_SETS` sets spread over the batch (a
        set repeats in a smaller one), after one warm-up set; ``None`` when the
        strategy rejects them.
    """
    import numpy as np

    from backtest.engine import simulate_batch

    plain = without_fast_path(strategy_cls)
    frame = frame.reset_index(drop=True)
    rows = np.linspace(0, len(frame) - 1, PLAIN_SETS).round().astype(int)
    try:
        simulate_batch(prices, plain, frame.iloc[:1], check_lookahead=False, **engine)
        start = time.perf_counter()
        simulate_batch(prices, plain, frame.iloc[rows], check_lookahead=False, **engine)
    except Exception:  # a set the strategy rejects: the search records it, not timed here
        return None
    return (time.perf_counter() - start) / len(rows)


def timed_first_batch(
    run: Callable[[], Any],
    warm_up: Callable[[], Any],
    strategy_cls: type,
    prices: Any,
    frame: pd.DataFrame,
    engine: Mapping[str, Any],
) -> Any:
    """Run the first batch through the fast path, time it against the plain path, log both.

    Both paths are timed warm: what each loads once (compiled kernels read from numba's
    cache, the strategy's own compilation) is left out of the times, as it is paid once
    per search whatever its size.

    Args:
        run: Evaluates the batch on the fast path (already verified: the look-ahead and
            consistency checks are not in the time).
        warm_up: Evaluates one set of the batch on the fast path (not timed).
        strategy_cls: The strategy class.
        prices: :class:`~backtest.data.Bars` or wide closes.
        frame: The batch's parameter sets.
        engine: The run's engine options.

    Returns:
        What ``run`` returned.
    """
    try:
        warm_up()
    except Exception:  # a set the strategy rejects: the search finds it, nothing is timed
        return run()
    start = time.perf_counter()
    out = run()
    fast = (time.perf_counter() - start) / max(1, len(frame))
    plain = plain_seconds_per_set(strategy_cls, prices, frame, engine)
    log_speeds(strategy_cls.__name__, fast, plain, len(frame))
    return out


def log_speeds(name: str, fast: float, plain: float | None, n_sets: int) -> None:
    """Log the two times per set once; a warning when the fast path is the slower."""
    method = "fast path"
    measured = f"{_ms(fast)} per set (first batch, {n_sets} sets)"
    if plain is None:
        log.info("%s %s: %s; positions path not measured", name, method, measured)
        return
    against = f"without it (positions per set): {_ms(plain)} per set"
    if fast > plain:
        log.warning(
            "%s's %s is %.1fx SLOWER than no fast path: %s; %s. Make batch_positions / "
            "batch_weights compute what sets share once and loop over bars in compiled code "
            "(numba), or remove it: a search without a fast path runs positions per set%s",
            name,
            method,
            fast / max(plain, 1e-12),
            measured,
            against,
            FEW_SETS if n_sets < 4 else "",
        )
    else:
        log.info(
            "%s's %s: %s; %s (%.1fx faster)",
            name,
            method,
            measured,
            against,
            plain / max(fast, 1e-12),
        )


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"
