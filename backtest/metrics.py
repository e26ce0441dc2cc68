"""Performance metrics of a strategy's per-bar returns, positions and trades.

Every return metric is a pure function of simple (not log) per-bar returns
``r[t] = equity[t] / equity[t-1] - 1`` and accepts:

* a :class:`pandas.Series` or a 1-D array: one strategy, the result is a ``float``;
* a 2-D array of shape ``(n_bars, k)`` (or a DataFrame): ``k`` strategies or
  parameter sets side by side, one per column, reduced along the bars axis in
  one vectorised pass; the result is an array of length ``k``.

The conventions (all bars count, including the engine's leading zero return;
sample standard deviation with ``ddof=1``; ``periods_per_year=252`` for daily
bars) are the project's and are kept identical in single and batched
backtests, so a search's trials table matches :func:`compute_metrics`.
NaN returns are not skipped: they make the metric NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeAlias

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.errors import ConfigError

__all__ = [
    "METRIC_NAMES",
    "RETURN_METRIC_NAMES",
    "annual_volatility",
    "cagr",
    "calmar_ratio",
    "compute_metrics",
    "exposure",
    "max_drawdown",
    "n_trades",
    "return_metrics",
    "sharpe_ratio",
    "sortino_ratio",
    "total_return",
    "turnover",
    "win_rate",
]

Returns: TypeAlias = "pd.Series | pd.DataFrame | NDArray[np.float64] | Sequence[float]"
Weights: TypeAlias = "Mapping[str, float] | Sequence[float] | NDArray[np.float64] | None"

#: The keys of :func:`return_metrics`, in order.
RETURN_METRIC_NAMES: tuple[str, ...] = (
    "total_return",
    "cagr",
    "annual_volatility",
    "sharpe_ratio",
    "sortino_ratio",
    "max_drawdown",
    "calmar_ratio",
)

#: The keys of :func:`compute_metrics`, in order.
METRIC_NAMES: tuple[str, ...] = (
    *RETURN_METRIC_NAMES,
    "n_trades",
    "win_rate",
    "exposure",
    "turnover",
)

# A standard deviation this small relative to the mean is rounding noise of a
# constant series, not risk: the Sharpe ratio of a constant series is undefined.
_STD_RTOL = 1e-12
# Elements per column block of the path-dependent (drawdown) computation.
_CHUNK_ELEMENTS = 1 << 15


def _as_2d(returns: Returns) -> tuple[NDArray[np.float64], bool]:
    """Return ``returns`` as a float64 ``(n_bars, k)`` array and whether it was 1-D."""
    if isinstance(returns, pd.Series | pd.DataFrame):
        arr = returns.to_numpy(dtype=np.float64)
    else:
        arr = np.asarray(returns, dtype=np.float64)
    if arr.ndim == 1:
        return arr[:, None], True
    if arr.ndim == 2:
        # Column-contiguous: each trial is reduced exactly like a 1-D series (same
        # summation order, so batched and single metrics are bit-identical) and faster.
        return np.asfortranarray(arr), False
    raise ValueError(f"returns must be 1-D or 2-D (bars x trials), got {arr.ndim} dimensions")


def _out(values: NDArray[np.float64], one_d: bool) -> float | NDArray[np.float64]:
    return float(values[0]) if one_d else values


def _nan(k: int) -> NDArray[np.float64]:
    return np.full(k, np.nan)


# --- kernels -------------------------------------------------------------------------------
# Each takes a column-contiguous (n_bars, k) block and returns k values. Columns never
# interact, and numpy reduces each contiguous column exactly as it reduces a 1-D series,
# so a trial's metric is bit-identical whether computed alone or in a batch.
Kernel: TypeAlias = "Callable[..., NDArray[np.float64]]"


def _apply(returns: Returns, kernel: Kernel, *args: int) -> float | NDArray[np.float64]:
    arr, one_d = _as_2d(returns)
    return _out(_blocked(arr, lambda block: kernel(block, *args)), one_d)


def _blocked(
    arr: NDArray[np.float64], fn: Callable[[NDArray[np.float64]], NDArray[np.float64]]
) -> NDArray[np.float64]:
    """Run ``fn`` over blocks of a few columns, so temporaries stay in the CPU cache."""
    n_bars, k = arr.shape
    block = max(1, _CHUNK_ELEMENTS // max(n_bars, 1))
    if block >= k:
        return fn(arr)
    out = np.empty(k)
    for start in range(0, k, block):
        out[start : start + block] = fn(arr[:, start : start + block])
    return out


def _k_total_return(arr: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.prod(1.0 + arr, axis=0) - 1.0


def _k_cagr(arr: NDArray[np.float64], ppy: int) -> NDArray[np.float64]:
    n = arr.shape[0]
    if n == 0:
        return _nan(arr.shape[1])
    growth = 1.0 + arr
    wealth = np.prod(growth, axis=0)
    ruined = (growth <= 0.0).any(axis=0)
    with np.errstate(invalid="ignore"):
        return np.where(ruined, -1.0, np.abs(wealth) ** (ppy / n) - 1.0)


def _std(arr: NDArray[np.float64]) -> NDArray[np.float64]:
    if arr.shape[0] < 2:
        return _nan(arr.shape[1])
    return np.std(arr, axis=0, ddof=1)


def _k_annual_volatility(arr: NDArray[np.float64], ppy: int) -> NDArray[np.float64]:
    return _std(arr) * np.sqrt(ppy)


def _k_sharpe_ratio(arr: NDArray[np.float64], ppy: int) -> NDArray[np.float64]:
    if arr.shape[0] < 2:
        return _nan(arr.shape[1])
    mean = arr.mean(axis=0)
    std = _std(arr)
    flat = std <= _STD_RTOL * np.abs(mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flat, np.nan, mean / std * np.sqrt(ppy))


def _k_sortino_ratio(arr: NDArray[np.float64], ppy: int) -> NDArray[np.float64]:
    if arr.shape[0] < 2:
        return _nan(arr.shape[1])
    downside = np.sqrt(np.mean(np.minimum(arr, 0.0) ** 2, axis=0)) * np.sqrt(ppy)
    annual = arr.mean(axis=0) * ppy
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(downside > 0.0, annual / downside, np.nan)


def _k_max_drawdown(arr: NDArray[np.float64]) -> NDArray[np.float64]:
    if arr.shape[0] == 0:
        return np.zeros(arr.shape[1])
    equity = np.cumprod(1.0 + arr, axis=0)
    peak = np.maximum(equity, 1.0)
    np.maximum.accumulate(peak, axis=0, out=peak)
    np.divide(equity, peak, out=equity)
    return np.clip(1.0 - equity.min(axis=0), 0.0, 1.0)


def _calmar(growth: NDArray[np.float64], dd: NDArray[np.float64]) -> NDArray[np.float64]:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(dd > 0.0, growth / dd, np.nan)


def _k_calmar_ratio(arr: NDArray[np.float64], ppy: int) -> NDArray[np.float64]:
    return _calmar(_k_cagr(arr, ppy), _k_max_drawdown(arr))


def _k_all(arr: NDArray[np.float64], ppy: int) -> NDArray[np.float64]:
    """All seven return metrics of a block, stacked as rows in report order."""
    growth, dd = _k_cagr(arr, ppy), _k_max_drawdown(arr)
    return np.stack(
        [
            _k_total_return(arr),
            growth,
            _k_annual_volatility(arr, ppy),
            _k_sharpe_ratio(arr, ppy),
            _k_sortino_ratio(arr, ppy),
            dd,
            _calmar(growth, dd),
        ]
    )


def total_return(returns: Returns) -> float | NDArray[np.float64]:
    """Total compounded return: ``prod(1 + r) - 1``.

    Args:
        returns: Simple per-bar returns (Series / 1-D array, or 2-D bars x trials).

    Returns:
        The fractional gain of one unit of capital over the whole period
        (0.1 = +10%). An empty series returns 0 (nothing happened).

    Examples:
        >>> round(total_return([0.0, 0.10, -0.10]), 6)
        -0.01
    """
    return _apply(returns, _k_total_return)


def cagr(returns: Returns, *, periods_per_year: int = 252) -> float | NDArray[np.float64]:
    """Compound annual growth rate: ``prod(1 + r) ** (periods_per_year / n) - 1``.

    Every bar counts toward the elapsed time, including the engine's leading zero
    return, so ``n`` is ``len(returns)``.

    Args:
        returns: Simple per-bar returns (Series / 1-D array, or 2-D bars x trials).
        periods_per_year: Bars per year (252 for daily bars, 52 weekly, 12 monthly).

    Returns:
        The constant yearly return that compounds to the same final wealth.
        ``-1`` when the capital is wiped out (some ``1 + r <= 0``); NaN for an
        empty series (no time elapsed).

    Examples:
        >>> round(cagr([0.01] * 12, periods_per_year=12), 6)
        0.126825
    """
    return _apply(returns, _k_cagr, periods_per_year)


def annual_volatility(
    returns: Returns, *, periods_per_year: int = 252
) -> float | NDArray[np.float64]:
    """Annualised volatility: ``std(r, ddof=1) * sqrt(periods_per_year)``.

    Args:
        returns: Simple per-bar returns (Series / 1-D array, or 2-D bars x trials).
        periods_per_year: Bars per year (252 for daily bars).

    Returns:
        The yearly standard deviation of returns; NaN with fewer than two returns.

    Examples:
        >>> round(annual_volatility([0.01, -0.01, 0.01, -0.01]), 4)
        0.1833
    """
    return _apply(returns, _k_annual_volatility, periods_per_year)


def sharpe_ratio(returns: Returns, *, periods_per_year: int = 252) -> float | NDArray[np.float64]:
    """Annualised Sharpe ratio with a zero risk-free rate.

    ``mean(r) / std(r, ddof=1) * sqrt(periods_per_year)`` over all bars, flat
    bars (no position) included: a strategy is judged on the whole period.

    Args:
        returns: Simple per-bar returns (Series / 1-D array, or 2-D bars x trials).
        periods_per_year: Bars per year (252 for daily bars).

    Returns:
        Mean excess return per unit of volatility, per year. NaN with fewer than
        two returns or when the returns do not vary (a flat strategy, or a
        constant return: its standard deviation is zero up to rounding).

    Examples:
        >>> round(sharpe_ratio([0.01, -0.005, 0.002, 0.003]), 4)
        6.4664
        >>> sharpe_ratio([0.0, 0.0, 0.0])
        nan
    """
    return _apply(returns, _k_sharpe_ratio, periods_per_year)


def sortino_ratio(returns: Returns, *, periods_per_year: int = 252) -> float | NDArray[np.float64]:
    """Annualised Sortino ratio with a required return of zero.

    ``mean(r) * ppy / (sqrt(mean(min(r, 0) ** 2)) * sqrt(ppy))``: like the Sharpe
    ratio, but only losing bars count as risk (the downside deviation is taken
    over all bars, gains counted as zero). This is empyrical's definition.

    Args:
        returns: Simple per-bar returns (Series / 1-D array, or 2-D bars x trials).
        periods_per_year: Bars per year (252 for daily bars).

    Returns:
        Annual return per unit of annual downside deviation. NaN with fewer than
        two returns or when no bar lost money (no downside to measure).

    Examples:
        >>> round(sortino_ratio([0.01, -0.005, 0.002, 0.003]), 4)
        15.8745
    """
    return _apply(returns, _k_sortino_ratio, periods_per_year)


def max_drawdown(returns: Returns) -> float | NDArray[np.float64]:
    """Largest peak-to-trough loss of the equity curve, as a positive fraction.

    ``max_t 1 - equity[t] / max(1, max(equity[:t+1]))`` with
    ``equity = cumprod(1 + r)``: the starting capital of 1 counts as a peak, so
    losing 10% on the first bar is a 10% drawdown.

    Args:
        returns: Simple per-bar returns (Series / 1-D array, or 2-D bars x trials).

    Returns:
        A fraction in ``[0, 1]`` (0.25 = the equity fell 25% below its peak);
        0 when the equity never fell (or the series is empty); capped at 1 when
        the capital is lost entirely.

    Examples:
        >>> round(max_drawdown([0.10, -0.20, 0.05, -0.10]), 4)
        0.244
        >>> max_drawdown([-0.5])
        0.5
    """
    return _apply(returns, _k_max_drawdown)


def calmar_ratio(returns: Returns, *, periods_per_year: int = 252) -> float | NDArray[np.float64]:
    """Calmar ratio: CAGR divided by the maximum drawdown (over the whole series).

    Args:
        returns: Simple per-bar returns (Series / 1-D array, or 2-D bars x trials).
        periods_per_year: Bars per year (252 for daily bars).

    Returns:
        Yearly growth per unit of worst loss; NaN when there was no drawdown.

    Examples:
        >>> round(calmar_ratio([0.02, -0.01, 0.03], periods_per_year=12), 4)
        17.0282
    """
    return _apply(returns, _k_calmar_ratio, periods_per_year)


def return_metrics(
    returns: Returns, *, periods_per_year: int = 252
) -> dict[str, float | NDArray[np.float64]]:
    """All seven return metrics in one pass, for many trials at once.

    Equal, bit for bit, to calling :func:`total_return`, :func:`cagr`,
    :func:`annual_volatility`, :func:`sharpe_ratio`, :func:`sortino_ratio`,
    :func:`max_drawdown` and :func:`calmar_ratio` one by one, but the returns are
    converted once and walked block by block while they are in the CPU cache: use
    it for the bars x trials matrix of a parameter search.

    Args:
        returns: Simple per-bar returns (Series / 1-D array, or 2-D bars x trials).
        periods_per_year: Bars per year (252 for daily bars).

    Returns:
        A dict keyed by :data:`RETURN_METRIC_NAMES`: floats for 1-D input, arrays
        of length ``k`` for 2-D input.

    Examples:
        >>> batch = return_metrics(np.array([[0.0, 0.0], [0.01, -0.02], [0.02, 0.01]]))
        >>> batch["max_drawdown"].round(4).tolist(), batch["total_return"].round(4).tolist()
        ([0.0, 0.02], [0.0302, -0.0102])
    """
    arr, one_d = _as_2d(returns)
    n_bars, k = arr.shape
    table = np.empty((len(RETURN_METRIC_NAMES), k))
    block = max(1, _CHUNK_ELEMENTS // max(n_bars, 1))
    for start in range(0, k, block):
        table[:, start : start + block] = _k_all(arr[:, start : start + block], periods_per_year)
    return {name: _out(row, one_d) for name, row in zip(RETURN_METRIC_NAMES, table, strict=True)}


def n_trades(trades: pd.DataFrame) -> int:
    """Number of trades (entries), counting one still open at the end.

    Args:
        trades: The engine's trades table, one row per trade.

    Returns:
        The number of rows.

    Examples:
        >>> n_trades(pd.DataFrame({"return": [0.02, -0.01]}))
        2
    """
    return len(trades)


def win_rate(trades: pd.DataFrame) -> float:
    """Fraction of trades that made money (``return > 0``).

    Args:
        trades: The engine's trades table with a ``return`` column (the trade's
            simple return); an open trade counts with its mark-to-market return.

    Returns:
        A fraction in ``[0, 1]``; NaN when there are no trades.

    Examples:
        >>> win_rate(pd.DataFrame({"return": [0.02, -0.01, 0.0, 0.05]}))
        0.5
    """
    if len(trades) == 0:
        return float("nan")
    values = trades["return"].to_numpy(dtype=np.float64)
    return float(np.mean(values > 0.0))


def _weights(
    positions: pd.DataFrame | NDArray[np.float64], weights: Weights
) -> NDArray[np.float64]:
    n_assets = positions.shape[1]
    if weights is None or (isinstance(weights, Mapping) and not weights):
        return np.full(n_assets, 1.0 / n_assets) if n_assets else np.zeros(0)
    if isinstance(weights, Mapping):
        if not isinstance(positions, pd.DataFrame):
            raise ConfigError("weights by symbol need a positions DataFrame", key="weights")
        missing = [str(c) for c in positions.columns if c not in weights]
        if missing:
            raise ConfigError(f"no weight for symbol(s) {missing}", key="weights")
        return np.array([float(weights[c]) for c in positions.columns])
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n_assets,):
        raise ConfigError(f"expected {n_assets} weights, got shape {w.shape}", key="weights")
    return w


def _positions(positions: pd.DataFrame | NDArray[np.float64]) -> tuple[NDArray[np.float64], bool]:
    arr = (
        positions.to_numpy(dtype=np.float64)
        if isinstance(positions, pd.DataFrame)
        else np.asarray(positions, dtype=np.float64)
    )
    if arr.ndim == 2:
        return arr[:, :, None], True
    if arr.ndim == 3:
        return arr, False
    raise ValueError(
        f"positions must be 2-D (bars x assets) or 3-D (bars x assets x trials), got {arr.ndim}-D"
    )


def exposure(
    positions: pd.DataFrame | NDArray[np.float64], weights: Weights = None
) -> float | NDArray[np.float64]:
    """Average fraction of capital at risk: ``mean_t sum_a w_a * |pos[t, a]|``.

    Args:
        positions: Target positions in ``[-1, 1]``, bars x assets (a DataFrame or
            2-D array), or a 3-D array bars x assets x trials.
        weights: Portfolio weight of each asset (a mapping by column name, or one
            number per column); equal weights ``1 / n_assets`` when omitted.

    Returns:
        0 for a strategy that never holds anything, 1 for one always fully
        invested (long or short); NaN when there are no bars. A float for 2-D
        positions, an array of length ``k`` for 3-D.

    Raises:
        ConfigError: The weights do not match the assets (key ``weights``).

    Examples:
        >>> exposure(pd.DataFrame({"A": [0.0, 1.0, 1.0, -1.0], "B": [0.0, 0.0, 1.0, 0.0]}))
        0.5
    """
    arr, one_d = _positions(positions)
    w = _weights(positions, weights)
    if arr.shape[0] == 0:
        return _out(_nan(arr.shape[2]), one_d)
    out = np.einsum("tak,a->k", np.abs(arr), w) / arr.shape[0]
    return _out(out, one_d)


def turnover(
    positions: pd.DataFrame | NDArray[np.float64],
    weights: Weights = None,
    *,
    periods_per_year: int = 252,
) -> float | NDArray[np.float64]:
    """Annualised one-way turnover of the portfolio.

    ``mean_t sum_a w_a * |pos[t, a] - pos[t-1, a]| * periods_per_year``, with the
    position before the first bar taken as zero (opening counts as trading).
    A turnover of 12 means the whole capital is traded about twelve times a year
    (e.g. a monthly full rebalance one way).

    Args:
        positions: Target positions in ``[-1, 1]``, bars x assets (a DataFrame or
            2-D array), or a 3-D array bars x assets x trials.
        weights: Portfolio weight of each asset (a mapping by column name, or one
            number per column); equal weights ``1 / n_assets`` when omitted.
        periods_per_year: Bars per year (252 for daily bars).

    Returns:
        Traded notional per year as a multiple of capital; NaN when there are no
        bars. A float for 2-D positions, an array of length ``k`` for 3-D.

    Raises:
        ConfigError: The weights do not match the assets (key ``weights``).

    Examples:
        >>> turnover(pd.DataFrame({"A": [0.0, 1.0, 1.0, 0.0]}), periods_per_year=4)
        2.0
    """
    arr, one_d = _positions(positions)
    w = _weights(positions, weights)
    if arr.shape[0] == 0:
        return _out(_nan(arr.shape[2]), one_d)
    traded = np.abs(np.diff(arr, axis=0, prepend=0.0))
    out = np.einsum("tak,a->k", traded, w) / arr.shape[0] * periods_per_year
    return _out(out, one_d)


def compute_metrics(
    returns: pd.Series | NDArray[np.float64],
    positions: pd.DataFrame | NDArray[np.float64],
    trades: pd.DataFrame,
    *,
    weights: Weights = None,
    periods_per_year: int = 252,
) -> dict[str, float]:
    """Every metric of one backtest, as reported in results and trials tables.

    Args:
        returns: The portfolio's simple per-bar returns (after costs).
        positions: Target positions, bars x assets.
        trades: The trades table, with a ``return`` column.
        weights: Portfolio weights of the assets; equal when omitted.
        periods_per_year: Bars per year (252 for daily bars).

    Returns:
        A dict with exactly the keys of :data:`METRIC_NAMES` (``n_trades`` as a
        float, so every value has one type).

    Examples:
        >>> m = compute_metrics(
        ...     pd.Series([0.0, 0.01, -0.02, 0.015]),
        ...     pd.DataFrame({"A": [1.0, 1.0, 1.0, 0.0]}),
        ...     pd.DataFrame({"return": [0.004]}),
        ... )
        >>> list(m) == list(METRIC_NAMES), m["n_trades"], round(m["max_drawdown"], 4)
        (True, 1.0, 0.02)
    """
    one = _as_2d(returns)[0]
    if one.shape[1] != 1:
        raise ValueError("compute_metrics takes the returns of one backtest (1-D)")
    r = one[:, 0]
    ppy = periods_per_year
    values = return_metrics(r, periods_per_year=ppy)
    return {
        **{name: float(value) for name, value in values.items()},
        "n_trades": float(n_trades(trades)),
        "win_rate": win_rate(trades),
        "exposure": float(exposure(positions, weights)),
        "turnover": float(turnover(positions, weights, periods_per_year=ppy)),
    }


def relative_metrics(
    returns: Returns, benchmark: Returns, *, periods_per_year: float = 252
) -> dict[str, float]:
    """Benchmark-relative metrics of one backtest (per-bar simple returns, same length).

    * ``beta``: ``cov(r, b) / var(b)`` (sample moments);
    * ``alpha``: ``(mean(r) - beta * mean(b)) * periods_per_year`` (annualised, CAPM with a
      zero risk-free rate);
    * ``tracking_error``: ``std(r - b) * sqrt(periods_per_year)`` (``ddof=1``);
    * ``information_ratio``: ``mean(r - b) * periods_per_year / tracking_error``;
    * ``excess_return``: the strategy's CAGR minus the benchmark's.

    NaN where undefined (fewer than two bars, a constant benchmark, no tracking error).

    Examples:
        >>> b = np.array([0.0, 0.01, -0.02, 0.015, 0.005])
        >>> out = relative_metrics(2 * b, b, periods_per_year=252)
        >>> round(out["beta"], 6), round(out["alpha"], 6)
        (2.0, 0.0)
    """
    r = _as_2d(returns)[0][:, 0]
    bm = _as_2d(benchmark)[0][:, 0]
    nan = float("nan")
    out = {
        k: nan for k in ("alpha", "beta", "information_ratio", "tracking_error", "excess_return")
    }
    if len(r) < 2:
        return out
    var_b = float(np.var(bm, ddof=1))
    if var_b > 0:
        beta = float(np.cov(r, bm, ddof=1)[0, 1] / var_b)
        out["beta"] = beta
        out["alpha"] = float((r.mean() - beta * bm.mean()) * periods_per_year)
    diff = r - bm
    te = float(np.std(diff, ddof=1) * np.sqrt(periods_per_year))
    out["tracking_error"] = te
    if te > _STD_RTOL:
        out["information_ratio"] = float(diff.mean() * periods_per_year / te)
    ppy = int(periods_per_year) if float(periods_per_year).is_integer() else periods_per_year
    out["excess_return"] = float(cagr(r, periods_per_year=ppy)) - float(  # type: ignore[arg-type]
        cagr(bm, periods_per_year=ppy)  # type: ignore[arg-type]
    )
    return out
