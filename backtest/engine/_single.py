"""The single backtest: one strategy over bars -> returns, equity, costs, trades, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backtest import metrics as m
from backtest.data._bars import Bars, as_bars
from backtest.engine import _exits
from backtest.engine._benchmark import benchmark_returns, check_benchmark
from backtest.engine._costs import asset_rates
from backtest.engine._kernel import COST_COLUMNS, TRADE_FIELDS, run_book
from backtest.engine._levels import entry_levels
from backtest.engine._order_params import check_orders, orders_of
from backtest.engine._orders import ORDER_TYPES, volatility_scale
from backtest.engine._params import EngineParams, engine_params
from backtest.engine._periods import resolve_periods_per_year
from backtest.engine._schedule import rebalance_flags
from backtest.engine._sessions import session_arrays
from backtest.engine._targets import limits_of, raw_targets, resolve_weights
from backtest.engine._trades import TRADE_COLUMNS
from backtest.engine._universe import (
    kernel_array,
    kernel_atr,
    kernel_inputs,
    strategy_bars,
    vol_bars,
)
from backtest.strategies import Strategy

__all__ = ["BacktestResult", "resolve_weights", "simulate"]


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """One backtest: the portfolio's returns, equity, positions, trades and metrics.

    Attributes:
        returns: Portfolio return per bar after costs (``returns.iloc[0]`` is the cost of
            the first close's trades, 0 when nothing is opened there).
        equity: Growth of 1 unit of capital: ``(1 + returns).cumprod()``.
        positions: The strategy's output per bar and asset (positions in [-1, 1], or
            target weights for ``output = "weights"`` strategies).
        trades: One row per trade (see ``TRADE_COLUMNS``), with actual fill prices and an
            ``exit_reason``; an open trade is marked to the last close (``end``).
        metrics: Every metric of :func:`backtest.metrics.compute_metrics`, the cost totals
            (``cost_<column>`` as fractions of the initial capital), ``limit_scaled_fraction``
            and, with a benchmark, the benchmark-relative metrics.
        params: The strategy's parameters.
        run_dir: The run directory it was written to, when it was.
        costs: Per-bar cost table in currency (:data:`COST_COLUMNS`).
        weights: Weights held after each bar's close.
        benchmark: The benchmark's equity (growth of 1), when one is set.
        benchmark_metrics: The benchmark's own return metrics.
        periods_per_year: Bars per year used for annualising (given or inferred).
        initial_capital: ``engine.initial_capital`` when set: :meth:`plot` and
            :meth:`report` then draw equity and drawdown in currency.
    """

    returns: pd.Series
    equity: pd.Series
    positions: pd.DataFrame
    trades: pd.DataFrame
    metrics: dict[str, float]
    params: dict[str, Any] = field(default_factory=dict)
    run_dir: str | None = None
    costs: pd.DataFrame | None = None
    weights: pd.DataFrame | None = None
    benchmark: pd.Series | None = None
    benchmark_metrics: dict[str, float] = field(default_factory=dict)
    periods_per_year: float | None = None
    initial_capital: float | None = None

    def __repr__(self) -> str:
        """One line: parameters, Sharpe, total return, max drawdown, trades, bars."""
        from backtest.report import _display

        return _display.backtest_line(self.params, self.metrics, self.returns.index)

    def _repr_html_(self) -> str:
        """The one line and the report's headline metrics table (a notebook's display)."""
        from backtest.report import _display

        bench = self.benchmark_metrics if self.benchmark is not None else None
        return _display.backtest_html(self.params, self.metrics, bench, self.returns.index)

    def plot(self) -> Any:
        """The report's equity figure: equity with trade marks and the benchmark, drawdown.

        Returns:
            A plotly ``Figure`` (plotly is imported here, not by ``import backtest``).
        """
        from backtest.report import _page, _performance

        frame = _performance.equity_frame(
            self.returns, self.equity, self.benchmark, capital=self.initial_capital
        )
        return _page.to_plotly(_performance.equity_figure(frame, self.trades))

    def report(self, path: str | Path | None = None) -> Path:
        """Write the backtest's HTML report: the page the CLI writes for a run.

        A result a run wrote (``run_dir`` set) rebuilds that run's ``report.html``;
        otherwise the page is made from this result (header, metrics, equity with
        drawdown, trades, monthly returns, rolling Sharpe; no price panel, since the
        result holds no prices).

        Args:
            path: The page (a ``.html`` file or a folder); default: the run's
                ``report.html``, else a new run directory ``outputs/notebook/backtest-<time>/``
                that ``load_result`` reads back.

        Returns:
            The path of ``report.html``.
        """
        from backtest import results
        from backtest.report import load_result
        from backtest.report._notebook import write_report

        if self.run_dir is not None and results.has_result(self.run_dir):
            return load_result(self.run_dir).report(path)
        from backtest.report._performance import equity_frame
        from backtest.results._summary import capital_section

        capital = capital_section(self.equity.to_numpy(), self.initial_capital)
        record: dict[str, Any] = {
            "params": self.params,
            "metrics": self.metrics,
            "periods_per_year": self.periods_per_year,
            **({"benchmark_metrics": self.benchmark_metrics} if self.benchmark_metrics else {}),
            **({"capital": capital} if capital else {}),
        }
        tables = {
            "equity": equity_frame(
                self.returns, self.equity, self.benchmark, capital=self.initial_capital
            ),
            "trades": self.trades,
            "positions": self.positions,
            **({"costs": self.costs} if self.costs is not None else {}),
        }
        symbols = [str(c) for c in self.positions.columns]
        return write_report(
            "backtest", record, tables, path, index=self.returns.index, symbols=symbols
        )


def simulate(
    prices: Bars | pd.DataFrame,
    strategy: Strategy,
    *,
    check_lookahead: bool = True,
    **options: Any,
) -> BacktestResult:
    """Backtest one strategy on bars (or wide closes): the command line's single backtest.

    What the command line does before a run, this does too: the data is checked with
    the same named errors (:func:`~backtest.data.check_bars`: missing, infinite or
    non-positive prices, unsorted or repeated timestamps, ...); ``periods_per_year`` is
    inferred from the index when not given (252 daily, 98,280 for minute bars of a
    6.5-hour session, 8,760 for hourly bars round the clock: :mod:`._periods`); and the
    strategy's target weights are checked for look-ahead (cut at a few bars t, they must
    not change), at the cost of a run on a few short prefixes.

    Args:
        prices: :class:`~backtest.data.Bars` or wide closes (a ``DatetimeIndex``, one
            column per asset).
        strategy: Anything with ``positions``; see :mod:`backtest.strategies`.
        check_lookahead: Run the look-ahead check (``False`` skips it, e.g. for a
            strategy already checked on these bars).
        **options: Engine options, named as the ``engine.*`` config keys
            (:class:`~backtest.engine._params.EngineParams`: ``fee_bps``,
            ``slippage_bps``, ``weights``, ``periods_per_year``, ``initial_capital``,
            ``rebalance``, ``execution``, costs, limits, ``target_volatility``,
            ``benchmark``) and the stops of :mod:`backtest.engine._exits`
            (``stop_loss``, ...). A strategy's own stop attributes that are not ``None``
            override the engine's (:mod:`backtest.engine._declared`).

    Returns:
        The portfolio's returns, equity, positions, trades, costs and metrics.

    Raises:
        ConfigError: a bad option, naming ``engine.<key>``.
        DataValidationError: bad data (naming the column, the first bad timestamp and
            the count), ``next_open`` without opens, stops without highs/lows, a
            benchmark symbol not in the data.
        StrategyContractError: the strategy looks ahead (names the first bar that changed).
        BacktestError: the strategy's output has the wrong shape or bad values.
    """
    from backtest.data._check import check_bars

    stop_opts = {k: options.pop(k) for k in list(options) if k in _exits.STOP_FIELDS}
    params = engine_params(**options)
    rules = _exits.stop_rules(None, strategy, **stop_opts)
    bars = as_bars(prices)
    check_bars(bars)
    check_inputs(bars, params, rules)
    if not check_lookahead:
        return run_simulation(bars, strategy, params, rules)
    from backtest.engine._checks import checked_output
    from backtest.engine._targets import reused_output

    view = strategy_bars(bars)
    with reused_output(strategy, checked_output(strategy, view, params)):
        return run_simulation(bars, strategy, params, rules)


def check_inputs(bars: Bars, params: EngineParams, rules: Any) -> None:
    """Refuse data the options cannot run on, before anything runs.

    Raises:
        ConfigError: a per-asset cost for a symbol not in the data, or none for a symbol
            without a ``default`` (:func:`~backtest.engine._costs.asset_bps`).
        DataValidationError: opens, highs/lows or volumes the options need are missing.
    """
    if params.next_open:
        bars.require("open", why="engine.execution=next_open")
    if rules.needs_high_low:
        _exits.require_high_low(bars.open, bars.high, bars.low)
        bars.require(
            "high", "low", why="stop levels (engine.stop_loss / take_profit / trailing_stop)"
        )
    check_benchmark(params.benchmark, bars)
    check_orders(bars, params, rules)
    asset_rates(params.fee_bps, params.slippage_bps, bars.symbols)  # a symbol not in the data


def run_simulation(
    bars: Bars, strategy: Strategy, params: EngineParams, rules: Any
) -> BacktestResult:
    """:func:`simulate` after validation.

    The strategy sees :func:`~backtest.engine._universe.strategy_bars` (adjusted prices
    when the bars carry corporate actions); the kernel fills at the raw prices of
    :func:`~backtest.engine._universe.kernel_inputs`.
    """
    index = bars.index
    ki = kernel_inputs(bars)
    close = ki.close
    n, a = close.shape
    ppy = resolve_periods_per_year(index, params.periods_per_year)
    view = strategy_bars(bars)
    output, target, sleeve = raw_targets(strategy, view, params)
    raw = target.to_numpy(dtype=np.float64)
    if not ki.plain:
        raw = np.where(ki.hold, raw, 0.0)
    sized, limit_params = raw, params
    if params.sizing == "volatility":  # per asset, instead of the book overlay
        vol_view = bars if ki.plain else vol_bars(view)
        scale = volatility_scale(
            vol_view.close.to_numpy(dtype=np.float64), params.vol_lookback, ppy
        )
        sized = raw * scale * params.target_volatility
        limit_params = replace(params, target_volatility=None)
    limited, bound = limits_of(sized, bars if ki.plain else vol_bars(view), limit_params)
    levels = entry_levels(strategy, view, params, ki.plain)
    arrays = (ki.open, ki.high, ki.low)
    atr = kernel_atr(rules, bars, ki, view)
    ret = np.zeros(n)
    costs = np.zeros((n, len(COST_COLUMNS)))
    held = np.zeros((n, a))
    trades = np.zeros((2 * n * a + a, len(TRADE_FIELDS)))
    stats = np.zeros(4)
    run_book(
        *arrays, close, kernel_array(limited), kernel_array(raw), *ki.rule_arrays(),
        np.asarray(sleeve, np.float64), rebalance_flags(index, params.rebalance),
        not params.sleeves, params.next_open,
        params.rebalance_threshold, params.capital,
        *asset_rates(params.fee_bps, params.slippage_bps, bars.symbols),
        params.fixed_cost, params.min_commission,
        params.borrow_rate / ppy, params.financing_rate / ppy, params.cash_rate / ppy,
        np.array(rules.levels(), dtype=np.float64), atr, rules.use_atr, rules.max_bars,
        rules.lock, orders_of(params, rules), levels, *session_arrays(index), volume_array(bars),
        ret,
        costs, held, trades,
        stats,
    )  # fmt: skip
    returns = pd.Series(ret, index=index, name="returns")
    equity = (1.0 + returns).cumprod().rename("equity")
    table = trades_frame(trades[: int(stats[0])], bars)
    metrics = m.compute_metrics(returns, np.zeros((n, 0)), table, periods_per_year=ppy)  # type: ignore[arg-type]
    metrics["exposure"] = float(stats[2] / n) if n else float("nan")
    metrics["turnover"] = float(stats[3] / n * ppy) if n else float("nan")
    # the sleeve accounting runs on a capital of 1: its costs are fractions, in currency here
    scale = params.capital if params.sleeves else 1.0
    cost_table = pd.DataFrame(costs * scale, index=index, columns=list(COST_COLUMNS))
    for name in COST_COLUMNS:
        metrics[f"cost_{name}"] = float(cost_table[name].sum() / params.capital)
    metrics["limit_scaled_fraction"] = float(bound.mean()) if n else 0.0
    bench = None
    bench_metrics: dict[str, float] = {}
    if params.benchmark is not None:
        b = benchmark_returns(bars, params.benchmark, rebalance=params.rebalance)
        bench = (1.0 + b).cumprod().rename("benchmark")
        metrics.update(m.relative_metrics(ret, b.to_numpy(), periods_per_year=ppy))
        own = m.return_metrics(b, periods_per_year=ppy)  # type: ignore[arg-type]
        bench_metrics = {k: float(v) for k, v in own.items()}
    return BacktestResult(
        returns,
        equity,
        output,
        table,
        metrics,
        _strategy_params(strategy),
        costs=cost_table,
        weights=pd.DataFrame(held, index=index, columns=bars.close.columns),
        benchmark=bench,
        benchmark_metrics=bench_metrics,
        periods_per_year=ppy,
        initial_capital=params.initial_capital,
    )


def price_arrays(bars: Bars) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(open, high, low)`` as float arrays; the closes stand in for a missing field."""
    close = bars.close.to_numpy(dtype=np.float64)
    out = []
    for name in ("open", "high", "low"):
        frame = getattr(bars, name)
        out.append(
            close if frame is None else np.ascontiguousarray(frame.to_numpy(dtype=np.float64))
        )
    return out[0], out[1], out[2]


def volume_array(bars: Bars) -> np.ndarray:
    """Volumes as a float array (the closes stand in when the data has none: unused then)."""
    frame = bars.volume if bars.volume is not None else bars.close
    return np.ascontiguousarray(np.nan_to_num(frame.to_numpy(dtype=np.float64)))


def trades_frame(records: np.ndarray, bars: Bars) -> pd.DataFrame:
    """The trades table from the kernel's records, sorted by entry time and asset.

    Sorted with one stable ``np.lexsort`` on (entry bar, the symbol's rank by name): the
    order of a stable sort on ``entry_time`` then ``asset``, without pandas' sort.
    """
    columns = [*TRADE_COLUMNS, "exit_reason", "order_type", "decision_time"]
    if len(records) == 0:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
    index = bars.index
    names = np.array(bars.symbols, dtype=object)
    by_name = np.empty(len(names), dtype=np.int64)
    by_name[np.argsort(names, kind="stable")] = np.arange(len(names))
    asset = records[:, 0].astype(np.int64)
    entry = records[:, 2].astype(np.int64)
    order = np.lexsort((by_name[asset], entry))
    records, asset, entry = records[order], asset[order], entry[order]
    exit_ = records[:, 3].astype(np.int64)
    reason = records[:, 7].astype(np.int64)
    return pd.DataFrame(
        {
            "asset": pd.Series(names[asset], dtype=object),
            "direction": records[:, 1].astype(np.int64),
            "entry_time": index[entry],
            "exit_time": index[exit_],
            "entry_price": records[:, 4],
            "exit_price": records[:, 5],
            "return": records[:, 6],
            "bars_held": exit_ - entry,
            "is_open": reason == _exits.END,
            "exit_reason": pd.Series(
                np.array(_exits.EXIT_REASONS, dtype=object)[reason], dtype=object
            ),
            "order_type": pd.Series(
                np.array(ORDER_TYPES, dtype=object)[records[:, 9].astype(np.int64)], dtype=object
            ),
            "decision_time": index[records[:, 8].astype(np.int64)],
        }
    )


def _strategy_params(strategy: object) -> dict[str, Any]:
    from backtest.strategies._params import strategy_params

    return strategy_params(strategy)
