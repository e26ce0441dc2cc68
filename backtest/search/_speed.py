"""Is a strategy's own fast path worth it? Measured on a search's first batch, logged once.

A ``batch_positions`` or ``batch_weights`` can be correct and still slower than calling
``positions`` once per set (a Python loop per set inside it, an uncompiled rolling
window per set, a large array per set...): the search would then be slower with its
fast path than without it, and nothing would say so. On the first batch a search makes
with a strategy's own fast path, the time per set of that batch is compared with the
time per set of the plain path (``positions`` and one backtest per set, what a search
does without a fast path), measured on two sets of the same batch. Both are timed
warm, after one set each (what is loaded or compiled once per search is not in the
times). Both are logged once; a fast path that is slower is a warning. The built-in
fused kernels are not timed (the engine's benchmarks do).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

log = logging.getLogger("backtest.search")

PLAIN_SETS = 2
"""Sets the plain path is timed on (after one untimed warm-up set)."""
FEW_SETS = (
    " (this search sends few sets per batch, as samplers that ask one set at a time do: "
    "a fast path gains most on grids and random searches)"
)


def plain_seconds_per_set(
    strategy_cls: type, prices: Any, frame: pd.DataFrame, engine: Mapping[str, Any]
) -> float | None:
    """Seconds per set of the plain path: ``strategy_cls(**set)`` and one backtest each.

    Args:
        strategy_cls: The strategy class.
        prices: :class:`~backtest.data.Bars` or wide closes.
        frame: The batch's parameter sets (strategy parameters, maybe ``engine.<key>``).
        engine: The run's engine options (:func:`~backtest.engine.simulate` keywords).

    Returns:
        The mean over :data:`PLAIN_SETS` sets (spread over the batch, repeated in a
        smaller one) after one warm-up set, or ``None`` when the strategy rejected them.
    """
    import numpy as np

    from backtest.engine import simulate
    from backtest.engine._batch_kernel import split_columns

    own, options = split_columns(frame.reset_index(drop=True), strategy_cls)
    # spread over the batch; a set repeats in a small batch (a sampler's one-set batches)
    rows = np.linspace(0, len(frame) - 1, PLAIN_SETS + 1).round().astype(int)
    times: list[float] = []
    for i in rows:
        params = {str(c): _plain(own[c].iloc[i]) for c in own.columns}
        kwargs = {**engine, **{str(c): _plain(options[c].iloc[i]) for c in options.columns}}
        start = time.perf_counter()
        try:
            simulate(prices, strategy_cls(**params), check_lookahead=False, **kwargs)
        except Exception:  # a set the strategy rejects: the search records it, not timed here
            continue
        times.append(time.perf_counter() - start)
    if len(times) < 2:
        return None
    timed = times[1:]  # the first one warmed up what the plain path loads once
    return sum(timed) / len(timed)


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
    against = f"positions path (one backtest per set): {_ms(plain)} per set"
    if fast > plain:
        log.warning(
            "%s's %s is %.1fx SLOWER than its positions path: %s; %s. Make batch_positions / "
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


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
