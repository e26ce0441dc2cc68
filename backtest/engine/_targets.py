"""Strategy -> target weights: what the engine trades.

:func:`target_weights` is the one function that turns a strategy's output into the
engine's target weights; the engine and the look-ahead checker both call it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.data._bars import Bars, as_bars
from backtest.engine._limits import limit_targets, limits_active, unlimited
from backtest.engine._params import EngineParams, engine_params
from backtest.engine._periods import resolve_periods_per_year
from backtest.errors import BacktestError, ConfigError


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


def wants_bars(strategy: object) -> bool:
    """Whether the strategy declares ``inputs = "bars"``."""
    return getattr(strategy, "inputs", "close") == "bars"


def outputs_weights(strategy: object) -> bool:
    """Whether the strategy declares ``output = "weights"``."""
    return getattr(strategy, "output", "positions") == "weights"


_reused = threading.local()


@contextlib.contextmanager
def reused_output(strategy: object, values: NDArray[np.float64]) -> Iterator[None]:
    """Within: :func:`output_values` of this ``strategy`` is ``values`` (no new call).

    Only for this very instance, on bars of ``values``' shape. For a run that already
    has the strategy's output over its bars (the look-ahead check computes it before
    the run): a strategy is pure by contract, so calling it again on the same bars
    gives the same output.
    """
    before = getattr(_reused, "entry", None)
    _reused.entry = (strategy, values)
    try:
        yield
    finally:
        _reused.entry = before


def output_values(strategy: object, bars: Bars) -> NDArray[np.float64]:
    """The strategy's raw output on ``bars`` as floats, checked: the closes' shape, NaN -> 0.

    Raises:
        BacktestError: the wrong type or shape, an infinite value, or (legacy positions)
            a value outside [-1, 1]; the message names the asset and the timestamp.
    """
    prices = bars.close
    entry = getattr(_reused, "entry", None)
    if entry is not None and entry[0] is strategy and entry[1].shape == prices.shape:
        return np.array(entry[1], dtype=np.float64)
    raw = strategy.positions(bars if wants_bars(strategy) else prices)  # type: ignore[attr-defined]
    if not isinstance(raw, pd.DataFrame) or raw.shape != prices.shape:
        raise BacktestError(
            f"strategy returned {type(raw).__name__} of shape {getattr(raw, 'shape', None)}; "
            f"expected a DataFrame of shape {prices.shape}"
        )
    values = raw.to_numpy(dtype=np.float64, na_value=np.nan)
    values = np.where(np.isnan(values), 0.0, values)
    limit = np.inf if outputs_weights(strategy) else 1.0 + 1e-12
    bad = ~(np.abs(values) <= limit)
    if bad.any():
        t, j = np.argwhere(bad)[0]
        what = "weight" if outputs_weights(strategy) else "position"
        bound = "not finite" if outputs_weights(strategy) else "outside [-1, 1]"
        raise BacktestError(
            f"strategy {what} {values[t, j]} for {prices.columns[j]!r} at {prices.index[t]} "
            f"is {bound} ({int(bad.sum())} such values)"
        )
    return values


def strategy_output(strategy: object, bars: Bars) -> pd.DataFrame:
    """:func:`output_values` as a frame of the closes' index and columns."""
    prices = bars.close
    return pd.DataFrame(output_values(strategy, bars), index=prices.index, columns=prices.columns)


def sleeve_weights(
    strategy: object, symbols: Sequence[str], weights: Mapping[str, float] | None
) -> NDArray[np.float64]:
    """What the engine multiplies a strategy's output by: its ``weights`` or ones.

    Legacy positions are scaled by the engine weights (``engine.weights``; equal when
    empty); target weights are used as given (a sleeve weight of 1 per asset).
    """
    if outputs_weights(strategy):
        return np.ones(len(symbols))
    return resolve_weights(symbols, weights)


def raw_targets(
    strategy: object, bars: Bars, params: EngineParams
) -> tuple[pd.DataFrame, pd.DataFrame, NDArray[np.float64]]:
    """``(output, unlimited target weights, sleeve weights)`` of a strategy.

    See :func:`sleeve_weights`.
    """
    out = strategy_output(strategy, bars)
    w = sleeve_weights(strategy, out.columns, params.weights)
    if outputs_weights(strategy):
        return out, out, w
    return out, pd.DataFrame(out.to_numpy() * w, index=out.index, columns=out.columns), w


def target_weights(
    strategy: object,
    bars: Bars | pd.DataFrame,
    engine: EngineParams | Mapping[str, object] | None = None,
) -> pd.DataFrame:
    """The target weights the engine trades: the strategy's output, weighted and limited.

    Args:
        strategy: Anything with ``positions`` (see :mod:`backtest.strategies`).
        bars: :class:`~backtest.data.Bars` or wide closes.
        engine: :class:`EngineParams` or a mapping of engine options (defaults when None).

    Returns:
        Weights per bar and asset, decided at each close (row t uses data up to t only).
        On a real universe (:mod:`backtest.engine._universe`) the strategy sees the
        adjusted view and the weights are 0 where an asset may not be held.

    Examples:
        >>> from backtest.strategies import BuyAndHold
        >>> idx = pd.bdate_range("2024-01-01", periods=3)
        >>> close = pd.DataFrame({"A": [1.0, 2.0, 3.0], "B": [1.0, 1.0, 1.0]}, index=idx)
        >>> target_weights(BuyAndHold(), close, {"max_weight": 0.4}).iloc[-1].tolist()
        [0.4, 0.4]
    """
    from backtest.engine._universe import is_plain, kernel_inputs, strategy_bars

    bars = as_bars(bars)
    prices = bars.close
    if is_plain(bars):
        values = target_values(strategy, bars, _params(engine))
    else:  # a real universe: the adjusted view decides, nothing where not tradable
        params = _params(engine)
        view = strategy_bars(bars)
        output = output_values(strategy, view)
        if not outputs_weights(strategy):
            output = output * sleeve_weights(strategy, prices.columns, params.weights)
        output = np.where(kernel_inputs(bars).hold, output, 0.0)
        from backtest.engine._universe import vol_bars

        values, _ = limits_of(output, vol_bars(view), params)
    return pd.DataFrame(values, index=prices.index, columns=prices.columns)


def target_values(strategy: object, bars: Bars, params: EngineParams) -> NDArray[np.float64]:
    """:func:`target_weights` as an array, without the frames in between."""
    return targets_of(strategy, output_values(strategy, bars), bars, params)


def targets_of(
    strategy: object, output: NDArray[np.float64], bars: Bars, params: EngineParams
) -> NDArray[np.float64]:
    """The target weights of a strategy's output already at hand (:func:`output_values`)."""
    if not outputs_weights(strategy):
        output = output * sleeve_weights(strategy, bars.close.columns, params.weights)
    limited, _ = limits_of(output, bars, params)
    return limited


def limits_of(
    target: NDArray[np.float64], bars: Bars, params: EngineParams
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """:func:`~backtest.engine._limits.limit_targets` with the engine's options."""
    if not limits_active(params.long_only, params.max_weight, params.max_gross_leverage,
                         params.target_volatility):  # fmt: skip
        return unlimited(target)  # (no bars per year to infer, no closes to read)
    ppy = resolve_periods_per_year(bars.index, params.periods_per_year)
    return limit_targets(
        target,
        bars.close.to_numpy(dtype=np.float64),
        long_only=params.long_only,
        max_weight=params.max_weight,
        max_gross_leverage=params.max_gross_leverage,
        target_volatility=params.target_volatility,
        vol_lookback=params.vol_lookback,
        periods_per_year=ppy,
    )


def _params(engine: EngineParams | Mapping[str, object] | None) -> EngineParams:
    if engine is None:
        return EngineParams()
    if isinstance(engine, EngineParams):
        return engine
    return engine_params(**dict(engine))
