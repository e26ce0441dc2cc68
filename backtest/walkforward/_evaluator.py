"""What a walk-forward evaluates: per-bar returns of parameter sets from a price prefix.

:class:`StrategyReturnsEvaluator` runs many parameter sets at once through the
engine's batched path (:func:`backtest.engine.simulate_batch`, keeping the returns)
and single sets through the engine's return convention (the same arithmetic as
:func:`backtest.engine.simulate`; the tests check both bit for bit). The positions at
bar t use closes up to t only (the :class:`~backtest.strategies.Strategy` contract),
so the returns of bars ``[0, end)`` do not depend on anything at or after ``end``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.engine import cost_rate, resolve_weights, simulate_batch
from backtest.errors import ConfigError
from backtest.walkforward._kernels import accumulate_returns


@runtime_checkable
class ReturnsEvaluator(Protocol):
    """Per-bar returns of parameter sets, computed without looking past ``end``.

    Attributes:
        index: The bars' timestamps.
        periods_per_year: Bars per year, to annualise.
    """

    index: pd.DatetimeIndex
    periods_per_year: int

    def returns(self, param_sets: pd.DataFrame, end: int) -> NDArray[np.float64]:
        """Returns of bars ``[0, end)``, one column per row of ``param_sets``."""
        ...

    def trade(
        self, params: Mapping[str, Any], end: int
    ) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
        """Run one set over bars ``[0, end)`` only.

        Returns its returns and its positions per asset (``None`` when the evaluator
        has no positions).
        """
        ...


class StrategyReturnsEvaluator:
    """Evaluates parameter sets of a batch-capable strategy on wide closes.

    Args:
        prices: Validated wide closes with a ``DatetimeIndex``.
        strategy_cls: A strategy class with ``batch_positions`` (every built-in).
        fee_bps: Commission per unit of traded notional, in basis points.
        slippage_bps: Slippage per unit of traded notional, in basis points.
        weights: Symbol -> portfolio weight; equal weights when empty.
        periods_per_year: Bars per year, for annualised metrics.
        fixed_params: Parameters not searched (e.g. ``long_short``), added to every set.
        shared_history: When True (default) a parameter frame is run once over the
            whole history and :meth:`returns` slices that run: exact for strategies
            that keep the contract (positions at t use closes up to t; the optimizer
            checks the chosen sets against runs that end at their test windows and
            refuses a strategy that looks ahead). When False every call runs over
            ``prices[:end]`` only: slower, and needs no contract.

    Raises:
        ConfigError: The strategy has no ``batch_positions``; bad costs or weights.
    """

    def __init__(
        self,
        prices: pd.DataFrame,
        strategy_cls: type,
        *,
        fee_bps: float = 0.0,
        slippage_bps: float = 0.0,
        weights: Mapping[str, float] | None = None,
        periods_per_year: int = 252,
        fixed_params: Mapping[str, Any] | None = None,
        shared_history: bool = True,
        **engine_options: Any,
    ) -> None:
        from backtest.data import Bars

        # Bars (opens for next_open, highs/lows for stops) and further engine options
        # (rebalance, limits, ...) run through the engine's kernel path
        self.bars = prices if isinstance(prices, Bars) else Bars.from_close(prices)
        prices = self.bars.close
        self.engine_options = dict(engine_options)
        if not hasattr(strategy_cls, "batch_positions") and not hasattr(
            strategy_cls, "batch_weights"
        ):
            raise ConfigError(
                f"{strategy_cls.__name__} has no batch_positions, which walk-forward needs",
                key="strategy",
            )
        self.prices = prices
        self.index = pd.DatetimeIndex(prices.index)
        self.strategy_cls = strategy_cls
        self.fee_bps = float(fee_bps)
        self.slippage_bps = float(slippage_bps)
        self.cost = cost_rate(fee_bps, slippage_bps)
        self.weights = resolve_weights(prices.columns, weights)
        self._weights_map = dict(weights) if weights else None
        self.periods_per_year = int(periods_per_year)
        self.fixed_params = dict(fixed_params or {})
        self.shared_history = shared_history
        self._close = [
            np.ascontiguousarray(prices.iloc[:, j].to_numpy(dtype=np.float64))
            for j in range(prices.shape[1])
        ]
        # Bar returns r[t] = close[t] / close[t-1] - 1 use bars up to t only, so a
        # prefix of these is exactly the bar returns of a price prefix.
        self._bar_returns = [np.concatenate(([0.0], c[1:] / c[:-1] - 1.0)) for c in self._close]
        self._cache_frame: pd.DataFrame | None = None
        self._cache: NDArray[np.float64] | None = None

    def _batch(self, param_sets: pd.DataFrame, end: int) -> NDArray[np.float64]:
        """The engine's batched path over ``prices[:end]``, keeping the returns."""
        fixed = {k: v for k, v in self.fixed_params.items() if k not in param_sets.columns}
        bars = self.bars if end == len(self.prices) else self.bars.iloc[:end]
        batch = simulate_batch(
            bars,
            self.strategy_cls,
            param_sets.assign(**fixed) if fixed else param_sets,
            fee_bps=self.fee_bps,
            slippage_bps=self.slippage_bps,
            weights=self._weights_map,
            periods_per_year=self.periods_per_year,
            keep_returns=True,
            **self.engine_options,
        )
        assert batch.returns is not None
        return batch.returns

    def returns(self, param_sets: pd.DataFrame, end: int) -> NDArray[np.float64]:
        """Portfolio returns of bars ``[0, end)`` for each row of ``param_sets``.

        Returns:
            An ``(end, len(param_sets))`` array; bar 0's return is 0 unless a position
            is opened at the first close (its cost).
        """
        if not self.shared_history:
            return self._batch(param_sets, end)
        cached = self._cache_frame
        if (
            cached is None
            or self._cache is None
            or not (cached is param_sets or cached.equals(param_sets))
        ):
            self._cache = self._batch(param_sets, len(self.index))
        self._cache_frame = param_sets  # the next call with this frame is an identity check
        return self._cache[:end]

    def trade(
        self, params: Mapping[str, Any], end: int
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Run one parameter set over ``prices[:end]`` only.

        Returns:
            Its returns, shape ``(end,)``, and its positions, shape ``(end, n_assets)``.
        """
        engine = {k: v for k, v in params.items() if str(k).startswith("engine.")}
        if self.engine_options or engine or not hasattr(self.strategy_cls, "batch_positions"):
            return self._simulate(params, engine, end)
        arrays = {k: np.array([v]) for k, v in {**self.fixed_params, **params}.items()}
        port = np.zeros((end, 1))
        positions = np.empty((end, len(self._close)))
        for j, close in enumerate(self._close):
            c = close[:end]
            pos = np.ascontiguousarray(
                self.strategy_cls.batch_positions(c, arrays), dtype=np.float64
            )
            accumulate_returns(
                pos, self._bar_returns[j][:end], self.cost, float(self.weights[j]), port
            )
            positions[:, j] = np.where(np.isnan(pos[:, 0]), 0.0, pos[:, 0])
        return port[:, 0], positions

    def _simulate(
        self, params: Mapping[str, Any], engine: Mapping[str, Any], end: int
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """:meth:`trade` through :func:`~backtest.engine.simulate` (engine v2 options).

        The positions returned are the weights held after each close divided by the
        evaluator's asset weights, so that stitched exposure, turnover and fold-switch
        costs (which multiply positions by those weights) see the held weights.
        """
        from backtest.engine import simulate

        own = {k: v for k, v in {**self.fixed_params, **params}.items() if k not in engine}
        options = {
            "fee_bps": self.fee_bps,
            "slippage_bps": self.slippage_bps,
            "weights": self._weights_map,
            "periods_per_year": self.periods_per_year,
            **self.engine_options,
            **{str(k).removeprefix("engine."): v for k, v in engine.items()},
        }
        bars = self.bars if end == len(self.prices) else self.bars.iloc[:end]
        result = simulate(bars, self.strategy_cls(**own), **options)
        assert result.weights is not None
        w = np.asarray(self.weights, dtype=np.float64)
        held = result.weights.to_numpy()
        positions = np.divide(held, w, out=np.zeros_like(held), where=w != 0.0)
        return result.returns.to_numpy(), positions
