"""The batched path: many parameter sets of one strategy in one pass, no Python call per set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest import metrics as m
from backtest.data._bars import Bars, as_bars
from backtest.engine._costs import bar_returns, cost_rate
from backtest.engine._params import EngineParams, engine_params
from backtest.engine._periods import resolve_periods_per_year
from backtest.engine._targets import resolve_weights
from backtest.engine._trades import _trade_step
from backtest.errors import ConfigError


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Many parameter sets of one strategy, evaluated in one pass.

    Attributes:
        metrics: One row per parameter set: the parameters, then every metric.
        returns: Portfolio returns, shape ``(n_bars, k)``, when asked for.
    """

    metrics: pd.DataFrame
    returns: NDArray[np.float64] | None = None


@numba.njit(cache=True, nogil=True)
def _accumulate_asset(
    pos: NDArray[np.float64],
    r: NDArray[np.float64],
    cost: float,
    weight: float,
    port: NDArray[np.float64],
    n_trades: NDArray[np.float64],
    n_wins: NDArray[np.float64],
    exposure: NDArray[np.float64],
    turnover: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled; equal to simulate() in the tests
    """Add one asset's weighted returns of ``k`` parameter sets to ``port`` in place.

    Counts trades and winning trades with :func:`_trade_step`, as :func:`_trades_kernel`
    does, and sums gross exposure and turnover, so batched metrics equal :func:`simulate`'s.
    """
    n, k = pos.shape
    growth = np.ones(k)
    prev = np.zeros(k)
    for t in range(n):
        rt = r[t]
        for i in range(k):
            cur = pos[t, i]
            if cur != cur:  # NaN while warming up means flat
                cur = 0.0
            p = prev[i]
            d = abs(cur - p)
            port[t, i] += weight * ((1.0 + p * rt) * (1.0 - cost * d) - 1.0)
            exposure[i] += weight * abs(cur)
            turnover[i] += weight * d
            growth[i], ended, ended_growth = _trade_step(growth[i], p, cur, rt, cost)
            if ended:
                n_trades[i] += 1.0
                if ended_growth > 1.0:
                    n_wins[i] += 1.0
            prev[i] = cur
    for i in range(k):
        if prev[i] != 0.0:
            n_trades[i] += 1.0
            if growth[i] > 1.0:
                n_wins[i] += 1.0


def _return_metrics(port: NDArray[np.float64], ppy: float) -> dict[str, NDArray[np.float64]]:
    """The return-based metrics of every column of ``port``, in report order (one pass)."""
    out = m.return_metrics(port, periods_per_year=ppy)  # type: ignore[arg-type]
    return {k: np.atleast_1d(v) for k, v in out.items()}


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
    fee_bps: float = 0.0,
    slippage_bps: float = 0.0,
    weights: Mapping[str, float] | None = None,
    periods_per_year: float | None = None,
    keep_returns: bool | Sequence[bool] | NDArray[np.bool_] = False,
    chunk_size: int | None = None,
    **options: Any,
) -> BatchResult:
    """Backtest many parameter sets of one strategy without a Python call per set.

    Parameter sets may mix strategy parameters with engine options as ``engine.<key>``
    columns (``engine.rebalance``, ``engine.target_volatility``, ``engine.stop_loss``, ...):
    each set then runs with its own options.

    With engine v1's options only (proportional costs, ``rebalance=bar``, ``close``
    fills, no limits), ``SmaCross`` and ``Momentum`` run on fused compiled kernels
    (:mod:`backtest.engine._fused`, with stops too): one signal row per distinct window,
    then one pass over the bars per set computing positions, costs, trades and every
    metric, in parallel over sets. Other strategies take the generic path:
    ``batch_positions`` per asset, a compiled kernel for returns, trade counts, exposure
    and turnover. Any other option (or a cross-sectional strategy with
    ``batch_weights``) takes the kernel path (:mod:`backtest.engine._batch_kernel`): the
    single backtest's per-bar state machine for every set in a compiled parallel loop.
    Memory is bounded by ``chunk_size`` sets at a time.

    Args:
        prices: :class:`~backtest.data.Bars` or validated wide closes.
        strategy_cls: A strategy class with ``batch_positions`` or ``batch_weights``.
        param_sets: A frame with one row per set, a mapping of name -> values, or a
            list of dicts.
        fee_bps: Commission per unit of traded notional, in basis points.
        slippage_bps: Slippage per unit of traded notional, in basis points.
        weights: Symbol -> portfolio weight; equal weights when empty.
        periods_per_year: Bars per year, for annualised metrics (inferred when None).
        keep_returns: Also return the ``(n_bars, k)`` matrix of portfolio returns; a
            boolean mask of length ``k`` keeps only those sets' columns, in order.
        chunk_size: Sets evaluated at once (default: about 32 MB of positions).
        **options: Further engine options (see :func:`~backtest.engine.simulate`).

    Returns:
        A :class:`BatchResult` whose metrics equal :func:`simulate`'s for each set.
    """
    from backtest.engine import _exits
    from backtest.engine._batch_kernel import kernel_batch

    bars = as_bars(prices)
    prices = bars.close
    frame = _param_frame(param_sets)
    k = len(frame)
    keep = _keep_mask(keep_returns, k)
    ppy_f = resolve_periods_per_year(bars.index, periods_per_year)
    periods_per_year = int(ppy_f) if float(ppy_f).is_integer() else ppy_f
    stops = {key: options.pop(key) for key in list(options) if key in _exits.STOP_FIELDS}
    base = engine_params(fee_bps=fee_bps, slippage_bps=slippage_bps, weights=weights,
                         periods_per_year=ppy_f, **options)  # fmt: skip
    rules = _exits.stop_rules(None, strategy_cls, **stops)  # class-level stop attributes win
    engine_names = [
        str(c).removeprefix("engine.")
        for c in frame.columns
        if str(c).startswith("engine.") or str(c) in _exits.STOP_FIELDS
    ]
    only_stop_columns = set(engine_names) <= set(_exits.STOP_FIELDS)
    v1 = (
        _is_v1(base)
        and only_stop_columns
        and hasattr(strategy_cls, "batch_positions")
        and not hasattr(strategy_cls, "batch_weights")
        and getattr(strategy_cls, "output", "positions") != "weights"
    )
    if not v1 or rules.active or engine_names:
        fused = None
        if v1:
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
            table = pd.concat([frame, pd.DataFrame(values, columns=list(m.METRIC_NAMES))], axis=1)
            return BatchResult(table, None if kept_rows is None else kept_rows.T)
        options = {**options, "fee_bps": fee_bps, "slippage_bps": slippage_bps,
                   "weights": weights, **stops}  # fmt: skip
        table, kept_k = kernel_batch(
            bars, strategy_cls, frame, options, periods_per_year=ppy_f, keep=keep,
            chunk_size=chunk_size,
        )  # fmt: skip
        return BatchResult(table, kept_k)
    if not hasattr(strategy_cls, "batch_positions"):
        raise ConfigError(
            f"{strategy_cls!r} has no batch_positions; use simulate() per set", key="strategy"
        )
    cost = cost_rate(fee_bps, slippage_bps)
    w = resolve_weights(prices.columns, weights)
    close = prices.to_numpy(dtype=np.float64)
    n, n_assets = close.shape
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
        table = pd.concat([frame, pd.DataFrame(values, columns=list(m.METRIC_NAMES))], axis=1)
        return BatchResult(table, None if kept_rows is None else kept_rows.T)
    chunk = chunk_size or max(1, 4_000_000 // max(n, 1))
    r_assets = [bar_returns(np.ascontiguousarray(close[:, j])) for j in range(n_assets)]
    out: dict[str, NDArray[np.float64]] = {
        name: np.empty(k) for name in ("n_trades", "n_wins", "exposure", "turnover")
    }
    ret_metrics: dict[str, list[NDArray[np.float64]]] = {}
    kept: list[NDArray[np.float64]] = []
    for lo in range(0, k, chunk):
        hi = min(k, lo + chunk)
        params = {c: frame[c].to_numpy()[lo:hi] for c in frame.columns}
        port = np.zeros((n, hi - lo))
        counts = {name: np.zeros(hi - lo) for name in out}
        for j in range(n_assets):
            pos = np.ascontiguousarray(
                strategy_cls.batch_positions(np.ascontiguousarray(close[:, j]), params),
                dtype=np.float64,
            )
            _accumulate_asset(
                pos,
                r_assets[j],
                cost,
                float(w[j]),
                port,
                counts["n_trades"],
                counts["n_wins"],
                counts["exposure"],
                counts["turnover"],
            )
        for name in out:
            out[name][lo:hi] = counts[name]
        for name, value in _return_metrics(port, periods_per_year).items():
            ret_metrics.setdefault(name, []).append(np.atleast_1d(value))
        if keep is not None:
            kept.append(port[:, keep[lo:hi]])
    table = frame.copy()
    for name, parts in ret_metrics.items():
        table[name] = np.concatenate(parts)
    table["n_trades"] = out["n_trades"]
    with np.errstate(invalid="ignore", divide="ignore"):
        table["win_rate"] = np.where(out["n_trades"] > 0, out["n_wins"] / out["n_trades"], np.nan)
    table["exposure"] = out["exposure"] / n
    table["turnover"] = out["turnover"] / n * periods_per_year
    returns = np.concatenate(kept, axis=1) if keep is not None else None
    return BatchResult(table, returns)


def _is_v1(p: EngineParams) -> bool:
    """Whether only engine v1's options (costs, weights, periods) differ from the defaults."""
    from dataclasses import replace

    return (
        replace(p, fee_bps=0.0, slippage_bps=0.0, weights={}, periods_per_year=None)
        == EngineParams()
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
