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
from backtest.engine._costs import asset_rates, is_per_asset, uniform_costs
from backtest.engine._set_positions import set_positions
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

    As the command line (and :func:`~backtest.engine.simulate`): the data is checked
    with the same named errors when the evaluator is made, ``periods_per_year`` is
    inferred from the index when not given, and the strategy is checked for look-ahead
    before the first batch.

    Args:
        prices: :class:`~backtest.data.Bars` or wide closes with a ``DatetimeIndex``.
        strategy_cls: A strategy class (with a fast path of its own, as every
            built-in, no Python call per set).
        fee_bps: Commission per unit of traded notional, in basis points: a number, or
            ``{symbol: bps}`` with a ``default`` (per-asset costs).
        slippage_bps: Slippage per unit of traded notional, in basis points (as ``fee_bps``).
        weights: Symbol -> portfolio weight; equal weights when empty.
        periods_per_year: Bars per year, for annualised metrics; inferred from the index
            when None (as the command line does).
        fixed_params: Parameters not searched (e.g. ``long_short``), added to every set.
        shared_history: When True (default) a parameter frame is run once over the
            whole history and :meth:`returns` slices that run: exact for strategies
            that keep the contract (positions at t use closes up to t; the optimizer
            checks the chosen sets against runs that end at their test windows and
            refuses a strategy that looks ahead). When False every call runs over
            ``prices[:end]`` only: slower, and needs no contract.
        verify: Before the first batch, compare ``batch_positions`` with ``positions``
            on a few of its sets (:func:`backtest.search.verify_fast_path`).
        check_lookahead: Before the first batch, check a set of it for look-ahead
            (whatever ``shared_history`` and the costs; ``False`` skips it).
        **engine_options: Further engine options (rebalance, limits, stops, ...).

    A strategy without a ``batch_positions`` of its own is accepted: each set runs one
    ``positions`` call (slower, the same returns).

    Raises:
        ConfigError: Bad costs or weights.
        DataValidationError: Bad data, naming the column, the first bad timestamp and
            the count (as the command line).
    """

    def __init__(
        self,
        prices: pd.DataFrame,
        strategy_cls: type,
        *,
        fee_bps: float | Mapping[str, float] = 0.0,
        slippage_bps: float | Mapping[str, float] = 0.0,
        weights: Mapping[str, float] | None = None,
        periods_per_year: float | None = None,
        fixed_params: Mapping[str, Any] | None = None,
        shared_history: bool = True,
        verify: bool = True,
        check_lookahead: bool = True,
        **engine_options: Any,
    ) -> None:
        from backtest.data import Bars
        from backtest.data._check import check_bars
        from backtest.engine._periods import resolve_periods_per_year
        from backtest.strategies._checks import require_strategy_class

        # Bars (opens for next_open, highs/lows for stops) and further engine options
        # (rebalance, limits, ...) run through the engine's kernel path
        check_bars(prices)
        self.bars = prices if isinstance(prices, Bars) else Bars.from_close(prices)
        prices = self.bars.close
        self.engine_options = dict(engine_options)
        require_strategy_class(strategy_cls)
        self.prices = prices
        self.index = pd.DatetimeIndex(prices.index)
        self.strategy_cls = strategy_cls
        symbols = [str(c) for c in prices.columns]
        # a per-asset cost mapping pricing every asset alike is its number (v1's paths)
        self.fee_bps, self.slippage_bps = uniform_costs(fee_bps, slippage_bps, symbols)
        #: The cost rate, one per asset with per-asset costs (fold switches, stitched trades)
        self.cost: float | NDArray[np.float64]
        if is_per_asset(self.fee_bps) or is_per_asset(self.slippage_bps):
            fee, slip = asset_rates(self.fee_bps, self.slippage_bps, symbols)
            self.cost = fee + slip
        else:
            self.cost = cost_rate(self.fee_bps, self.slippage_bps)
        self.weights = resolve_weights(prices.columns, weights)
        self._weights_map = dict(weights) if weights else None
        self.periods_per_year = int(resolve_periods_per_year(self.index, periods_per_year))
        self.fixed_params = dict(fixed_params or {})
        self.shared_history = shared_history
        self._close = [
            np.ascontiguousarray(prices.iloc[:, j].to_numpy(dtype=np.float64))
            for j in range(prices.shape[1])
        ]
        self._wide = np.ascontiguousarray(prices.to_numpy(dtype=np.float64))
        self._by_asset = np.ascontiguousarray(self._wide.T)  # asset-major, for trade()
        # Bar returns r[t] = close[t] / close[t-1] - 1 use bars up to t only, so a
        # prefix of these is exactly the bar returns of a price prefix.
        self._bar_returns = [np.concatenate(([0.0], c[1:] / c[:-1] - 1.0)) for c in self._close]
        self._verified = not (verify or check_lookahead)
        self._check_lookahead = check_lookahead
        self._cache_frame: pd.DataFrame | None = None
        self._cache: NDArray[np.float64] | None = None
        self._last_run: tuple[Any, tuple[NDArray[np.float64], NDArray[np.float64]]] | None = None
        self._sleeves: bool | None = None  # _sleeves_path(), once: it depends on the class and bars

    @property
    def _cost_of(self) -> NDArray[np.float64]:
        """The cost rate of each asset (the same for all without per-asset costs)."""
        return np.broadcast_to(np.asarray(self.cost, dtype=np.float64), (len(self._close),))

    def backtest(self, params: Mapping[str, Any], end: int) -> NDArray[np.float64]:
        """The single backtest of one set over bars ``[0, end)``: its returns.

        :func:`~backtest.engine.simulate` with this evaluator's options, whatever path
        :meth:`returns` takes: what every walk-forward fold compares its chosen set (and
        a sample of others) with (:mod:`backtest.search._truth`).
        """
        return self._simulate(params, self._engine_columns(params), end)[0]

    def _key(self, params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((str(k), repr(v)) for k, v in {**self.fixed_params, **params}.items()))

    def check_space(self, names: Any) -> None:
        """Refuse a searched ``engine.<key>`` the strategy declares itself, before any fold.

        Raises:
            ConfigError: naming the searched key and ``<Strategy>.<key>``.
        """
        from backtest.engine._declared import check_searched_keys

        check_searched_keys(self.strategy_cls, [str(n) for n in names])

    def _batch(self, param_sets: pd.DataFrame, end: int) -> NDArray[np.float64]:
        """The engine's batched path over ``prices[:end]``, keeping the returns."""
        fixed = {k: v for k, v in self.fixed_params.items() if k not in param_sets.columns}
        bars = self.bars if end == len(self.prices) else self.bars.iloc[:end]
        frame = param_sets.assign(**fixed) if fixed else param_sets
        if not self._verified:
            from backtest.search._evaluators import verify_fast_path

            self._verified = True
            verify_fast_path(
                self.strategy_cls,
                self.bars,
                frame.reset_index(drop=True),
                check_lookahead=self._check_lookahead,
                engine={
                    "fee_bps": self.fee_bps,
                    "slippage_bps": self.slippage_bps,
                    "weights": self._weights_map,
                    "periods_per_year": self.periods_per_year,
                    **self.engine_options,
                },
            )
        batch = simulate_batch(
            bars,
            self.strategy_cls,
            frame,
            fee_bps=self.fee_bps,
            slippage_bps=self.slippage_bps,
            weights=self._weights_map,
            periods_per_year=self.periods_per_year,
            keep_returns=True,
            check_lookahead=False,  # checked once, before the first batch (above)
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
        engine = self._engine_columns(params)
        if self.engine_options or engine or not self._sleeves_path():
            return self._simulate(params, engine, end)
        arrays = {k: np.array([v]) for k, v in {**self.fixed_params, **params}.items()}
        port = np.zeros((end, 1))
        positions = np.empty((end, len(self._close)))
        bars = self.bars if end == len(self.prices) else self.bars.iloc[:end]
        by_asset = self._by_asset[:, :end]  # (each asset's closes stay contiguous)
        per_asset = set_positions(bars, self._wide[:end], self.strategy_cls, arrays, 1, by_asset)
        for j in range(len(self._close)):
            pos = per_asset(j)
            accumulate_returns(
                pos,
                self._bar_returns[j][:end],
                float(self._cost_of[j]),
                float(self.weights[j]),
                port,
            )
            positions[:, j] = np.where(np.isnan(pos[:, 0]), 0.0, pos[:, 0])
        return port[:, 0], positions

    def trade_is_backtest(self, params: Mapping[str, Any]) -> bool:
        """Whether :meth:`trade` of ``params`` runs :meth:`backtest` itself (and keeps it).

        Then a fold's one-truth check over the bars it trades costs nothing more
        (:class:`~backtest.search._truth.FoldTruth`).
        """
        return bool(self.engine_options or self._engine_columns(params)) or not (
            self._sleeves_path()
        )

    def _engine_columns(self, params: Mapping[str, Any]) -> dict[str, Any]:
        from backtest.engine._declared import is_engine_column

        return {k: v for k, v in params.items() if is_engine_column(str(k), self.strategy_cls)}

    def _sleeves_path(self) -> bool:
        """Whether :meth:`trade` may run engine v1's sleeve formula itself.

        Only for a legacy (positions) strategy that declares no engine setting of its own
        (no exits: :func:`~backtest.engine._declared.declared_keys`) and has no
        ``batch_weights``; its positions come from :func:`set_positions` (the class's own
        ``batch_positions``, else one checked ``positions`` call). Anything else runs
        :func:`~backtest.engine.simulate`, which reads the instance's exits.
        """
        if self._sleeves is not None:
            return self._sleeves
        from backtest.engine._declared import declared_keys
        from backtest.engine._targets import outputs_weights
        from backtest.engine._universe import is_plain
        from backtest.strategies._checks import fast_method

        cls = self.strategy_cls
        self._sleeves = bool(
            callable(getattr(cls, "positions", None))
            and fast_method(cls) != "batch_weights"
            and not outputs_weights(cls)
            and not declared_keys(cls)
            and is_plain(self.bars)  # a real universe runs the engine's per-bar kernel
        )
        return self._sleeves

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
        engine = {f"engine.{str(k).removeprefix('engine.')}": v for k, v in engine.items()}
        options = {
            "fee_bps": self.fee_bps,
            "slippage_bps": self.slippage_bps,
            "weights": self._weights_map,
            "periods_per_year": self.periods_per_year,
            **self.engine_options,
            **{str(k).removeprefix("engine."): v for k, v in engine.items()},
        }
        key = (self._key(params), end)
        if self._last_run is not None and self._last_run[0] == key:
            return self._last_run[1]  # (a fold verifies its set, then trades the same run)
        bars = self.bars if end == len(self.prices) else self.bars.iloc[:end]
        result = simulate(bars, self.strategy_cls(**own), check_lookahead=False, **options)
        assert result.weights is not None
        w = np.asarray(self.weights, dtype=np.float64)
        held = result.weights.to_numpy()
        positions = np.divide(held, w, out=np.zeros_like(held), where=w != 0.0)
        self._last_run = (key, (result.returns.to_numpy(), positions))
        return self._last_run[1]
