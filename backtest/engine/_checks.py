"""The strategy checks that need the engine: targets as the engine makes them.

* :func:`check_strategy`: what every run checks before it relies on a strategy: no
  look-ahead in its target weights (:func:`backtest.strategies._checks.check_lookahead`
  on :func:`targets_fn`) and, for a class with a fast path of its own, that the fast
  path agrees with ``positions``.
* :func:`check_batch_positions`: a strategy's ``batch_positions`` (the fast path of
  searches and walk-forwards) gives the same output as ``positions`` for a few
  sampled parameter sets.

The checks' machinery that does not need the engine (cut points, first difference,
ownership of a fast path) is :mod:`backtest.strategies._checks`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.data._bars import Bars, as_bars
from backtest.engine._levels import check_levels_lookahead, has_levels, level_values
from backtest.engine._params import ENGINE_KEYS, EngineParams, engine_params
from backtest.engine._periods import resolve_periods_per_year
from backtest.engine._targets import output_values, strategy_output, target_values, targets_of
from backtest.errors import ConfigError, StrategyContractError
from backtest.strategies._checks import (
    DEFAULT_CUTS,
    PositionsFn,
    _first_difference,
    batch_column,
    check_data,
    check_lookahead,
    fast_method,
    has_fast_path,
    positions_values,
    strategy_name,
)
from backtest.strategies._params import strategy_params


def targets_fn(strategy: Any, engine: Any = None) -> PositionsFn:
    """``data -> target weights`` of ``strategy``: :func:`backtest.engine.target_weights`.

    Args:
        strategy: A strategy instance.
        engine: Engine options (keys of ``engine.*``) or ``EngineParams``; options that
            are not target options (stops, ``check_lookahead``) are ignored.
            ``periods_per_year`` should be given when a vol target is set (a short
            prefix cannot infer it).
    """
    if isinstance(engine, EngineParams):
        params = engine
    else:
        params = engine_params(
            **{k: getattr(v, "value", v) for k, v in (engine or {}).items() if k in ENGINE_KEYS}
        )

    def fn(data: Any) -> NDArray[np.float64]:  # target_weights' values, without frames
        return target_values(strategy, as_bars(data), params)

    return fn


def checked_output(strategy: Any, bars: Bars, params: EngineParams) -> NDArray[np.float64]:
    """The strategy's output over all ``bars``, once its targets passed the look-ahead check.

    A strategy with its own entry levels (``entry_price``, :mod:`._levels`) has them
    checked the same way.

    The check of every run (:func:`check_strategy`'s, on the target weights the engine
    trades with ``params``); the output it computed is returned for the run to reuse
    (:func:`~backtest.engine._targets.reused_output`), so the check costs only the cut
    runs.

    Raises:
        StrategyContractError: the strategy looks ahead (names the first bar that changed).
    """
    if params.periods_per_year is None:  # a vol target on a short prefix cannot infer it
        from dataclasses import replace

        params = replace(params, periods_per_year=resolve_periods_per_year(bars.index, None))
    full = output_values(strategy, bars)
    check_lookahead(
        targets_fn(strategy, params),
        check_data(strategy, bars),
        name=strategy_name(strategy),
        params=strategy_params(strategy),
        full=targets_of(strategy, full, bars, params),
    )
    if has_levels(strategy):  # its own entry levels: no look-ahead either
        check_levels_lookahead(strategy, bars, level_values(strategy, bars))
    return full


def check_sets_lookahead(
    strategy_cls: type,
    bars: Bars,
    own: pd.DataFrame,
    engine_frame: pd.DataFrame,
    rows: Sequence[int],
    engine: Mapping[str, Any] | None = None,
) -> None:
    """The look-ahead check of a batch: on the first of ``rows`` the strategy accepts.

    Args:
        strategy_cls: The strategy class.
        bars: The batch's bars.
        own: The strategy's parameters, one row per set.
        engine_frame: The sets' ``engine.<key>`` options (same rows; may have no column).
        rows: The rows to try, in order.
        engine: The batch's engine options.

    Raises:
        StrategyContractError: the strategy looks ahead.
    """
    for i in rows:
        params = {str(c): _plain(own[c].iloc[i]) for c in own.columns}
        options = {
            **(engine or {}),
            **{
                str(c).removeprefix("engine."): _option(engine_frame[c].iloc[i])
                for c in engine_frame.columns
            },
        }
        fn = set_positions_fn(strategy_cls, params, _with_periods(options, bars))
        if fn is not None:
            check_lookahead(fn, check_data(strategy_cls, bars), name=strategy_cls.__name__,
                            params=params)  # fmt: skip
            if has_levels(strategy_cls):  # its own entry levels: no look-ahead either
                one = strategy_cls(**params)
                check_levels_lookahead(one, bars, level_values(one, bars))
            return


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _option(value: Any) -> Any:
    """An ``engine.<key>`` cell: NaN / None (a missing value: the option is off) as None."""
    value = _plain(value)
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else value


def set_positions_fn(
    strategy_cls: type, params: Mapping[str, Any], engine: Mapping[str, Any] | None = None
) -> PositionsFn | None:
    """``data -> wide target weights`` of one parameter set, or ``None`` if it is rejected.

    :func:`targets_fn` of ``strategy_cls(**params)`` (with the engine options); for a
    class with only a batched form, its one-set output.
    """
    if not callable(getattr(strategy_cls, "positions", None)):
        return lambda prices: batch_column(strategy_cls, prices, params)
    try:
        return targets_fn(strategy_cls(**params), engine)
    except (ConfigError, TypeError, ValueError):
        return None


def check_batch_positions(
    strategy_cls: type,
    prices: Bars | pd.DataFrame,
    param_sets: Sequence[Mapping[str, Any]],
    *,
    positions: Callable[[Mapping[str, Any]], PositionsFn] | None = None,
) -> int:
    """Raise if the batched form differs from ``positions`` for any of ``param_sets``.

    The batched form is ``batch_positions`` (or ``batch_weights``, see
    :func:`batch_column`); it is compared with the strategy's checked output
    (:func:`backtest.engine._targets.strategy_output`, what
    :func:`~backtest.engine.target_weights` weights and limits). A set the strategy's
    constructor rejects is skipped (the search records it as a failed trial).

    Args:
        strategy_cls: The strategy class.
        prices: The run's :class:`~backtest.data.Bars` or wide closes.
        param_sets: Full parameter sets (searched and fixed parameters).
        positions: ``params -> (data -> wide positions)``; default the checked output
            of ``strategy_cls(**params).positions``.

    Returns:
        How many sets were compared.

    Raises:
        StrategyContractError: naming the strategy, the set, the first differing bar
            and asset, and both values.
    """
    bars = as_bars(prices)
    close = bars.close
    name = strategy_cls.__name__
    method = fast_method(strategy_cls) or "batch_positions"
    checked = 0
    for params in param_sets:
        try:
            if positions is not None:
                fn = positions(params)
            else:
                strategy = strategy_cls(**params)

                def fn(data: Any, strategy: Any = strategy) -> pd.DataFrame:
                    return strategy_output(strategy, as_bars(data))
        except (ConfigError, TypeError, ValueError):
            continue
        data = prices if positions is not None else bars
        single = positions_values(fn(data), bars)
        batch = batch_column(strategy_cls, bars, params)
        batch = np.where(np.isnan(batch), 0.0, batch)
        diff = _first_difference(batch, single)
        checked += 1
        if diff is not None:
            bar, j = diff
            raise StrategyContractError(
                f"{name}.{method} disagrees with {name}.positions for params "
                f"{dict(params)}: at {close.index[bar]} for {close.columns[j]!r} the batch "
                f"position is {batch[bar, j]:g}, positions() gives {single[bar, j]:g}; a search "
                f"would score another strategy than the one it reports (fix {method}, "
                "or remove it to run one backtest per set)",
                strategy=name,
                params=dict(params),
                bar=close.index[bar],
                asset=close.columns[j],
            )
    return checked


def check_strategy(
    strategy: Any,
    prices: Bars | pd.DataFrame,
    *,
    n_cuts: int = DEFAULT_CUTS,
    engine: Mapping[str, Any] | None = None,
) -> None:
    """Check a strategy on ``prices`` the way every run does before it relies on it.

    Runs the look-ahead check (the target weights of
    :func:`backtest.engine.target_weights` on the data cut at a few bars t equal the
    full run's up to t) and, when the class has a fast path of its own, the
    comparison of ``batch_positions`` (or ``batch_weights``) with ``positions`` for the
    strategy's parameters.

    Args:
        strategy: A strategy instance (anything with ``positions``; ``inputs = "bars"``
            and ``output = "weights"`` strategies too).
        prices: :class:`~backtest.data.Bars` or wide closes: a ``DatetimeIndex`` and one
            column per asset.
        n_cuts: Cut points of the look-ahead check.
        engine: Engine options of the run (``weights``, limits, ``target_volatility``,
            ...), applied to the targets as the engine applies them.

    Raises:
        StrategyContractError: the strategy looks ahead, or its batched form
            disagrees with ``positions``; names the strategy, its parameters and the
            first bar that changed.

    Examples:
        >>> import numpy as np, pandas as pd
        >>> from backtest.strategies import SmaCross
        >>> idx = pd.bdate_range("2020-01-01", periods=300)
        >>> prices = pd.DataFrame({"A": 100 + np.sin(np.arange(300) / 9) * 10}, index=idx)
        >>> check_strategy(SmaCross(5, 20), prices)  # passes silently
        >>> class Peeking(SmaCross):
        ...     def positions(self, prices):
        ...         return super().positions(prices).shift(-1)
        >>> check_strategy(Peeking(5, 20), prices)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        backtest.errors.StrategyContractError: strategy Peeking looks ahead: ...
    """
    bars = as_bars(prices)
    params = strategy_params(strategy)
    name = strategy_name(strategy)
    engine = _with_periods(engine, bars)
    data = check_data(strategy, bars)
    check_lookahead(targets_fn(strategy, engine), data, name=name, params=params, n_cuts=n_cuts)
    cls = type(strategy)
    if has_fast_path(cls) and params:

        def output(data: Any) -> pd.DataFrame:
            return strategy_output(strategy, as_bars(data))

        check_batch_positions(cls, bars, [params], positions=lambda _: output)


def _with_periods(engine: Mapping[str, Any] | None, bars: Bars) -> dict[str, Any]:
    """``engine`` with ``periods_per_year`` inferred once from the full data when unset."""
    out = dict(engine or {})
    if out.get("periods_per_year") is None:
        out["periods_per_year"] = resolve_periods_per_year(bars.index, None)
    return out
