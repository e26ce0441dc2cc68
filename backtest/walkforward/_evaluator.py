"""What a walk-forward evaluates: per-bar returns of parameter sets from a price prefix.

:class:`StrategyReturnsEvaluator` runs a strategy's ``batch_positions`` through the
engine's return convention (the same arithmetic as :func:`backtest.engine.simulate`)
for many parameter sets at once. The positions at bar t use closes up to t only
(the :class:`~backtest.strategies.Strategy` contract), so the returns of bars
``[0, end)`` do not depend on anything at or after ``end``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numba
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.engine import cost_rate, resolve_weights
from backtest.errors import ConfigError

_CHUNK_ELEMENTS = 4_000_000


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


@numba.njit(cache=True, nogil=True)
def _accumulate_returns(
    pos: NDArray[np.float64],
    r: NDArray[np.float64],
    cost: float,
    weight: float,
    port: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled; checked against engine.simulate in the tests
    """``port[t, i] += weight * ((1 + pos[t-1, i]·r[t])·(1 - cost·|Δpos|) - 1)``.

    The engine's convention: the target at the close of bar t is held over t+1, the
    position before the first bar is flat, a NaN target (warming up) is flat.
    """
    n, k = pos.shape
    prev = np.zeros(k)
    for t in range(n):  # row by row: both arrays are C-ordered (bars x sets)
        rt = r[t]
        for i in range(k):
            cur = pos[t, i]
            if cur != cur:
                cur = 0.0
            p = prev[i]
            port[t, i] += weight * ((1.0 + p * rt) * (1.0 - cost * abs(cur - p)) - 1.0)
            prev[i] = cur


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
        shared_history: When True (default) each parameter frame is run once over the
            whole history and :meth:`returns` slices it: exact for strategies that keep
            the contract (positions at t use closes up to t). When False every call
            runs over ``prices[:end]`` only, which is slower but needs no contract.

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
    ) -> None:
        if not hasattr(strategy_cls, "batch_positions"):
            raise ConfigError(
                f"{strategy_cls.__name__} has no batch_positions, which walk-forward needs",
                key="strategy",
            )
        self.prices = prices
        self.index = pd.DatetimeIndex(prices.index)
        self.strategy_cls = strategy_cls
        self.cost = cost_rate(fee_bps, slippage_bps)
        self.weights = resolve_weights(prices.columns, weights)
        self.periods_per_year = int(periods_per_year)
        self.fixed_params = dict(fixed_params or {})
        self.shared_history = shared_history
        self._close = [
            np.ascontiguousarray(prices.iloc[:, j].to_numpy(dtype=np.float64))
            for j in range(prices.shape[1])
        ]
        self._cache_key: tuple[tuple[str, ...], bytes] | None = None
        self._cache: NDArray[np.float64] | None = None

    def _param_arrays(self, param_sets: pd.DataFrame) -> dict[str, NDArray[Any]]:
        k = len(param_sets)
        out = {name: np.full(k, value) for name, value in self.fixed_params.items()}
        out.update({str(c): param_sets[c].to_numpy() for c in param_sets.columns})
        return out

    def _run(
        self, params: Mapping[str, NDArray[Any]], k: int, end: int, keep_positions: bool = False
    ) -> tuple[NDArray[np.float64], list[NDArray[np.float64]]]:
        port = np.zeros((end, k))
        kept: list[NDArray[np.float64]] = []
        chunk = max(1, _CHUNK_ELEMENTS // max(end, 1))
        for lo in range(0, k, chunk):
            hi = min(k, lo + chunk)
            part = {name: values[lo:hi] for name, values in params.items()}
            block = np.zeros((end, hi - lo))
            for j, close in enumerate(self._close):
                c = close[:end]
                pos = np.ascontiguousarray(
                    self.strategy_cls.batch_positions(c, part), dtype=np.float64
                )
                r = np.zeros(end)
                r[1:] = c[1:] / c[:-1] - 1.0
                _accumulate_returns(pos, r, self.cost, float(self.weights[j]), block)
                if keep_positions:
                    kept.append(np.where(np.isnan(pos[:, 0]), 0.0, pos[:, 0]))
            port[:, lo:hi] = block
        return port, kept

    def returns(self, param_sets: pd.DataFrame, end: int) -> NDArray[np.float64]:
        """Portfolio returns of bars ``[0, end)`` for each row of ``param_sets``.

        Returns:
            An ``(end, len(param_sets))`` array; bar 0's return is 0 unless a position
            is opened at the first close (its cost).
        """
        k = len(param_sets)
        if not self.shared_history:
            return self._run(self._param_arrays(param_sets), k, end)[0]
        frame = param_sets.reset_index(drop=True)
        key = (
            tuple(map(str, frame.columns)),
            pd.util.hash_pandas_object(frame).to_numpy().tobytes(),
        )
        if key != self._cache_key or self._cache is None:
            self._cache = self._run(self._param_arrays(frame), k, len(self.index))[0]
            self._cache_key = key
        return self._cache[:end]

    def trade(
        self, params: Mapping[str, Any], end: int
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Run one parameter set over ``prices[:end]`` only.

        Returns:
            Its returns, shape ``(end,)``, and its positions, shape ``(end, n_assets)``.
        """
        arrays = {name: np.array([value]) for name, value in self.fixed_params.items()}
        arrays.update({name: np.array([value]) for name, value in params.items()})
        port, pos = self._run(arrays, 1, end, keep_positions=True)
        return port[:, 0], np.column_stack(pos)
