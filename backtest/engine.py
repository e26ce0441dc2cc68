"""Positions to returns: the single backtest and the batched path for searches.

Conventions (the same in both paths, tested against a plain per-bar loop):

* the target position computed at the close of bar t is held over bar t+1, so a
  signal never earns the return of the bar that produced it (no look-ahead);
* bar return ``r[t] = close[t] / close[t-1] - 1``;
* strategy return ``ret[t] = (1 + pos[t-1] * r[t]) * (1 - c * |pos[t] - pos[t-1]|) - 1``
  with ``c = (fee_bps + slippage_bps) / 1e4``, ``pos[-1] = 0`` and ``ret[0] = 0``:
  costs are charged on traded notional at the close where the position changes;
* several assets: each asset's strategy return is combined with equal (or given)
  weights every bar (a daily-rebalanced portfolio).

Nothing here knows about Hydra, MLflow or Redis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest import metrics as m
from backtest.errors import BacktestError, ConfigError
from backtest.strategies import Strategy

TRADE_COLUMNS = (
    "asset",
    "direction",
    "entry_time",
    "exit_time",
    "entry_price",
    "exit_price",
    "return",
    "bars_held",
    "is_open",
)


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """One backtest: the portfolio's returns, equity, positions, trades and metrics.

    Attributes:
        returns: Portfolio return per bar after costs (``returns.iloc[0] == 0``).
        equity: Growth of 1 unit of capital: ``(1 + returns).cumprod()``.
        positions: Target position per bar and asset, in [-1, 1].
        trades: One row per trade (see ``TRADE_COLUMNS``); an open trade is marked
            to the last close with ``is_open=True``.
        metrics: Every metric of :func:`backtest.metrics.compute_metrics`.
        params: The strategy's parameters.
        run_dir: The run directory it was written to, when it was.
    """

    returns: pd.Series
    equity: pd.Series
    positions: pd.DataFrame
    trades: pd.DataFrame
    metrics: dict[str, float]
    params: dict[str, Any] = field(default_factory=dict)
    run_dir: str | None = None


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Many parameter sets of one strategy, evaluated in one pass.

    Attributes:
        metrics: One row per parameter set: the parameters, then every metric.
        returns: Portfolio returns, shape ``(n_bars, k)``, when asked for.
    """

    metrics: pd.DataFrame
    returns: NDArray[np.float64] | None = None


def cost_rate(fee_bps: float, slippage_bps: float) -> float:
    """Cost per unit of traded notional as a fraction (``(fee + slippage) / 1e4``)."""
    for name, value in (("fee_bps", fee_bps), ("slippage_bps", slippage_bps)):
        if not np.isfinite(value) or value < 0:
            raise ConfigError(
                f"engine.{name} must be a finite number >= 0, got {value}", key=f"engine.{name}"
            )
    return (fee_bps + slippage_bps) / 1e4


def bar_returns(close: NDArray[np.float64]) -> NDArray[np.float64]:
    """Close-to-close returns with a leading 0, along axis 0."""
    r = np.zeros_like(close, dtype=np.float64)
    r[1:] = close[1:] / close[:-1] - 1.0
    return r


def asset_returns(
    close: NDArray[np.float64], positions: NDArray[np.float64], cost: float
) -> NDArray[np.float64]:
    """Per-asset (or per-set) strategy returns after costs; arrays of the same shape."""
    r = bar_returns(close)
    if positions.ndim == 2 and r.ndim == 1:
        r = r[:, np.newaxis]
    prev = np.zeros_like(positions)
    prev[1:] = positions[:-1]
    # r[0] = 0 and pos[-1] = 0, so ret[0] is 0 unless a position is opened at the first
    # close; then its cost is charged there (a cost is never dropped).
    return (1.0 + prev * r) * (1.0 - cost * np.abs(positions - prev)) - 1.0


@numba.njit(cache=True, nogil=True)
def _trade_step(
    growth: float, prev: float, cur: float, rt: float, cost: float
) -> tuple[float, bool, float]:  # pragma: no cover - compiled
    """One bar of trade accounting, shared by the single and the batched path.

    ``growth`` is the growth factor of the trade held coming into the bar (position
    ``prev``); the target moves to ``cur`` at this bar's close. Returns the growth of
    the trade held after the bar, whether a trade ended on this bar, and that ended
    trade's final growth (its exit cost included). A sign flip ends one trade and
    starts the next (charged its entry cost); a resize of the same sign is charged to
    the trade held.
    """
    if prev != 0.0:
        growth *= 1.0 + prev * rt
    ended = False
    ended_growth = 0.0
    if np.sign(cur) != np.sign(prev):
        if prev != 0.0:
            ended = True
            ended_growth = growth * (1.0 - cost * abs(prev))
        growth = 1.0 - cost * abs(cur) if cur != 0.0 else 1.0
    elif cur != prev:
        growth *= 1.0 - cost * abs(cur - prev)
    return growth, ended, ended_growth


@numba.njit(cache=True, nogil=True)
def _trades_kernel(
    pos: NDArray[np.float64], r: NDArray[np.float64], cost: float
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """Trades of one asset: entry bar, exit bar, direction, return (costs included).

    A trade is a run of bars with a non-zero position of one sign; a sign flip
    closes one trade and opens the next on the same bar. Its return compounds
    ``1 + pos[t-1] * r[t]`` over the bars it is held, times its own costs: entry,
    resizes and exit (an open trade is marked to the last close, no exit cost).
    """
    n = pos.shape[0]
    entries = np.empty(n, np.int64)
    exits = np.empty(n, np.int64)
    dirs = np.empty(n, np.float64)
    rets = np.empty(n, np.float64)
    k = 0
    growth = 1.0
    prev = 0.0
    for t in range(n):
        cur = pos[t]
        growth, ended, ended_growth = _trade_step(growth, prev, cur, r[t], cost)
        if ended:
            exits[k] = t
            rets[k] = ended_growth - 1.0
            k += 1
        if cur != 0.0 and np.sign(cur) != np.sign(prev):
            entries[k] = t
            dirs[k] = np.sign(cur)
        prev = cur
    if prev != 0.0:
        exits[k] = n - 1
        rets[k] = growth - 1.0
        k += 1
    return entries[:k], exits[:k], dirs[:k], rets[:k]


def trades_table(prices: pd.DataFrame, positions: pd.DataFrame, cost: float) -> pd.DataFrame:
    """One row per trade over every asset, in the order of ``TRADE_COLUMNS``."""
    close = prices.to_numpy(dtype=np.float64)
    pos = positions.to_numpy(dtype=np.float64)
    index = prices.index
    frames = []
    for j, asset in enumerate(prices.columns):
        c = np.ascontiguousarray(close[:, j])
        entries, exits, dirs, rets = _trades_kernel(
            np.ascontiguousarray(pos[:, j]), bar_returns(c), cost
        )
        is_open = np.zeros(len(entries), dtype=bool)
        if len(entries) and pos[-1, j] != 0:
            is_open[-1] = True
        frames.append(
            pd.DataFrame(
                {
                    "asset": pd.Series([str(asset)] * len(entries), dtype=object),
                    "direction": dirs.astype(np.int64),
                    "entry_time": index[entries],
                    "exit_time": index[exits],
                    "entry_price": c[entries],
                    "exit_price": c[exits],
                    "return": rets,
                    "bars_held": exits - entries,
                    "is_open": is_open,
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=list(TRADE_COLUMNS))
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["entry_time", "asset"], kind="stable", ignore_index=True)


def resolve_weights(columns: Sequence[object], weights: Mapping[str, float] | None) -> NDArray:
    """Portfolio weight per column: equal when ``weights`` is empty, else as given.

    Raises:
        ConfigError: a symbol without a weight, a weight for an unknown symbol, or a
            non-finite weight; the message names the symbol.
    """
    names = [str(c) for c in columns]
    if not weights:
        return np.full(len(names), 1.0 / max(len(names), 1))
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ConfigError(
            f"engine.weights names unknown symbol {unknown[0]!r}",
            key=f"engine.weights.{unknown[0]}",
        )
    missing = [n for n in names if n not in weights]
    if missing:
        raise ConfigError(
            f"engine.weights has no weight for symbol {missing[0]!r}",
            key=f"engine.weights.{missing[0]}",
        )
    w = np.array([float(weights[n]) for n in names])
    if not np.all(np.isfinite(w)):
        bad = names[int(np.flatnonzero(~np.isfinite(w))[0])]
        raise ConfigError(f"engine.weights.{bad} is not finite", key=f"engine.weights.{bad}")
    return w


def _checked_positions(raw: pd.DataFrame, prices: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(raw, pd.DataFrame) or raw.shape != prices.shape:
        raise BacktestError(
            f"strategy returned {type(raw).__name__} of shape {getattr(raw, 'shape', None)}; "
            f"expected a DataFrame of shape {prices.shape}"
        )
    values = raw.to_numpy(dtype=np.float64, na_value=np.nan)
    values = np.where(np.isnan(values), 0.0, values)
    bad = np.abs(values) > 1.0 + 1e-12
    if bad.any():
        t, j = np.argwhere(bad)[0]
        raise BacktestError(
            f"strategy position {values[t, j]} for {prices.columns[j]!r} at {prices.index[t]} "
            f"is outside [-1, 1] ({int(bad.sum())} such values)"
        )
    return pd.DataFrame(values, index=prices.index, columns=prices.columns)


def simulate(
    prices: pd.DataFrame,
    strategy: Strategy,
    *,
    fee_bps: float = 0.0,
    slippage_bps: float = 0.0,
    weights: Mapping[str, float] | None = None,
    periods_per_year: int = 252,
) -> BacktestResult:
    """Backtest one strategy on wide closes.

    Args:
        prices: Validated closes: a ``DatetimeIndex`` and one column per asset.
        strategy: Anything with ``positions(prices)``; see :mod:`backtest.strategies`.
        fee_bps: Commission per unit of traded notional, in basis points.
        slippage_bps: Slippage per unit of traded notional, in basis points.
        weights: Symbol -> portfolio weight; equal weights when empty.
        periods_per_year: Bars per year, for annualised metrics.

    Returns:
        The portfolio's returns, equity, positions, trades and metrics.

    Raises:
        ConfigError: a negative cost or bad weights.
        BacktestError: the strategy returned positions outside [-1, 1] or of the wrong shape.
    """
    cost = cost_rate(fee_bps, slippage_bps)
    w = resolve_weights(prices.columns, weights)
    positions = _checked_positions(strategy.positions(prices), prices)
    close = prices.to_numpy(dtype=np.float64)
    per_asset = asset_returns(close, positions.to_numpy(), cost)
    combined = np.zeros(len(prices))
    for j in range(per_asset.shape[1]):  # same summation order as the batched path
        combined += w[j] * per_asset[:, j]
    returns = pd.Series(combined, index=prices.index, name="returns")
    equity = (1.0 + returns).cumprod().rename("equity")
    trades = trades_table(prices, positions, cost)
    metrics = m.compute_metrics(
        returns,
        positions,
        trades,
        weights=dict(zip(map(str, prices.columns), w, strict=True)),
        periods_per_year=periods_per_year,
    )
    params = _strategy_params(strategy)
    return BacktestResult(returns, equity, positions, trades, metrics, params)


def _strategy_params(strategy: object) -> dict[str, Any]:
    names = getattr(strategy, "param_names", None)
    if names is None:
        names = [n for n in getattr(strategy, "__dataclass_fields__", {}) if not n.startswith("_")]
    return {n: getattr(strategy, n) for n in names}


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
    (:mod:`backtest._fused`): one signal row per distinct window, then one pass over
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
    from backtest import _fused

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
