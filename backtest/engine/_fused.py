"""The fast path of :func:`backtest.engine.simulate_batch` for the common strategy families.

For :class:`~backtest.strategies.SmaCross` and :class:`~backtest.strategies.Momentum`
the positions are a comparison of two signals, so a batch of parameter sets needs
only one signal row per distinct window (a moving average, a trailing return), not a
``(n_bars, k)`` matrix of positions. :class:`~backtest.strategies.MeanReversion` needs
one z-score row per distinct lookback, and its entry / exit rule runs inside the
kernel, on the previous bar's position. :func:`fused_batch` builds those rows and hands
them to the compiled kernels of :mod:`backtest._fused_kernels`, which compute every
metric of every set in one pass over the bars, in parallel over sets.

Other strategies (or subclasses, which may change ``positions``) return ``None`` here
and take the generic ``batch_positions`` path, as does a family whose rows would not
fit :data:`TABLE_BUDGET_BYTES` (where no on-the-fly source exists) or, with stops, any
family but the first two.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numba
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.engine import _fused_kernels as k
from backtest.engine import _fused_stops as ks
from backtest.engine._costs import bar_returns
from backtest.engine._exits import StopRules, validate_stop_rules
from backtest.engine._fused_stats import N_METRICS, N_OUT, finish_growth
from backtest.engine._lanes import run_chunks, run_in_lanes
from backtest.engine._rows import kept_rows
from backtest.strategies import MeanReversion, Momentum, SmaCross
from backtest.strategies._base import batch_params

#: Signal tables larger than this are recomputed on the fly instead (bytes).
TABLE_BUDGET_BYTES = 64 * 2**20
#: Fewer sets than this run on the calling thread (no thread start-up per small batch).
MIN_PARALLEL_SETS = 8
#: Set in worker processes of a search: run on the calling thread only (the workers
#: already use every core).
SERIAL = False

FAMILIES: dict[type, tuple[str, ...]] = {
    SmaCross: ("fast", "slow", "long_short"),
    Momentum: ("lookback", "skip", "long_short"),
    MeanReversion: ("lookback", "entry_z", "exit_z"),
}
#: Families whose kernels also take stops (the others take the per-bar kernel then).
_WITH_STOPS = (SmaCross, Momentum)


#: Per-set exit columns the fused kernels take (plain or as ``engine.<name>``).
STOP_COLUMNS = ("stop_loss", "take_profit", "trailing_stop", "max_bars")


def _stop_name(column: str) -> str:
    return column.removeprefix("engine.")


def supports(strategy_cls: type, columns: list[str]) -> bool:
    """Whether ``strategy_cls`` with these parameter columns has a fused kernel."""
    names = FAMILIES.get(strategy_cls)
    if names is None:
        return False
    strategy = {c for c in columns if _stop_name(c) not in STOP_COLUMNS}
    return strategy <= set(names)


def _stop_table(
    params: dict[str, NDArray], rules: StopRules, count: int
) -> tuple[NDArray[np.float64], bool]:
    """``(k, 4)`` per-set stop_loss, take_profit, trailing_stop, max_bars; whether any is set.

    Each set's levels are validated like ``engine.<name>`` (the first bad one is named).
    """
    table = np.empty((count, 4))
    base = (rules.stop_loss, rules.take_profit, rules.trailing_stop, float(rules.max_bars))
    for col, name in enumerate(STOP_COLUMNS):
        table[:, col] = base[col]
        for key in (name, f"engine.{name}"):
            if key in params:
                values = np.array(
                    [np.nan if v is None else v for v in params.pop(key)], dtype=np.float64
                )
                if name == "max_bars":
                    values = np.where(np.isnan(values), 0.0, values)
                table[:, col] = values
    for col, name in enumerate(STOP_COLUMNS[:3]):
        levels = table[:, col]
        bad = ~np.isnan(levels) & ~(levels > 0)
        if not rules.use_atr:
            bad |= levels >= 1
        if bad.any():
            validate_stop_rules(stop_unit=rules.stop_unit, **{name: float(levels[bad][0])})
    bars = table[:, 3]
    if ((bars < 0) | (bars != np.floor(bars))).any():
        validate_stop_rules(max_bars=float(bars[(bars < 0) | (bars != np.floor(bars))][0]))
    active = bool((~np.isnan(table[:, :3])).any() or (bars > 0).any())
    return table, active


#: A family's two windows and ``long_short`` per set.
Windows = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_]]
#: The kernels' inputs: source, table, data, a, b, start, long_short (see ``run_sets``).
Inputs = tuple[int, NDArray, NDArray, NDArray, NDArray, NDArray, NDArray]
#: The sets a family refuses, from its two windows (the strategy's own checks).
_REFUSED: dict[type, Callable[[NDArray, NDArray], NDArray[np.bool_]]] = {
    SmaCross: lambda fast, slow: (fast < 1) | (fast >= slow),
    Momentum: lambda lookback, skip: (lookback < 1) | (skip < 0),
}


def _windows(strategy_cls: type, params: Mapping[str, NDArray]) -> Windows:
    """The two windows and ``long_short`` of every set (the names in :data:`FAMILIES`).

    The first set the family refuses is built, so that it raises the strategy's own
    ``ConfigError`` naming the parameter.
    """
    first, second, long_short = batch_params(strategy_cls, params, *FAMILIES[strategy_cls])
    bad = np.flatnonzero(_REFUSED[strategy_cls](first, second))
    if len(bad):
        strategy_cls(int(first[bad[0]]), int(second[bad[0]]))  # raises
    return first, second, long_short


def _sma_inputs(by_asset: NDArray[np.float64], windows: Windows) -> Inputs:
    fast, slow, long_short = windows
    n_assets, n = by_asset.shape
    csum = np.zeros((n_assets, n + 1))
    np.cumsum(by_asset, axis=1, out=csum[:, 1:])
    start = slow - 1
    lengths, inverse = np.unique(np.concatenate([fast, slow]), return_inverse=True)
    if len(lengths) * n * n_assets * 8 > TABLE_BUDGET_BYTES:
        return k.SMA_CUMSUM, np.empty((0, 0, 0)), csum, fast, slow, start, long_short
    table = np.full((len(lengths), n_assets, n), np.nan)
    for row, w in enumerate(lengths):
        if w <= n:
            # the same operations as strategies._sma_cross.rolling_mean
            table[row, :, w - 1 :] = (csum[:, w:] - csum[:, :-w]) / int(w)
    rows = inverse.astype(np.int64)
    return k.TABLE, table, np.empty((0, 0)), rows[: len(fast)], rows[len(fast) :], start, long_short


def _momentum_inputs(by_asset: NDArray[np.float64], windows: Windows) -> Inputs:
    lookback, skip, long_short = windows
    start = lookback + skip
    n_assets, n = by_asset.shape
    pairs, inverse = np.unique(np.column_stack([lookback, skip]), axis=0, return_inverse=True)
    if (len(pairs) + 1) * n * n_assets * 8 > TABLE_BUDGET_BYTES:
        return k.MOMENTUM_CLOSE, np.empty((0, 0, 0)), by_asset, lookback, skip, start, long_short
    table = np.full((len(pairs) + 1, n_assets, n), np.nan)
    table[len(pairs)] = 0.0  # the zero line a trailing return is compared with
    for row, (lb, sk) in enumerate(pairs):
        first = lb + sk
        if first < n:
            # the same operations as strategies._momentum._trailing_return
            table[row, :, first:] = (
                by_asset[:, first - sk : n - sk] / by_asset[:, : n - first] - 1.0
            )
    rows = inverse.ravel().astype(np.int64)
    zero = np.full(len(lookback), len(pairs), dtype=np.int64)
    return k.TABLE, table, np.empty((0, 0)), rows, zero, start, long_short


def _mean_reversion_inputs(
    by_asset: NDArray[np.float64], params: Mapping[str, NDArray], th: NDArray[np.float64]
) -> Inputs | None:
    """A z-score row per distinct lookback (the strategy's own ``_zscores``); ``th`` filled."""
    from backtest.strategies._mean_reversion import _zscores

    n_assets, n = by_asset.shape
    lookback, entry, exit_ = MeanReversion.param_arrays(params)
    th[:, 0] = entry
    th[:, 1] = exit_
    windows, rows = np.unique(lookback, return_inverse=True)
    if len(windows) * n * n_assets * 8 > TABLE_BUDGET_BYTES:
        return None
    table = np.empty((len(windows), n_assets, n))

    def fill(cell: tuple[int, int]) -> None:  # _zscores releases the GIL: rows in threads
        row, j = cell
        table[row, j] = _zscores(by_asset[j], int(windows[row]))

    cells = [(row, j) for row in range(len(windows)) for j in range(n_assets)]
    run_in_lanes(fill, cells, lanes_for_sets(len(cells)))
    count = len(lookback)
    zeros = np.zeros(count, dtype=np.int64)
    return (k.MEAN_REVERSION, table, np.empty((0, 0)), rows.ravel().astype(np.int64), zeros,
            zeros, np.zeros(count, dtype=bool))  # fmt: skip


def fused_batch(
    close: NDArray[np.float64],
    strategy_cls: type,
    frame: pd.DataFrame | Mapping[str, NDArray[Any]],
    *,
    cost: float,
    weights: NDArray[np.float64],
    periods_per_year: int,
    keep: NDArray[np.bool_] | None = None,
    ohlc: tuple[NDArray[np.float64] | None, NDArray[np.float64] | None, NDArray[np.float64] | None]
    | None = None,
    rules: StopRules | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None] | None:
    """Every metric of every parameter set in ``frame``, or ``None`` without a fused kernel.

    Args:
        close: Closes, ``(n_bars, n_assets)``.
        strategy_cls: The strategy class (exactly ``SmaCross`` or ``Momentum``).
        frame: One row per parameter set (a frame, or name -> array).
        cost: Cost per unit of traded notional, as a fraction.
        weights: Portfolio weight per asset.
        periods_per_year: Bars per year.
        keep: Which sets' portfolio returns to return (``None``: none).
        ohlc: Opens, highs and lows like ``close`` (each may be ``None``), for exits.
        rules: The exits of every set; per-set columns ``stop_loss``, ``take_profit``,
            ``trailing_stop`` and ``max_bars`` of ``frame`` (also as ``engine.<name>``,
            NaN/None = none) override them (only ``execution = close``, ``rebalance = bar``).

    Returns:
        ``(metrics, kept)``: metrics ``(k, 11)`` in ``METRIC_NAMES`` order and the kept
        returns ``(n_kept, n_bars)`` (``None`` when nothing is kept).

    Raises:
        ConfigError: an invalid parameter set (the first one, naming the parameter).
        DataValidationError: stop levels on data without highs and lows.
    """
    if not supports(strategy_cls, [str(c) for c in frame]):
        return None
    # every input of the kernels is asset-major: (n_assets, n_bars), each asset's bars in order
    by_asset = np.ascontiguousarray(np.asarray(close, dtype=np.float64).T)
    n = by_asset.shape[1]
    params = {str(c): np.asarray(frame[c]) for c in frame}
    count = len(next(iter(params.values()))) if params else len(frame)
    rules = rules or StopRules()
    stops, with_stops = _stop_table(params, rules, count)
    if with_stops and strategy_cls not in _WITH_STOPS:
        return None
    th = np.zeros((count, 2))
    if strategy_cls is MeanReversion:
        built = _mean_reversion_inputs(by_asset, params, th)
    else:
        build = _sma_inputs if strategy_cls is SmaCross else _momentum_inputs
        built = build(by_asset, _windows(strategy_cls, params))
    if built is None:  # its signal table would not fit the budget: the generic path
        return None
    source, table, data, a, b, start, long_short = built
    r = bar_returns(by_asset, axis=1)
    keep_slot, kept = kept_rows(keep, count, n)
    args = (
        source,
        table,
        data,
        r,
        np.ascontiguousarray(weights, dtype=np.float64),
        a,
        b,
        start,
        long_short,
        th,
        float(cost),
        int(periods_per_year),
        keep_slot,
        kept,
    )
    out = np.empty((count, N_OUT))
    lanes = lanes_for_sets(count)
    if with_stops:
        prices, atr = _stop_prices(by_asset, ohlc, rules, stops)
        stop_args = (
            *args[:3],
            prices,
            atr,
            *args[4:9],
            float(cost),
            stops,
            rules.use_atr,
            rules.lock,
            *args[11:],
        )  # fmt: skip (args[9:11]: th, cost)
        run_chunks(lambda lo, hi: ks.run_sets(lo, hi, *stop_args, out), count, lanes)
    else:
        run_chunks(lambda lo, hi: k.run_sets(lo, hi, *args, out), count, lanes)
    finish_growth(out, n, int(periods_per_year))
    return out[:, :N_METRICS], (kept if len(kept) else None)


def lanes_for_sets(count: int) -> int:
    """Threads for ``count`` sets: numba's; one in a search's worker or for few sets."""
    return 1 if SERIAL or count < MIN_PARALLEL_SETS else numba.get_num_threads()


def _stop_prices(
    by_asset: NDArray[np.float64],
    ohlc: tuple[NDArray[np.float64] | None, NDArray[np.float64] | None, NDArray[np.float64] | None]
    | None,
    rules: StopRules,
    stops: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Opens, highs, lows and closes ``(4, n_assets, n)`` and the ATR the exits read.

    Asset-major (the ATR ``(n_assets, n)``), as every input of the kernels; ``by_asset``
    are the closes, asset-major; ``ohlc`` the opens, highs and lows as wide arrays.
    """
    from backtest.engine._exits import require_high_low, stop_atr

    open_, high, low = ohlc if ohlc is not None else (None, None, None)
    if (~np.isnan(stops[:, :3])).any():
        require_high_low(open_, high, low)
    prices = np.empty((4, *by_asset.shape))
    prices[3] = by_asset
    for row, wide in enumerate((open_, high, low)):
        prices[row] = by_asset if wide is None else wide.T
    atr = stop_atr(rules, high, low, by_asset.T)
    return prices, np.ascontiguousarray(atr.T)
