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
from backtest.engine._costs import bar_returns, cost_rate
from backtest.engine._single import resolve_weights
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


def _return_metrics(port: NDArray[np.float64], ppy: int) -> dict[str, NDArray[np.float64]]:
    """The return-based metrics of every column of ``port``, in report order (one pass)."""
    return {k: np.atleast_1d(v) for k, v in m.return_metrics(port, periods_per_year=ppy).items()}


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
    prices: pd.DataFrame,
    strategy_cls: type,
    param_sets: pd.DataFrame | Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    *,
    fee_bps: float = 0.0,
    slippage_bps: float = 0.0,
    weights: Mapping[str, float] | None = None,
    periods_per_year: int = 252,
    keep_returns: bool | Sequence[bool] | NDArray[np.bool_] = False,
    chunk_size: int | None = None,
) -> BatchResult:
    """Backtest many parameter sets of one strategy without a Python call per set.

    ``SmaCross`` and ``Momentum`` run on fused compiled kernels
    (:mod:`backtest.engine._fused`): one signal row per distinct window, then one pass over
    the bars per set computing positions, costs, trades and every metric, in parallel
    over sets, without a ``(n_bars, k)`` matrix. Other strategies take the generic
    path: positions for a chunk of sets come from ``strategy_cls.batch_positions``
    (one array per asset); a compiled kernel turns them into portfolio returns, trade
    counts, exposure and turnover; metrics are computed column-wise. Memory is
    bounded by ``chunk_size`` sets at a time.

    Args:
        prices: Validated wide closes.
        strategy_cls: A strategy class with ``batch_positions`` (every built-in).
        param_sets: A frame with one row per set, a mapping of name -> values, or a
            list of dicts.
        fee_bps: Commission per unit of traded notional, in basis points.
        slippage_bps: Slippage per unit of traded notional, in basis points.
        weights: Symbol -> portfolio weight; equal weights when empty.
        periods_per_year: Bars per year, for annualised metrics.
        keep_returns: Also return the ``(n_bars, k)`` matrix of portfolio returns; a
            boolean mask of length ``k`` keeps only those sets' columns, in order.
        chunk_size: Sets evaluated at once (default: about 32 MB of positions).

    Returns:
        A :class:`BatchResult` whose metrics equal :func:`simulate`'s for each set.
    """
    if not hasattr(strategy_cls, "batch_positions"):
        raise ConfigError(
            f"{strategy_cls!r} has no batch_positions; use simulate() per set", key="strategy"
        )
    cost = cost_rate(fee_bps, slippage_bps)
    w = resolve_weights(prices.columns, weights)
    frame = _param_frame(param_sets)
    close = prices.to_numpy(dtype=np.float64)
    n, n_assets = close.shape
    k = len(frame)
    keep = _keep_mask(keep_returns, k)
    from backtest.engine import _fused

    fused = _fused.fused_batch(
        close,
        strategy_cls,
        frame,
        cost=cost,
        weights=w,
        periods_per_year=periods_per_year,
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
