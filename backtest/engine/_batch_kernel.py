"""The batched path over strategy AND engine parameters: one compiled loop over sets.

Each parameter set may carry its own engine options (``engine.rebalance``,
``engine.target_volatility``, ``engine.stop_loss``, ... as columns of the parameter
frame). Target weights of a chunk of sets come from the strategy's batched form
(``batch_positions`` per asset, or ``batch_weights`` for cross-sectional strategies);
then :func:`run_books` applies the limits and runs :func:`~backtest.engine._kernel.run_book`
for every set, groups of sets on the batched paths' threads: the same state machine as
:func:`simulate`, with no Python call per set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numba
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest import metrics as m
from backtest.data._bars import Bars
from backtest.engine import _exits
from backtest.engine._costs import COST_KEYS, asset_rates, is_per_asset
from backtest.engine._fused import lanes_for_sets
from backtest.engine._kernel import COST_COLUMNS, run_book_compiled
from backtest.engine._lanes import run_chunks
from backtest.engine._levels import batch_levels, check_level_options, has_levels
from backtest.engine._limits import apply_limits
from backtest.engine._order_params import orders_of
from backtest.engine._orders import volatility_scale
from backtest.engine._params import ENGINE_KEYS, EngineParams, engine_params
from backtest.engine._schedule import rebalance_flags
from backtest.engine._sessions import session_arrays
from backtest.engine._targets import outputs_weights, sleeve_weights
from backtest.errors import ConfigError

PREFIX = "engine."
#: Per-set engine fields, in the order of the ``opts`` matrix rows of :func:`run_books`.
_OPT_FIELDS = (
    "units_mode", "next_open", "rebalance_threshold", "capital", "fee", "slip", "fixed_cost",
    "min_commission", "borrow", "financing", "cash", "long_only", "max_weight", "max_gross",
    "target_volatility", "vol_lookback", "stop_loss", "take_profit", "trailing_stop", "max_bars",
    "entry_order", "entry_offset", "entry_valid_bars", "sizing", "risk_per_trade",
    "flat_at_session_end", "max_bars_unit", "max_participation", "impact",
)  # fmt: skip


def split_columns(
    frame: pd.DataFrame, strategy_cls: type | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(strategy parameters, engine options)``: ``engine.<key>`` columns (and bare stop names).

    A bare stop name that is a parameter of ``strategy_cls`` stays the strategy's
    (:func:`~backtest.engine._declared.is_engine_column`).
    """
    from backtest.engine._declared import is_engine_column

    engine = [c for c in frame.columns if is_engine_column(str(c), strategy_cls)]
    for c in engine:
        key = str(c).removeprefix(PREFIX)
        if key not in ENGINE_KEYS and key not in _exits.STOP_FIELDS:
            raise ConfigError(
                f"{c} is not an engine option "
                f"(known: {', '.join(ENGINE_KEYS + _exits.STOP_FIELDS)})",
                key=str(c),
            )
    renamed = frame[engine].rename(columns=lambda c: str(c).removeprefix(PREFIX))
    return frame.drop(columns=engine), renamed


@numba.njit(cache=True, nogil=True)
def run_books(
    lo, hi, open_, high, low, close, vol_close, hold, leave, split, div, targets, sleeve, rebal,
    rebal_of, opts, ppy, atr, use_atr, lock, sess_id, sess_end, volume, inv_vol, fee_of,
    slip_of, levels, ret_out, stats_out, limited_out, cost_out,
):  # pragma: no cover - compiled; equal to simulate() per set in the tests  # fmt: skip
    """Limits + :func:`run_book` for sets ``lo`` to ``hi`` of ``targets[:, :, i]``.

    ``opts[:, i]`` holds the set's options (:data:`_OPT_FIELDS`), ``rebal[rebal_of[i]]``
    its schedule (``rebal`` is ``(n_schedules, n)``). A set's fee (slippage) row is its
    rate for every asset, or NaN for the per-asset rates ``fee_of`` (``slip_of``).
    ``levels[:, :, i]`` are the set's own entry levels (:mod:`._levels`), ``levels`` of
    shape ``(0, 0, 0)`` when the strategy supplies none.
    Targets are 0 where ``hold`` is False (:mod:`backtest.engine._universe`) before the
    limits, which read ``vol_close`` for the volatility overlay. Writes ``ret_out[i]`` (returns),
    ``stats_out[i]``, ``limited_out[i]``
    (fraction of bars a limit bound) and ``cost_out[i]`` (cost totals per column).
    Groups of sets run on the batched paths' threads (:func:`~backtest.engine._lanes.run_chunks`).
    """
    n, a, _ = targets.shape
    masked = hold.shape[0] > 0 and not np.all(hold)
    for i in range(lo, hi):
        o = opts[:, i]
        raw = np.ascontiguousarray(targets[:, :, i])
        if masked:
            for t in range(n):
                for j in range(a):
                    if not hold[t, j]:
                        raw[t, j] = 0.0
        limited = np.empty((n, a))
        flags = np.zeros(n, np.bool_)
        if o[23] == 2.0:  # sizing=volatility: per asset, the book overlay off
            sized = raw * inv_vol * o[14]
            apply_limits(
                sized, vol_close, o[11] != 0.0, o[12], o[13], np.nan, int(o[15]), ppy, limited,
                flags,
            )  # fmt: skip
        else:
            apply_limits(
                raw, vol_close, o[11] != 0.0, o[12], o[13], o[14], int(o[15]), ppy, limited, flags
            )
        costs = np.zeros((n, 6))
        stats = np.zeros(4)
        ret = np.zeros(n)
        stops = np.array([o[16], o[17], o[18]])
        orders = np.array(
            [o[20], o[21], o[22], o[23], o[24], o[12], o[13], o[16], o[25], o[26], o[27], o[28]]
        )
        lv = np.ascontiguousarray(levels[:, :, i]) if levels.shape[0] > 0 else np.zeros((0, 0))
        fee = fee_of if o[4] != o[4] else np.full(a, o[4])
        slip = slip_of if o[5] != o[5] else np.full(a, o[5])
        run_book_compiled(
            open_, high, low, close, limited, raw, hold, leave, split, div, sleeve,
            rebal[rebal_of[i]], o[0] != 0.0,
            o[1] != 0.0, o[2], o[3], fee, slip, o[6], o[7], o[8], o[9], o[10], stops, atr,
            use_atr, int(o[19]), lock, orders, lv, sess_id, sess_end, volume, ret, costs,
            np.zeros((0, 0)),
            np.zeros((0, 10)), stats,
        )  # fmt: skip
        ret_out[i] = ret
        stats_out[i] = stats
        cnt = 0
        for t in range(n):
            if flags[t]:
                cnt += 1
        limited_out[i] = cnt / n if n else 0.0
        for c in range(6):
            cost_out[i, c] = costs[:, c].sum()


def _set_options(
    engine_frame: pd.DataFrame,
    base: Mapping[str, Any],
    base_stops: Mapping[str, Any],
    k: int,
) -> tuple[list[EngineParams], list[Any]]:
    """Validated engine options and stop rules of each set (validated once per distinct combo).

    The strategy's own exits are already in ``engine_frame`` / ``base_stops``
    (:func:`~backtest.engine._declared.apply_declared`).
    """
    rows = engine_frame.to_dict("records") if engine_frame.shape[1] else [{}] * k
    cache: dict[tuple, tuple[EngineParams, Any]] = {}
    params, rules = [], []
    for row in rows:
        key = tuple(map(repr, row.values()))  # (every row has the frame's columns, in order)
        if key not in cache:
            clean = {c: (None if _missing(v) else v) for c, v in row.items()}  # fmt: skip
            eng = {c: v for c, v in clean.items() if c in ENGINE_KEYS}
            for name in COST_KEYS:
                if is_per_asset(eng.get(name)):
                    raise ConfigError(
                        f"engine.{name} per asset ({eng[name]!r}) cannot be searched or set "
                        f"per parameter set: set the mapping as the engine's option and "
                        f"search numbers of basis points (one for every asset)",
                        key=f"engine.{name}",
                    )
            stop = {c: v for c, v in clean.items() if c in _exits.STOP_FIELDS}
            cache[key] = (
                engine_params(**{**base, **eng}),
                _exits.stop_rules(None, None, **{**base_stops, **stop}),
            )
        p, r = cache[key]
        params.append(p)
        rules.append(r)
    return params, rules


def kernel_batch(
    bars: Bars,
    strategy_cls: type,
    frame: pd.DataFrame,
    options: Mapping[str, Any],
    *,
    periods_per_year: float,
    keep: NDArray[np.bool_] | None,
    chunk_size: int | None,
) -> tuple[pd.DataFrame, NDArray[np.float64] | None]:
    """Metrics of every set (and the kept returns), through the per-bar kernel."""
    from backtest.engine._single import check_inputs, volume_array
    from backtest.engine._universe import (
        kernel_array,
        kernel_atr,
        kernel_inputs,
        strategy_bars,
        vol_bars,
    )

    strategy_frame, engine_frame = split_columns(frame, strategy_cls)
    base = {k: v for k, v in options.items() if k in ENGINE_KEYS}
    base_stops = {k: v for k, v in options.items() if k in _exits.STOP_FIELDS}
    k = len(frame)
    set_params, set_rules = _set_options(engine_frame, base, base_stops, k)
    own_levels = has_levels(strategy_cls)
    distinct = {id(p): (p, r) for p, r in zip(set_params, set_rules, strict=True)}
    for p, r in distinct.values():
        check_inputs(bars, p, r)
        if own_levels:
            check_level_options(strategy_cls, p)
    ki = kernel_inputs(bars)
    view = strategy_bars(bars)
    close = ki.close
    vol_close = close if ki.plain else kernel_array(vol_bars(view).close.to_numpy())
    view_close = close if ki.plain else np.ascontiguousarray(view.close.to_numpy(dtype=np.float64))
    n, a = close.shape
    ppy = float(periods_per_year)
    codes = sorted({str(p.rebalance) for p in set_params})
    rebal = np.ascontiguousarray(np.vstack([rebalance_flags(bars.index, _code(c)) for c in codes]))
    rebal_of = np.array([codes.index(str(p.rebalance)) for p in set_params], dtype=np.int64)
    rows = {i: _opt_row(p, r, ppy) for i, (p, r) in distinct.items()}  # (sets share them)
    opts = np.array([rows[id(p)] for p in set_params]).T
    opts = np.ascontiguousarray(opts)
    rules0 = r0 = set_rules[0]
    same = (r0.use_atr, r0.lock, r0.atr_lookback)
    if any((r.use_atr, r.lock, r.atr_lookback) != same for r in set_rules):
        raise ConfigError(
            "engine.stop_unit, atr_lookback and stop_reentry must be the same for every set",
            key="engine.stop_unit",
        )
    open_, high, low = ki.open, ki.high, ki.low
    atr = kernel_atr(rules0, bars, ki, view)
    weights_output = outputs_weights(strategy_cls)
    sessions = session_arrays(bars.index)
    inv_vol = np.zeros((n, a))
    vol_sized = [p for p in set_params if p.sizing == "volatility"]
    if vol_sized:
        if len({p.vol_lookback for p in vol_sized}) > 1:
            raise ConfigError(
                "engine.vol_lookback must be the same for every set with engine.sizing=volatility",
                key="engine.vol_lookback",
            )
        inv_vol = volatility_scale(vol_close, vol_sized[0].vol_lookback, ppy)
    sleeve = sleeve_weights(strategy_cls, bars.symbols, base.get("weights"))
    fee_of, slip_of = asset_rates(
        base.get("fee_bps", 0.0), base.get("slippage_bps", 0.0), bars.symbols
    )
    # about 8 MB of targets (and as much of returns) a chunk: they stay in the CPU's cache
    # between the strategy writing them and the lanes reading them (32 MB cost a fifth
    # more CPU per set on the orders benchmark's grid)
    chunk = chunk_size or max(1, 1_000_000 // max(n * a, 1))
    ret_all = np.empty((k, n)) if keep is not None else None
    metrics = np.empty((k, len(m.METRIC_NAMES)))
    extra = np.empty((k, 1 + len(COST_COLUMNS)))
    for lo in range(0, k, chunk):
        hi = min(k, lo + chunk)
        params = {c: strategy_frame[c].to_numpy()[lo:hi] for c in strategy_frame.columns}
        targets = _targets(strategy_cls, view, view_close, params, hi - lo, sleeve, weights_output)
        levels = (
            batch_levels(strategy_cls, view, params, hi - lo, ki.plain)
            if own_levels
            else np.zeros((0, 0, 0))
        )
        ret = np.zeros((hi - lo, n))
        stats = np.zeros((hi - lo, 4))
        limited = np.zeros(hi - lo)
        costs = np.zeros((hi - lo, 6))
        books = (open_, high, low, close, vol_close, *ki.rule_arrays(),
                 targets, sleeve, rebal, rebal_of[lo:hi],
                 np.ascontiguousarray(opts[:, lo:hi]), ppy, atr, rules0.use_atr, rules0.lock,
                 *sessions, volume_array(bars), inv_vol, fee_of, slip_of, levels, ret, stats,
                 limited, costs)  # fmt: skip
        run_chunks(lambda first, last, books=books, ret=ret, out=metrics[lo:hi]: _group(
            first, last, books, ret, out, ppy), hi - lo, lanes_for_sets(hi - lo))  # fmt: skip
        r0 = len(m.RETURN_METRIC_NAMES)
        metrics[lo:hi, r0] = stats[:, 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            metrics[lo:hi, r0 + 1] = np.where(stats[:, 0] > 0, stats[:, 1] / stats[:, 0], np.nan)
        metrics[lo:hi, r0 + 2] = stats[:, 2] / n
        metrics[lo:hi, r0 + 3] = stats[:, 3] / n * ppy
        # costs over the initial capital; the sleeve accounting's are fractions already
        capital = np.array([1.0 if p.sleeves else p.capital for p in set_params[lo:hi]])
        extra[lo:hi, 0] = limited
        extra[lo:hi, 1:] = costs / capital[:, None]
        if ret_all is not None:
            ret_all[lo:hi] = ret
    table = frame.copy()
    for col, name in enumerate(m.METRIC_NAMES):
        table[name] = metrics[:, col]
    table["limit_scaled_fraction"] = extra[:, 0]
    for c, name in enumerate(COST_COLUMNS):
        table[f"cost_{name}"] = extra[:, 1 + c]
    kept = None
    if ret_all is not None and keep is not None:
        kept = np.ascontiguousarray(ret_all[keep].T)
    return table, kept


def _group(
    first: int,
    last: int,
    books: tuple[Any, ...],
    ret: NDArray[np.float64],
    out: NDArray[np.float64],
    ppy: float,
) -> None:
    """Sets ``first`` to ``last`` of a chunk on one lane: their books, then return metrics.

    The metrics of a group are its sets' (column-contiguous ``ret[first:last].T``, reduced
    column by column: equal bit for bit to one call over the chunk), computed on the
    lane so that the lanes' numpy work overlaps.
    """
    run_books(first, last, *books)
    values = m.return_metrics(ret[first:last].T, periods_per_year=_ppy(ppy))
    for col, name in enumerate(m.RETURN_METRIC_NAMES):
        out[first:last, col] = np.atleast_1d(values[name])


def _missing(value: object) -> bool:
    """NaN or None (a missing value of a parameter frame: the option is off)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _ppy(ppy: float) -> Any:
    return int(ppy) if float(ppy).is_integer() else ppy


def _code(code: str) -> str | int:
    return int(code) if code.isdigit() else code


def _rate(bps: float | Mapping[str, float]) -> float:
    """A cost's rate row: the fraction, or NaN for a per-asset mapping (``fee_of``)."""
    return math.nan if is_per_asset(bps) else float(bps) / 1e4  # type: ignore[arg-type]


def _opt_row(p: EngineParams, r: Any, ppy: float) -> list[float]:
    inf = math.inf
    return [
        float(not p.sleeves), float(p.next_open), p.rebalance_threshold, p.capital,
        _rate(p.fee_bps), _rate(p.slippage_bps), p.fixed_cost, p.min_commission,
        p.borrow_rate / ppy, p.financing_rate / ppy, p.cash_rate / ppy, float(p.long_only),
        inf if p.max_weight is None else p.max_weight,
        inf if p.max_gross_leverage is None else p.max_gross_leverage,
        math.nan if p.target_volatility is None else p.target_volatility, float(p.vol_lookback),
        r.stop_loss, r.take_profit, r.trailing_stop, float(r.max_bars),
        *orders_of(p, r)[:5], *orders_of(p, r)[8:],
    ]  # fmt: skip


def _targets(
    strategy_cls: type,
    bars: Bars,
    close: NDArray[np.float64],
    params: Mapping[str, NDArray],
    k: int,
    sleeve: NDArray[np.float64],
    weights_output: bool,
) -> NDArray[np.float64]:
    """``(n, a, k)`` unlimited target weights of ``k`` sets.

    Sets without a strategy parameter (only ``engine.<key>`` columns, or a strategy with
    none) share one output, computed once.
    """
    from backtest.engine._targets import strategy_output
    from backtest.strategies._checks import fast_method

    n, a = close.shape
    if not params and k > 1:
        one = _targets(strategy_cls, bars, close, params, 1, sleeve, weights_output)
        return np.repeat(one, k, axis=2)
    fast = fast_method(strategy_cls)
    if fast == "batch_weights":
        data = bars if getattr(strategy_cls, "inputs", "close") == "bars" else close
        out = np.asarray(strategy_cls.batch_weights(data, params), dtype=np.float64)  # type: ignore[attr-defined]
        if out.shape != (n, a, k):
            raise ConfigError(
                f"{strategy_cls.__name__}.batch_weights returned shape {out.shape}, "
                f"expected {(n, a, k)}",
                key="strategy",
            )
        # NaN targets are flat: the limits turn them into 0 inside the kernel
        return out if weights_output else out * sleeve[None, :, None]
    out = np.empty((n, a, k))
    if fast is None:  # no fast path of its own: one positions call per set
        names = list(params)
        for i in range(k):
            one = {c: _plain(params[c][i]) for c in names}
            values = strategy_output(strategy_cls(**one), bars).to_numpy()
            out[:, :, i] = values * sleeve[None, :]
        return out
    for j in range(a):
        pos = np.asarray(
            strategy_cls.batch_positions(np.ascontiguousarray(close[:, j]), params),  # type: ignore[attr-defined]
            np.float64,
        )
        if pos.shape != (n, k):
            raise ConfigError(
                f"{strategy_cls.__name__}.batch_positions returned shape {pos.shape}, "
                f"expected {(n, k)}",
                key="strategy",
            )
        out[:, j, :] = np.where(np.isnan(pos), 0.0, pos) * sleeve[j]
    return out


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value
