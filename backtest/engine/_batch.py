"""The batched path: many parameter sets of one strategy in one pass, no Python call per set."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest import metrics as m
from backtest.data._bars import Bars, as_bars
from backtest.data._check import check_bars
from backtest.engine._costs import bar_returns, cost_rate, is_per_asset, uniform_costs
from backtest.engine._declared import apply_declared, declared_keys
from backtest.engine._params import ENGINE_KEYS, EngineParams, engine_params
from backtest.engine._periods import resolve_periods_per_year
from backtest.engine._set_positions import block_positions, lanes_for
from backtest.engine._targets import outputs_weights, resolve_weights
from backtest.engine._universe import is_plain, strategy_bars
from backtest.errors import ConfigError

if TYPE_CHECKING:
    from backtest.engine._generic import BlockPositions


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Many parameter sets of one strategy, evaluated in one pass.

    Attributes:
        metrics: One row per parameter set: the parameters, then every metric.
        returns: Portfolio returns, shape ``(n_bars, k)``, when asked for.
    """

    metrics: pd.DataFrame
    returns: NDArray[np.float64] | None = None


def _param_frame(param_sets: object) -> pd.DataFrame:
    if isinstance(param_sets, pd.DataFrame):
        frame = param_sets.reset_index(drop=True)
    elif isinstance(param_sets, Mapping):
        frame = pd.DataFrame({k: list(v) for k, v in param_sets.items()})
    else:
        frame = pd.DataFrame(list(param_sets))  # type: ignore[call-overload]
    if len(frame) == 0:  # (a strategy without parameters has sets without columns)
        raise ConfigError("simulate_batch needs at least one parameter set", key="param_sets")
    return frame


def simulate_batch(
    prices: Bars | pd.DataFrame,
    strategy_cls: type,
    param_sets: pd.DataFrame | Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    *,
    fee_bps: float | Mapping[str, float] = 0.0,
    slippage_bps: float | Mapping[str, float] = 0.0,
    weights: Mapping[str, float] | None = None,
    periods_per_year: float | None = None,
    keep_returns: bool | Sequence[bool] | NDArray[np.bool_] = False,
    chunk_size: int | None = None,
    check_lookahead: bool = True,
    **options: Any,
) -> BatchResult:
    """Backtest many parameter sets of one strategy without a Python call per set.

    As :func:`~backtest.engine.simulate` (and the command line): the data is checked
    with the same named errors (:func:`~backtest.data.check_bars`),
    ``periods_per_year`` is inferred from the index when not given, and the strategy is
    checked for look-ahead on the first set it accepts (``check_lookahead=False``
    skips it). A strategy's own engine settings (exits declared as attributes or
    fields) are read per set from its instance (:mod:`backtest.engine._declared`); a
    column ``engine.<key>`` for a key the strategy declares is a ``ConfigError``.

    Parameter sets may mix strategy parameters with engine options as ``engine.<key>``
    columns (``engine.rebalance``, ``engine.target_volatility``, ``engine.stop_loss``, ...):
    each set then runs with its own options.

    With engine v1's options only (proportional costs, ``rebalance=bar``, ``close``
    fills, no limits), ``SmaCross``, ``Momentum`` (with stops too) and ``MeanReversion``
    run on fused compiled kernels (:mod:`backtest.engine._fused`): one signal row per
    distinct window, then one pass over the bars per set computing positions, costs,
    trades and every metric, in parallel over sets, without a ``(n_bars, k)`` matrix.
    Other legacy (positions) strategies without stops take the generic path: blocks of
    sets, on several threads, get their positions from ``strategy_cls.batch_positions``
    (one array per asset) and compiled kernels (:mod:`backtest.engine._generic`, v1's
    per-asset sleeve formula) turn them into portfolio returns, trade counts, exposure,
    turnover and every metric. Any other option, any stop (engine option or a
    strategy class attribute), a weights strategy or a cross-sectional strategy with
    ``batch_weights`` takes the kernel path (:mod:`backtest.engine._batch_kernel`): the
    single backtest's per-bar state machine for every set in a compiled parallel loop.
    Memory is bounded by ``chunk_size`` sets at a time. On a real universe (listings,
    a tradable set, corporate actions: :mod:`backtest.engine._universe`) the fused
    kernels are skipped: positions strategies without stops take the generic path fed
    the tradable mask and total returns (:mod:`backtest.engine._universe_batch`),
    everything else the per-bar kernel.

    A strategy class without a fast path of its own (no ``batch_positions`` /
    ``batch_weights``, or one inherited from a class above the one defining its
    ``positions``: see :func:`backtest.strategies.has_fast_path`) gets its output from
    one ``positions`` call per set (checked as :func:`~backtest.engine.target_weights`
    checks it), then the same kernels.

    Args:
        prices: :class:`~backtest.data.Bars` or validated wide closes.
        strategy_cls: A strategy class; with a fast path of its own (every built-in)
            no Python call per set, else one ``positions`` call per set.
        param_sets: A frame with one row per set, a mapping of name -> values, or a
            list of dicts.
        fee_bps: Commission per unit of traded notional, in basis points: a number, or
            ``{symbol: bps}`` with a ``default`` (per-asset costs run on the per-bar
            kernel unless every asset is priced alike; a mapping is not searchable).
        slippage_bps: Slippage per unit of traded notional, in basis points (as ``fee_bps``).
        weights: Symbol -> portfolio weight; equal weights when empty.
        periods_per_year: Bars per year, for annualised metrics (inferred from the index
            when None, as the command line does).
        keep_returns: Also return the ``(n_bars, k)`` matrix of portfolio returns; a
            boolean mask of length ``k`` keeps only those sets' columns, in order.
        chunk_size: Sets evaluated at once (default: a block that fits the CPU cache on
            the generic path, about 8 MB of targets on the per-bar kernel path).
        check_lookahead: Check the strategy for look-ahead first (on one set).
        **options: Further engine options (see :func:`~backtest.engine.simulate`).

    Returns:
        A :class:`BatchResult` whose metrics equal :func:`simulate`'s for each set.

    Raises:
        ConfigError: a bad option or set (the first, named), an ``engine.<key>`` column
            for a key the strategy declares itself.
        DataValidationError: bad data, as :func:`~backtest.engine.simulate`.
        StrategyContractError: the strategy looks ahead.
    """
    from backtest.engine import _exits
    from backtest.engine._batch_kernel import kernel_batch
    from backtest.strategies._checks import require_strategy_class

    require_strategy_class(strategy_cls)
    bars = as_bars(prices)
    check_bars(bars)
    prices = bars.close
    # a per-asset cost mapping pricing every asset alike (one asset) is its number: v1's paths
    fee_bps, slippage_bps = uniform_costs(fee_bps, slippage_bps, bars.symbols)
    given = _param_frame(param_sets)
    k = len(given)
    keep = _keep_mask(keep_returns, k)
    ppy_f = resolve_periods_per_year(bars.index, periods_per_year)
    periods_per_year = int(ppy_f) if float(ppy_f).is_integer() else ppy_f
    stops = {key: options.pop(key) for key in list(options) if key in _exits.STOP_FIELDS}
    named = {"fee_bps": fee_bps, "slippage_bps": slippage_bps, "weights": weights,
             "periods_per_year": ppy_f}  # fmt: skip
    try:
        base = engine_params(**named, **options)
    except ConfigError as exc:  # a key the sets' own columns complete (sizing=risk, its risk)
        own = {str(c).removeprefix("engine."): v for c, v in given.iloc[0].items()
               if str(c).removeprefix("engine.") in ENGINE_KEYS
               and str(c).startswith("engine.")} if k else {}  # fmt: skip
        if exc.key is None or exc.key.removeprefix("engine.") not in own:
            raise
        base = engine_params(**named, **{**options, **own})
    # the strategy's own exits, per set from its instances (engine/_declared.py)
    frame, stops = apply_declared(strategy_cls, given, stops)
    rules = _exits.stop_rules(None, None, **stops)
    engine_names = [
        str(c).removeprefix("engine.") for c in frame.columns if str(c).startswith("engine.")
    ]
    if check_lookahead:
        from backtest.engine._batch_kernel import split_columns
        from backtest.engine._checks import check_sets_lookahead

        own, engine_frame = split_columns(frame, strategy_cls)
        check_sets_lookahead(
            strategy_cls, strategy_bars(bars), own, engine_frame, range(k), {**named, **options}
        )
    only_stop_columns = set(engine_names) <= set(_exits.STOP_FIELDS)
    # engine v1 (sleeves): the fused kernels and the generic path; anything else (or a
    # weights strategy) goes to the per-bar kernel of simulate()
    # a real universe (listings, a tradable set, corporate actions) takes the per-bar kernel
    v1 = only_stop_columns and _sleeve_sets(strategy_cls, base, ppy_f)
    plain = is_plain(bars)
    if not v1 or rules.active or engine_names:
        fused = None
        if v1 and plain:
            from backtest.engine import _fused
            from backtest.engine._single import check_inputs, price_arrays

            check_inputs(bars, base, rules)
            arrays = price_arrays(bars)
            ohlc = tuple(
                arr if bars.has(f) else None
                for arr, f in zip(arrays, ("open", "high", "low"), strict=True)
            )
            fused = _fused.fused_batch(
                prices.to_numpy(dtype=np.float64), strategy_cls, frame,
                cost=cost_rate(fee_bps, slippage_bps),
                weights=resolve_weights(prices.columns, weights),
                periods_per_year=periods_per_year, keep=keep, ohlc=ohlc, rules=rules,  # type: ignore[arg-type]
            )  # fmt: skip
        if fused is not None:
            values, kept_rows = fused
            return _result(given, values, None if kept_rows is None else kept_rows.T)
        options = {**options, "fee_bps": fee_bps, "slippage_bps": slippage_bps,
                   "weights": weights, **stops}  # fmt: skip
        table, kept_k = kernel_batch(
            bars, strategy_cls, frame, options, periods_per_year=ppy_f, keep=keep,
            chunk_size=chunk_size,
        )  # fmt: skip
        table = pd.concat([given, table.iloc[:, frame.shape[1] :]], axis=1)
        return BatchResult(table, kept_k)
    cost = cost_rate(fee_bps, slippage_bps)
    w = resolve_weights(prices.columns, weights)
    columns = {c: frame[c].to_numpy() for c in frame.columns}
    if not plain:  # a real universe: the generic sleeve path with the mask and total returns
        from backtest.engine._universe_batch import universe_inputs

        view, close, r_assets, hold = universe_inputs(bars)
        values, kept = generic_values(
            view, close, strategy_cls, columns, cost, w, int(periods_per_year), keep, chunk_size,
            r_assets=r_assets, hold=hold,
        )  # fmt: skip
        return _result(given, values, kept)
    close = prices.to_numpy(dtype=np.float64)
    from backtest.engine import _fused

    fused = _fused.fused_batch(
        close,
        strategy_cls,
        frame,
        cost=cost,
        weights=w,
        periods_per_year=periods_per_year,  # type: ignore[arg-type]
        keep=keep,
    )
    if fused is not None:
        values, kept_rows = fused
        return _result(given, values, None if kept_rows is None else kept_rows.T)
    values, kept = generic_values(
        bars, close, strategy_cls, columns, cost, w, int(periods_per_year), keep, chunk_size
    )
    return _result(frame, values, kept)


def _result(
    given: pd.DataFrame, values: NDArray[np.float64], kept: NDArray[np.float64] | None
) -> BatchResult:
    """The ``given`` sets, a column per metric of ``values`` ``(k, 11)``, the kept returns."""
    return BatchResult(
        pd.concat([given, pd.DataFrame(values, columns=list(m.METRIC_NAMES))], axis=1), kept
    )


def generic_values(
    prices: Bars,
    close: NDArray[np.float64],
    strategy_cls: type,
    columns: Mapping[str, NDArray[Any]],
    cost: float,
    w: NDArray[np.float64],
    periods_per_year: int,
    keep: NDArray[np.bool_] | None,
    chunk_size: int | None = None,
    r_assets: NDArray[np.float64] | None = None,
    hold: NDArray[np.bool_] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """The generic path's metrics ``(k, 11)`` and kept returns ``(n_bars, n_kept)``.

    ``columns`` maps each parameter to its ``k`` values; ``r_assets`` are the bar
    returns per asset when already computed (a search asks many times, a universe
    passes its total returns); ``hold`` ``(n_bars, n_assets)``, where given, zeroes the
    positions of an asset while it may not be held.
    """
    from backtest.engine import _generic
    from backtest.engine._memory import reuse_freed_memory

    k = len(next(iter(columns.values()))) if columns else 1
    by_asset = np.ascontiguousarray(close.T)
    if r_assets is None:
        r_assets = bar_returns(by_asset, axis=1)
    blocks = block_positions(prices, close, strategy_cls, columns, by_asset)
    if hold is not None:
        blocks = _masked(blocks, hold)
    with reuse_freed_memory():
        values, returns = _generic.evaluate_blocks(
            blocks, k, r_assets, cost, w, periods_per_year, keep,
            lanes=lanes_for(strategy_cls, k), block=chunk_size,
        )  # fmt: skip
    if keep is not None and returns is None:
        returns = np.empty((close.shape[0], 0))
    return values, returns


def _masked(blocks: BlockPositions, hold: NDArray[np.bool_]) -> BlockPositions:
    """``blocks`` with each asset's positions 0 on the bars where ``hold`` is false."""

    def masked(lo: int, hi: int) -> Callable[[int], NDArray[np.float64]]:
        per_asset = blocks(lo, hi)

        def asset(j: int) -> NDArray[np.float64]:
            pos = np.asarray(per_asset(j), dtype=np.float64)
            return np.where(hold[:, j, None], pos, 0.0)

        return asset

    return masked


def takes_generic_path(strategy_cls: type, **options: Any) -> bool:
    """Whether :func:`simulate_batch` sends plain sets of ``strategy_cls`` to the generic path.

    Plain: no ``engine.*`` columns; ``options`` are the batch's engine options.
    """
    from backtest.engine import _exits, _fused

    stops = {key: options.pop(key) for key in list(options) if key in _exits.STOP_FIELDS}
    return (
        _sleeve_sets(strategy_cls, engine_params(**options), options.get("periods_per_year"))
        and not _exits.stop_rules(None, None, **stops).active
        and not declared_keys(strategy_cls)  # (its sets' own exits: simulate_batch reads them)
        and strategy_cls not in _fused.FAMILIES
    )


def _sleeve_sets(strategy_cls: type, base: EngineParams, periods_per_year: Any) -> bool:
    """Whether a batch may run on engine v1's sleeves: the fused kernels or the generic path.

    Only v1's options differ from the defaults, the strategy outputs positions without a
    ``batch_weights``, and the bars per year are a whole number; anything else goes to
    the per-bar kernel of :func:`~backtest.engine.simulate`.
    """
    from backtest.engine._levels import has_levels
    from backtest.strategies._checks import fast_method

    return (
        _is_v1(base)
        and not has_levels(strategy_cls)  # its own entry levels: the per-bar kernel's orders
        and fast_method(strategy_cls) != "batch_weights"
        and not outputs_weights(strategy_cls)
        and float(periods_per_year or 0.0).is_integer()
    )


def _is_v1(p: EngineParams) -> bool:
    """Whether only engine v1's options (costs, weights, periods) differ from the defaults.

    Costs per asset (a mapping) are not v1's: they run on the per-bar kernel.
    """
    from dataclasses import replace

    return (
        replace(p, fee_bps=0.0, slippage_bps=0.0, weights={}, periods_per_year=None)
        == EngineParams()
        and not is_per_asset(p.fee_bps)
        and not is_per_asset(p.slippage_bps)
    )


def _keep_mask(keep_returns: object, k: int) -> NDArray[np.bool_] | None:
    """``None`` (keep nothing) or a boolean mask of the sets whose returns are kept."""
    if isinstance(keep_returns, bool | np.bool_):
        return np.ones(k, dtype=bool) if keep_returns else None
    mask = np.asarray(keep_returns, dtype=bool)
    if mask.shape != (k,):
        raise ConfigError(
            f"keep_returns must be a bool or a mask of {k} values, got shape {mask.shape}",
            key="keep_returns",
        )
    return mask
