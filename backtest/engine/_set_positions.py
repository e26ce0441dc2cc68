"""Positions of many parameter sets per asset: a strategy's batched form, else one call per set.

Shared by the batched paths (:mod:`._batch`, :mod:`._universe_batch`) and the
walk-forward evaluator; it imports neither, so they do not import each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numba
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.data._bars import Bars, as_bars
from backtest.engine._targets import strategy_output
from backtest.errors import BacktestError


def set_positions(
    prices: Bars | pd.DataFrame,
    close: NDArray[np.float64],
    strategy_cls: type,
    params: Mapping[str, NDArray[Any]],
    k: int,
    by_asset: NDArray[np.float64] | None = None,
) -> Callable[[int], NDArray[np.float64]]:
    """``j -> (n_bars, k)`` positions of asset ``j`` for ``k`` parameter sets.

    ``by_asset`` are the closes asset-major (``(n_assets, n_bars)``, each asset's in
    order, what ``batch_positions`` receives) when already at hand.

    With a ``batch_positions`` of the class's own (:func:`backtest.strategies.has_fast_path`)
    they come from it; otherwise from one ``positions`` call per set (one backtest per
    set: slower, the same numbers), its output checked and NaN made flat by
    :func:`~backtest.engine._targets.strategy_output`, the function
    :func:`~backtest.engine.target_weights` builds on (a strategy declaring
    ``inputs = "bars"`` receives the bars).
    """
    from backtest.strategies._checks import fast_method

    bars = as_bars(prices)
    n, n_assets = close.shape
    name = strategy_cls.__name__
    if fast_method(strategy_cls) == "batch_positions":
        fast = strategy_cls.batch_positions  # type: ignore[attr-defined]
        if by_asset is None:
            by_asset = np.ascontiguousarray(close.T)

        def batch(j: int) -> NDArray[np.float64]:
            pos = _in_order(fast(by_asset[j], params))
            if pos.shape != (n, k):
                raise BacktestError(
                    f"{name}.batch_positions returned shape {pos.shape}; "
                    f"expected (n_bars, n_sets) = {(n, k)}"
                )
            return pos

        return batch
    wide = np.empty((n_assets, n, k))
    names = list(params)
    for i in range(k):
        one = {c: _plain(params[c][i]) for c in names}
        wide[:, :, i] = strategy_output(strategy_cls(**one), bars).to_numpy().T
    return lambda j: wide[j]


def _in_order(pos: Any) -> NDArray[np.float64]:
    """Float positions, row- or column-major as they came (both read fast), else row-major."""
    pos = np.asarray(pos, dtype=np.float64)
    return pos if pos.flags.c_contiguous or pos.flags.f_contiguous else np.ascontiguousarray(pos)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def block_positions(
    prices: Bars,
    close: NDArray[np.float64],
    strategy_cls: type,
    columns: Mapping[str, NDArray[Any]],
    by_asset: NDArray[np.float64],
) -> Callable[[int, int], Callable[[int], NDArray[np.float64]]]:
    """``(lo, hi) -> (j -> (n_bars, hi - lo) positions of asset j for sets lo..hi)``.

    :func:`set_positions` for a block of the sets in ``columns`` (name -> one value
    per set), every block reading the same asset-major closes ``by_asset``.
    """

    def block(lo: int, hi: int) -> Callable[[int], NDArray[np.float64]]:
        params = {c: v[lo:hi] for c, v in columns.items()}
        return set_positions(prices, close, strategy_cls, params, hi - lo, by_asset)

    return block


def lanes_for(strategy_cls: type, k: int) -> int:
    """Threads for the generic path: numba's, for a strategy with its own fast path.

    One in a search's worker process (:data:`backtest.engine._fused.SERIAL`), for
    fewer than ``MIN_PARALLEL_SETS`` sets, for a strategy answering with one
    ``positions`` call per set (plain Python, often pandas: little to gain, and
    nothing asks it to be thread-safe), and where numba's threading layer is
    ``workqueue`` (which refuses parallel kernels launched from two threads at once,
    as a strategy's own ``parallel=True`` code would be).
    """
    from backtest.engine._fused import lanes_for_sets
    from backtest.strategies._checks import fast_method

    lanes = lanes_for_sets(k)
    if lanes < 2:
        return 1
    if fast_method(strategy_cls) != "batch_positions" or _threading_layer() == "workqueue":
        return 1
    return lanes


def _threading_layer() -> str:
    """Numba's threading layer, starting it with a tiny parallel kernel if need be."""
    try:
        return str(numba.threading_layer())
    except ValueError:  # no parallel kernel has run yet
        from backtest.engine._fused_stats import return_metrics

        return_metrics(np.zeros((1, 2)), 1, 1)
        return str(numba.threading_layer())
