"""Evaluators: what a search calls to score a parameter set.

Two kinds:

* any Python callable ``params -> float | Mapping[str, float] | BacktestResult``. If
  it accepts a ``seed`` keyword it receives the trial's seed. With ``n_jobs > 1`` it
  runs in worker processes; pass it as an import path (``"mypkg.mod:score"``) or
  use a module-level function so workers can find it.
* a batch evaluator: anything with ``evaluate_batch(params_frame, *, keep=None) ->
  BatchResult``, such as :class:`StrategyEvaluator`, which scores thousands of sets
  per call on the engine's fused kernels with no Python call per set.
"""

from __future__ import annotations

import importlib
import inspect
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.engine import BatchResult, simulate_batch
from backtest.engine._costs import is_per_asset, uniform_costs
from backtest.errors import ConfigError
from backtest.metrics import METRIC_NAMES


@runtime_checkable
class BatchEvaluator(Protocol):
    """Scores many parameter sets in one call."""

    def evaluate_batch(
        self, params: pd.DataFrame, *, keep: NDArray[np.bool_] | None = None
    ) -> BatchResult:
        """One metrics row per row of ``params`` (same order); returns of the kept rows."""
        ...


class StrategyEvaluator:
    """Scores parameter sets of one strategy on fixed prices through the batched engine.

    Its metrics equal :func:`backtest.engine.simulate` for the same parameters (the
    engine's tests check this, and every search checks its best set and a sample of
    others against :func:`~backtest.engine.simulate`: :mod:`backtest.search._truth`): a
    search over it is a search over real backtests.

    As the command line (and :func:`~backtest.engine.simulate`): the data is checked
    with the same named errors when the evaluator is made, ``periods_per_year`` is
    inferred from the index when not given, and the strategy is checked for look-ahead
    before the first batch.

    Args:
        prices: :class:`~backtest.data.Bars` or wide closes (a ``DatetimeIndex``, one
            column per asset).
        strategy_cls: The strategy class, or its import path
            (``"backtest.strategies.SmaCross"``; other modules must be listed in
            ``allowed_modules``).
        fee_bps: Commission per unit of traded notional, in basis points: a number, or
            ``{symbol: bps}`` with a ``default`` (per-asset costs; the per-bar kernel).
        slippage_bps: Slippage per unit of traded notional, in basis points (as ``fee_bps``).
        weights: Symbol -> portfolio weight; equal weights when empty.
        periods_per_year: Bars per year, for annualised metrics; inferred from the index
            when None (252 daily, 98,280 for minute bars, ...: as the command line).
        fixed_params: Parameters not searched (e.g. ``long_short``), under every set.
        allowed_modules: Extra module prefixes a string ``strategy_cls`` may name.
        verify: Before the first batch, compare ``batch_positions`` with ``positions``
            on a few sets of that batch (:func:`verify_fast_path`).
        check_lookahead: Before the first batch, check a set of it for look-ahead
            (``False`` skips it).
        **engine_options: Further engine options (rebalance, limits, stops, ...).

    Raises:
        ConfigError: not a strategy class.
        DataValidationError: bad data, naming the column, the first bad timestamp and
            the count (as the command line).

    A strategy without a ``batch_positions`` of its own runs one ``positions`` call
    per set (slower, the same metrics).

    Examples:
        >>> from backtest.strategies import SmaCross
        >>> idx = pd.bdate_range("2020-01-01", periods=300)
        >>> prices = pd.DataFrame({"A": 100 + np.sin(np.arange(300) / 20) * 10}, index=idx)
        >>> ev = StrategyEvaluator(prices, SmaCross, fee_bps=5)
        >>> round(ev({"fast": 5, "slow": 20})["n_trades"])
        3
    """

    def __init__(
        self,
        prices: pd.DataFrame,
        strategy_cls: type | str,
        *,
        fee_bps: float | Mapping[str, float] = 0.0,
        slippage_bps: float | Mapping[str, float] = 0.0,
        weights: Mapping[str, float] | None = None,
        periods_per_year: float | None = None,
        fixed_params: Mapping[str, Any] | None = None,
        allowed_modules: Iterable[str] = (),
        verify: bool = True,
        check_lookahead: bool = True,
        **engine_options: Any,
    ) -> None:
        from backtest.data import Bars
        from backtest.data._check import check_bars
        from backtest.engine._periods import resolve_periods_per_year

        # Bars carry opens/highs/lows for next_open fills and stops; further engine
        # options (rebalance, limits, stops, ...) go to simulate_batch as given
        check_bars(prices)
        self.bars = prices if isinstance(prices, Bars) else None
        prices = prices.close if isinstance(prices, Bars) else prices
        self.engine_options = dict(engine_options)
        if isinstance(strategy_cls, str):
            from backtest.strategies._loader import load_strategy_class

            strategy_cls = load_strategy_class(strategy_cls, allowed_modules)
        from backtest.strategies._checks import require_strategy_class

        require_strategy_class(strategy_cls)
        self.prices = prices
        self.strategy_cls = strategy_cls
        # a per-asset cost mapping pricing every asset alike is its number (fused kernels)
        symbols = [str(c) for c in prices.columns]
        self.fee_bps, self.slippage_bps = uniform_costs(fee_bps, slippage_bps, symbols)
        self.weights = dict(weights) if weights else None
        self.periods_per_year = _whole(resolve_periods_per_year(prices.index, periods_per_year))
        self.fixed_params = dict(fixed_params or {})
        self._engine: tuple[float, NDArray[np.float64], NDArray[np.float64]] | None = None
        self._generic: tuple[Any, ...] | bool | None = None  # see _generic_inputs
        self._verified = not (verify or check_lookahead)
        self._check_lookahead = check_lookahead
        self._timed = False  # the first batch of an own fast path is timed (._speed)

    def _generic_inputs(self) -> tuple[Any, ...] | None:
        """The generic path's inputs, built once: ``None`` when sets go elsewhere.

        ``(bars, closes, cost, weights, periods per year, returns per asset)`` when
        :func:`~backtest.engine.simulate_batch` with this evaluator's options would send
        plain parameter sets to the generic path, which a search then calls directly.
        """
        if self._generic is None:
            from backtest.data import Bars
            from backtest.engine._batch import takes_generic_path
            from backtest.engine._costs import bar_returns
            from backtest.engine._periods import resolve_periods_per_year
            from backtest.engine._universe import is_plain

            bars = self.bars if self.bars is not None else Bars.from_close(self.prices)
            ppy = resolve_periods_per_year(bars.index, self.periods_per_year)
            options = {**self.engine_options, "fee_bps": self.fee_bps,
                       "slippage_bps": self.slippage_bps, "weights": self.weights}  # fmt: skip
            if not takes_generic_path(self.strategy_cls, periods_per_year=ppy, **options) or (
                not is_plain(bars)  # a real universe runs the engine's per-bar kernel
            ):
                self._generic = False
            else:
                cost, weights, close = self._arrays()
                r = bar_returns(np.ascontiguousarray(close.T), axis=1)  # asset-major
                self._generic = (bars, close, cost, weights, int(ppy), r)
        return self._generic or None

    def _plain(self) -> bool:
        """Whether the data is a full panel without corporate actions (the fused kernels')."""
        plain = self.__dict__.get("_plain_data")
        if plain is None:
            from backtest.engine._universe import is_plain

            bars = self.bars
            if bars is None:
                plain = bool(np.isfinite(self.prices.to_numpy(dtype=np.float64)).all())
            else:
                plain = is_plain(bars)
            self.__dict__["_plain_data"] = plain
        return bool(plain)

    def _arrays(self) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
        """``(cost rate, weights, closes)`` of the kernels, built once."""
        if self._engine is None:
            from backtest.engine import cost_rate, resolve_weights

            self._engine = (
                cost_rate(self.fee_bps, self.slippage_bps),
                resolve_weights(self.prices.columns, self.weights),
                np.ascontiguousarray(self.prices.to_numpy(dtype=np.float64)),
            )
        return self._engine

    def _verify(self, frame: pd.DataFrame) -> None:
        """Before the first batch: no look-ahead, ``batch_positions`` equals ``positions``."""
        if self._verified:
            return
        self._verified = True
        verify_fast_path(
            self.strategy_cls,
            self.bars if self.bars is not None else self.prices,
            frame,
            check_lookahead=self._check_lookahead,
            engine=self._engine_kwargs(),
        )

    def _engine_kwargs(self) -> dict[str, Any]:
        """Every engine option of this evaluator, as :func:`simulate` keywords."""
        return {
            "fee_bps": self.fee_bps,
            "slippage_bps": self.slippage_bps,
            "weights": self.weights,
            "periods_per_year": self.periods_per_year,
            **self.engine_options,
        }

    @property
    def index(self) -> pd.DatetimeIndex:
        """The bars of the return series."""
        return self.prices.index

    def backtest(self, params: Mapping[str, Any]) -> Any:
        """The single backtest of one set: :func:`~backtest.engine.simulate`, these options.

        What every search compares its chosen set (and a sample of others) with
        (:mod:`backtest.search._truth`); ``engine.<key>`` parameters are engine options.
        """
        from backtest.engine import simulate
        from backtest.engine._declared import is_engine_column

        engine = {
            str(k).removeprefix("engine."): _plain(v)
            for k, v in params.items()
            if is_engine_column(str(k), self.strategy_cls)
        }
        own = {
            k: _plain(v)
            for k, v in params.items()
            if not is_engine_column(str(k), self.strategy_cls)
        }
        return simulate(
            self.bars if self.bars is not None else self.prices,
            self.strategy_cls(**{**self.fixed_params, **own}),
            check_lookahead=False,  # checked once, before the first batch
            **{**self._engine_kwargs(), **engine},
        )

    def check_space(self, names: Iterable[str]) -> None:
        """Refuse a searched ``engine.<key>`` the strategy declares itself, before any trial.

        Raises:
            ConfigError: naming the searched key and ``<Strategy>.<key>``
                (:func:`~backtest.engine._declared.check_searched_keys`).
        """
        from backtest.engine._declared import check_searched_keys

        check_searched_keys(self.strategy_cls, names)

    def _frame(self, params: pd.DataFrame) -> pd.DataFrame:
        frame = params.reset_index(drop=True)
        fixed = {k: v for k, v in self.fixed_params.items() if k not in frame.columns}
        if fixed:
            frame = frame.assign(**fixed)
        return frame

    def evaluate_batch(
        self, params: pd.DataFrame, *, keep: NDArray[np.bool_] | None = None
    ) -> BatchResult:
        """Every metric of every row of ``params``; returns of the rows in ``keep``.

        Raises:
            ConfigError: a parameter set the strategy rejects (the first, named).
        """
        frame = self._frame(params)
        self._verify(frame)
        result = simulate_batch(
            self.bars if self.bars is not None else self.prices,
            self.strategy_cls,
            frame,
            fee_bps=self.fee_bps,
            slippage_bps=self.slippage_bps,
            weights=self.weights,
            periods_per_year=self.periods_per_year,
            keep_returns=False if keep is None else keep,
            check_lookahead=False,  # checked once, before the first batch (_verify)
            **self.engine_options,
        )
        return BatchResult(result.metrics.iloc[:, frame.shape[1] :], result.returns)

    def evaluate_columns(
        self, params: Mapping[str, NDArray[Any]], *, keep: NDArray[np.bool_] | None = None
    ) -> tuple[list[str], NDArray[np.float64], NDArray[np.float64] | None]:
        """The fast form of :meth:`evaluate_batch`, on arrays.

        Returns:
            ``(metric names, values (k, n_metrics), kept returns (n_bars, n_kept) or None)``.
        """
        from backtest.engine import _fused
        from backtest.engine._batch import generic_values

        columns = {
            **{
                k: np.full(len(next(iter(params.values()))), v)
                for k, v in self.fixed_params.items()
                if k not in params
            },
            **params,
        }
        engine_columns = any(str(c).startswith("engine.") for c in columns)
        if not self._timed:  # an own fast path's first batch, timed against positions once
            self._timed = True
            from backtest.strategies._checks import has_fast_path

            if has_fast_path(self.strategy_cls) and not _fused.supports(
                self.strategy_cls, list(columns)
            ):
                from backtest.search._speed import timed_first_batch

                self._verify(pd.DataFrame(columns))  # the checks are not in the time
                return timed_first_batch(
                    lambda: self.evaluate_columns(params, keep=keep),
                    lambda: self.evaluate_columns({k: v[:1] for k, v in params.items()}),
                    self.strategy_cls,
                    self.bars if self.bars is not None else self.prices,
                    pd.DataFrame(columns),
                    self._engine_kwargs(),
                )

        def batched() -> tuple[list[str], NDArray[np.float64], NDArray[np.float64] | None]:
            result = self.evaluate_batch(pd.DataFrame(dict(params)), keep=keep)
            return (
                [str(c) for c in result.metrics.columns],
                result.metrics.to_numpy(dtype=np.float64),
                result.returns,
            )

        if (
            self.engine_options
            or engine_columns
            or not _fused.supports(self.strategy_cls, list(columns))
            or not isinstance(self.periods_per_year, int)  # (the kernels take whole bars)
            or not self._plain()  # a real universe: the engine's per-bar kernel
            or is_per_asset(self.fee_bps)  # per-asset costs: the per-bar kernel
            or is_per_asset(self.slippage_bps)
        ):
            if not self._verified:
                self._verify(pd.DataFrame(columns))
            generic = None if engine_columns else self._generic_inputs()
            if generic is None:
                return batched()
            values, returns = generic_values(
                generic[0], generic[1], self.strategy_cls, columns, *generic[2:5], keep,
                r_assets=generic[5],
            )  # fmt: skip
            return list(METRIC_NAMES), values, returns
        cost, weights, close = self._arrays()
        fused = _fused.fused_batch(
            close,
            self.strategy_cls,
            columns,
            cost=cost,
            weights=weights,
            periods_per_year=self.periods_per_year,
            keep=keep,
        )
        if fused is None:  # a signal table over its budget: the generic path
            return batched()
        values, kept = fused
        return list(METRIC_NAMES), values, None if kept is None else kept.T

    def __call__(self, params: Mapping[str, Any]) -> dict[str, float]:
        """The metrics of one parameter set."""
        row = self.evaluate_batch(pd.DataFrame([dict(params)])).metrics.iloc[0]
        return {str(k): float(v) for k, v in row.items()}

    def __repr__(self) -> str:
        return (
            f"StrategyEvaluator({self.strategy_cls.__name__}, {self.prices.shape[1]} assets "
            f"x {len(self.prices)} bars, fee_bps={self.fee_bps}, "
            f"slippage_bps={self.slippage_bps})"
        )


def _whole(value: float) -> float | int:
    """Bars per year as the command line records them: an int when whole."""
    return int(value) if float(value).is_integer() else float(value)


def verify_fast_path(
    strategy_cls: type,
    prices: Any,
    frame: pd.DataFrame,
    *,
    check_lookahead: bool = True,
    engine: Mapping[str, Any] | None = None,
) -> int:
    """Check a strategy on a few rows of ``frame`` before a search relies on it.

    The look-ahead check (:func:`backtest.check_strategy`'s, on the target
    weights of :func:`backtest.engine.target_weights` with the run's engine options and
    the set's ``engine.<key>`` columns) on the first set the strategy accepts; then, for
    a strategy with a generic fast path of its own, ``batch_positions`` (or
    ``batch_weights``) against ``positions`` on at least 8 rows spread over the batch
    (:func:`~backtest.strategies._checks.sample_rows`; the fused kernels of the
    built-ins are checked by the engine's tests).

    Args:
        strategy_cls: The strategy class.
        prices: :class:`~backtest.data.Bars` or wide closes.
        frame: Parameter sets (strategy parameters, maybe ``engine.<key>`` columns).
        check_lookahead: Run the look-ahead check.
        engine: The run's engine options.

    Returns:
        How many sets were compared with ``positions``.

    Raises:
        StrategyContractError: it looks ahead, or the two disagree; names the
            strategy, the set and the first differing bar.
    """
    from backtest.data._bars import as_bars
    from backtest.engine import _fused
    from backtest.engine._batch_kernel import split_columns
    from backtest.engine._checks import check_batch_positions, check_sets_lookahead
    from backtest.strategies._checks import has_fast_path, sample_rows

    if len(frame) == 0:
        return 0
    own, engine_frame = split_columns(frame.reset_index(drop=True), strategy_cls)
    rows = sample_rows(len(frame), frame=own)  # at least 8 sets, spread over the space
    sets = [{str(c): _plain(own[c].iloc[i]) for c in own.columns} for i in rows]
    if check_lookahead:
        check_sets_lookahead(strategy_cls, as_bars(prices), own, engine_frame, rows, engine)
    if not has_fast_path(strategy_cls) or not callable(getattr(strategy_cls, "positions", None)):
        return 0
    if _fused.supports(strategy_cls, [str(c) for c in own.columns]):
        return 0
    return check_batch_positions(strategy_cls, prices, sets)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def resolve_callable(evaluator: Any) -> Callable[..., Any]:
    """An evaluator given as ``"module:function"`` / ``"module.function"``, imported.

    Raises:
        ConfigError: the path cannot be imported or does not name a callable.
    """
    if not isinstance(evaluator, str):
        if not callable(evaluator):
            raise ConfigError(
                f"evaluator must be callable, got {type(evaluator).__name__}", key="evaluator"
            )
        return evaluator
    module_name, sep, attr = evaluator.partition(":")
    if not sep:
        module_name, _, attr = evaluator.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"cannot import evaluator {evaluator!r}: {exc}", key="evaluator") from exc
    if not callable(obj):
        raise ConfigError(f"evaluator {evaluator!r} is not callable", key="evaluator")
    return obj


def accepts_seed(func: Callable[..., Any]) -> bool:
    """Whether ``func`` takes a ``seed`` keyword (or ``**kwargs``)."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "seed" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def normalize_outcome(value: Any, metric: str) -> tuple[dict[str, float], pd.Series | None]:
    """Metrics (and a return series, when given) from what an evaluator returned.

    Raises:
        TypeError: anything but a number, a mapping of numbers or a backtest result.
    """
    returns = None
    if hasattr(value, "metrics") and hasattr(value, "returns"):  # a BacktestResult
        returns = value.returns
        value = value.metrics
    if isinstance(value, numbers.Real | np.number) and not isinstance(value, bool):
        return {metric: float(value)}, returns
    if isinstance(value, Mapping):
        out: dict[str, float] = {}
        for key, v in value.items():
            if isinstance(v, numbers.Real | np.number):
                out[str(key)] = float(v)
            elif v is None:
                out[str(key)] = math.nan
        return out, returns
    raise TypeError(
        f"evaluator returned {type(value).__name__}; expected a number, a "
        "mapping of metric -> number, or a BacktestResult"
    )


def check_score(metrics: Mapping[str, float], metric: str) -> str | None:
    """Why a trial's score is unusable (missing, NaN or infinite), or ``None``."""
    if metric not in metrics:
        return f"the evaluator returned no {metric!r} (it returned {sorted(metrics)})"
    value = metrics[metric]
    if not math.isfinite(value):
        return f"{metric} is {value}"
    return None
