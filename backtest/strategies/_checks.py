"""Checks a strategy must pass before a run relies on it: no look-ahead, an honest fast path.

* :func:`check_lookahead`: positions computed on the data cut at a few bars t equal
  the full run's positions up to t. A strategy that reads a later bar (``shift(-1)``,
  a full-sample mean, a centred window) changes its past when the future is removed.
* :func:`check_batch_positions`: a strategy's ``batch_positions`` (the fast path of
  searches and walk-forwards) gives the same positions as ``positions`` for a few
  sampled parameter sets.
* :func:`has_fast_path`: a ``batch_positions`` counts only when it belongs to the class
  whose ``positions`` it replaces (a subclass overriding only ``positions`` must not be
  searched through its parent's fast path).

The look-ahead check takes "a callable computing targets for the data" (``data ->
wide frame``, the data cut with ``.iloc[:t]``, :class:`~backtest.data.Bars` or wide
closes); every run plugs in :func:`targets_fn`, the engine's own conversion of a
strategy into target weights (:func:`backtest.engine.target_weights`), so strategies
that declare ``inputs = "bars"`` or ``output = "weights"`` are checked like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.data._bars import Bars, as_bars
from backtest.errors import StrategyContractError

#: ``data -> wide positions / target weights`` (data: Bars or wide closes, maybe cut).
PositionsFn = Callable[[Any], Any]
#: The batched forms a strategy class may offer, in the engine's order of preference.
FAST_METHODS = ("batch_weights", "batch_positions")

#: Positions agree when within this relative / absolute tolerance (float summation order).
RTOL, ATOL = 1e-9, 1e-12
#: Cut points of the look-ahead check: bars near these fractions of the data, but no
#: later than these bars (a cut costs a call of the strategy on that many bars).
CUT_FRACTIONS = (0.05, 0.15, 0.3)
CUT_LATEST = (400, 1_200, 2_400)
#: Cuts a run checks (the first of CUT_FRACTIONS): each costs one call of the strategy
#: on a prefix; a strategy reading a later bar is caught by any of them.
DEFAULT_CUTS = 2


def _owner(cls: type, name: str) -> type | None:
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass
    return None


def fast_method(cls: type) -> str | None:
    """The batched form of ``cls``'s own (``batch_weights`` or ``batch_positions``), or None.

    A batched form counts when it is defined on the class that defines ``positions`` or
    on a class before it in the method resolution order; ``batch_weights`` wins over
    ``batch_positions`` (as in the engine).
    """
    single = _owner(cls, "positions")
    mro = cls.__mro__
    for name in FAST_METHODS:
        batch = _owner(cls, name)
        if batch is None:
            continue
        if single is None or mro.index(batch) <= mro.index(single):
            return name
    return None


def has_fast_path(cls: type) -> bool:
    """Whether ``cls`` has a ``batch_positions`` (or ``batch_weights``) of its own.

    True when the batched form is defined on the class that defines ``positions``
    or on a class before it in the method resolution order. A subclass of a built-in
    that overrides only ``positions`` inherits a ``batch_positions`` computing its
    parent's rule: it has no fast path (it runs one backtest per set instead).

    Examples:
        >>> from backtest.strategies import SmaCross
        >>> class Contrarian(SmaCross):
        ...     def positions(self, prices):
        ...         return -super().positions(prices)
        >>> has_fast_path(SmaCross), has_fast_path(Contrarian)
        (True, False)
    """
    return fast_method(cls) is not None


def require_strategy_class(cls: object) -> type:
    """Return ``cls`` if it has ``positions`` (or ``batch_positions``), else raise.

    Raises:
        ConfigError: not a strategy class (key ``strategy``).
    """
    from backtest.errors import ConfigError

    if not isinstance(cls, type) or not any(
        callable(getattr(cls, a, None)) for a in ("positions", *FAST_METHODS)
    ):
        raise ConfigError(
            f"{cls!r} is not a strategy class: it needs a positions(prices) method "
            "(see README 'Writing a strategy')",
            key="strategy",
        )
    return cls


def strategy_name(obj: object) -> str:
    """The class name of a strategy or strategy class."""
    return obj.__name__ if isinstance(obj, type) else type(obj).__name__


def positions_values(positions: Any, prices: Bars | pd.DataFrame) -> NDArray[np.float64]:
    """Wide positions (or weights) as floats, NaN as flat (0), checked against the closes' shape."""
    shape = as_bars(prices).close.shape
    values = np.asarray(
        positions.to_numpy(dtype=np.float64, na_value=np.nan)
        if isinstance(positions, pd.DataFrame)
        else positions,
        dtype=np.float64,
    )
    if values.shape != shape:
        raise StrategyContractError(
            f"positions have shape {values.shape}; expected {shape} (bars x assets)",
            strategy="?",
        )
    return np.where(np.isnan(values), 0.0, values)


def targets_fn(strategy: Any, engine: Any = None) -> PositionsFn:
    """``data -> target weights`` of ``strategy``: :func:`backtest.engine.target_weights`.

    Args:
        strategy: A strategy instance.
        engine: Engine options (keys of ``engine.*``) or ``EngineParams``; options that
            are not target options (stops, ``check_lookahead``) are ignored.
            ``periods_per_year`` should be given when a vol target is set (a short
            prefix cannot infer it).
    """
    from backtest.engine._params import ENGINE_KEYS, EngineParams, engine_params
    from backtest.engine._targets import target_values

    if isinstance(engine, EngineParams):
        params = engine
    else:
        params = engine_params(
            **{k: getattr(v, "value", v) for k, v in (engine or {}).items() if k in ENGINE_KEYS}
        )

    def fn(data: Any) -> NDArray[np.float64]:  # target_weights' values, without frames
        return target_values(strategy, as_bars(data), params)

    return fn


def _first_difference(a: NDArray[np.float64], b: NDArray[np.float64]) -> tuple[int, int] | None:
    if np.array_equal(a, b):  # the usual case, at a fraction of isclose's cost
        return None
    bad = ~np.isclose(a, b, rtol=RTOL, atol=ATOL)
    if not bad.any():
        return None
    rows = np.flatnonzero(bad.any(axis=1))
    t = int(rows[0])
    return t, int(np.flatnonzero(bad[t])[0])


def cut_points(full: NDArray[np.float64], n_cuts: int = DEFAULT_CUTS) -> list[int]:
    """Prefix lengths of the look-ahead check, from the full run's positions.

    Each cut ends just after a bar where some position changes to a non-zero value, the
    first such bar from one of :data:`CUT_FRACTIONS` of the data (no later than bar
    :data:`CUT_LATEST`, or after the previous cut); half the data when nothing changes.
    A strategy reading bar t+1 decides such a change one bar early, which a cut there
    exposes whether it fills the missing bar with NaN, 0 or the previous value. Short
    prefixes keep the check cheap (see ``benchmarks/lookahead.py``).
    """
    n = full.shape[0]
    if n < 3:
        return []
    cuts: list[int] = []
    for frac, latest in list(zip(CUT_FRACTIONS, CUT_LATEST, strict=True))[:n_cuts]:
        target = max(min(int(n * frac), latest), cuts[-1] if cuts else 0)  # a new change
        change = _first_change(full, target)
        if change is not None and change < n - 1:
            cuts.append(change + 1)
    return cuts or [max(2, n // 2)]


def _first_change(full: NDArray[np.float64], start: int) -> int | None:
    """The first bar from ``start`` on where some position changes to a non-zero value.

    Looks at growing windows of bars, so a long history is read only as far as needed.
    """
    n = full.shape[0]
    lo, width = max(start, 0), 256
    while lo < n:
        hi = min(n, lo + width)
        rows = full[lo:hi]
        prev = full[lo - 1 : hi - 1] if lo > 0 else np.vstack([np.zeros_like(rows[:1]), rows[:-1]])
        found = np.flatnonzero(((rows != prev) & (rows != 0.0)).any(axis=1))
        if len(found):
            return lo + int(found[0])
        lo, width = hi, width * 4
    return None


def check_lookahead(
    positions: PositionsFn,
    prices: Bars | pd.DataFrame,
    *,
    name: str,
    params: Mapping[str, Any] | None = None,
    full: NDArray[np.float64] | None = None,
    n_cuts: int = DEFAULT_CUTS,
) -> list[int]:
    """Raise if the targets up to bar t change when the bars after t are removed.

    Args:
        positions: ``data -> wide targets`` (:func:`targets_fn` of a strategy, or a
            strategy's bound ``positions``); it receives ``prices`` cut with
            ``.iloc[:t]`` (Bars stay Bars).
        prices: The run's :class:`~backtest.data.Bars` or wide closes.
        name: The strategy's name, for the message.
        params: Its parameters, for the message.
        full: The full run's targets (NaN as 0) when already computed.
        n_cuts: How many cut points (see :func:`cut_points`).

    Returns:
        The prefix lengths checked.

    Raises:
        StrategyContractError: the first bar (and asset) whose target changed.
    """
    close = as_bars(prices).close
    if full is None:
        full = positions_values(positions(prices), prices)
    cuts = cut_points(full, n_cuts)
    for t in cuts:
        cut = prices.iloc[:t]
        part = positions_values(positions(cut), cut)
        diff = _first_difference(part, full[:t])
        if diff is not None:
            bar, j = diff
            raise StrategyContractError(
                f"strategy {name} looks ahead: with params {dict(params or {})} its position "
                f"for {close.columns[j]!r} at {close.index[bar]} is {full[bar, j]:g} on the "
                f"full data but {part[bar, j]:g} when the bars after {close.index[t - 1]} are "
                "removed (a position at bar t may use data up to t only; look for shift(-1), "
                "centred windows or full-sample statistics)",
                strategy=name,
                params=dict(params or {}),
                bar=close.index[bar],
                asset=close.columns[j],
            )
    return cuts


def batch_column(
    strategy_cls: type, prices: Bars | pd.DataFrame, params: Mapping[str, Any]
) -> NDArray[np.float64]:
    """One parameter set's output from the class's batched form (wide, NaN kept).

    ``batch_positions`` asset by asset on the closes, or the first set of
    ``batch_weights`` (on the bars for ``inputs = "bars"``, else the closes).
    """
    bars = as_bars(prices)
    arrays = {k: np.array([v]) for k, v in params.items()}
    close = bars.close.to_numpy(dtype=np.float64)
    if fast_method(strategy_cls) == "batch_weights" or not hasattr(strategy_cls, "batch_positions"):
        data = bars if getattr(strategy_cls, "inputs", "close") == "bars" else close
        out = np.asarray(strategy_cls.batch_weights(data, arrays), dtype=np.float64)  # type: ignore[attr-defined]
        return out.reshape(close.shape[0], close.shape[1], -1)[:, :, 0]
    fast = strategy_cls.batch_positions
    columns = [
        np.asarray(fast(np.ascontiguousarray(close[:, j]), arrays), dtype=np.float64)
        for j in range(close.shape[1])
    ]
    return np.column_stack([c.reshape(len(close), -1)[:, 0] for c in columns])


def set_positions_fn(
    strategy_cls: type, params: Mapping[str, Any], engine: Mapping[str, Any] | None = None
) -> PositionsFn | None:
    """``data -> wide target weights`` of one parameter set, or ``None`` if it is rejected.

    :func:`targets_fn` of ``strategy_cls(**params)`` (with the engine options); for a
    class with only a batched form, its one-set output.
    """
    from backtest.errors import ConfigError

    if not callable(getattr(strategy_cls, "positions", None)):
        return lambda prices: batch_column(strategy_cls, prices, params)
    try:
        return targets_fn(strategy_cls(**params), engine)
    except (ConfigError, TypeError, ValueError):
        return None


def sample_rows(n_rows: int, n_samples: int = 3) -> list[int]:
    """Which rows of a parameter frame to verify: the first, the last and evenly between."""
    if n_rows <= n_samples:
        return list(range(n_rows))
    return sorted({int(i) for i in np.linspace(0, n_rows - 1, n_samples).round()})


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
    from backtest.engine._targets import strategy_output
    from backtest.errors import ConfigError

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
    from backtest.strategies._params import strategy_params

    bars = as_bars(prices)
    params = strategy_params(strategy)
    name = strategy_name(strategy)
    engine = _with_periods(engine, bars)
    data = check_data(strategy, bars)
    check_lookahead(targets_fn(strategy, engine), data, name=name, params=params, n_cuts=n_cuts)
    cls = type(strategy)
    if has_fast_path(cls) and params:
        from backtest.engine._targets import strategy_output

        def output(data: Any) -> pd.DataFrame:
            return strategy_output(strategy, as_bars(data))

        check_batch_positions(cls, bars, [params], positions=lambda _: output)


def _with_periods(engine: Mapping[str, Any] | None, bars: Bars) -> dict[str, Any]:
    """``engine`` with ``periods_per_year`` inferred once from the full data when unset."""
    from backtest.engine._periods import resolve_periods_per_year

    out = dict(engine or {})
    if out.get("periods_per_year") is None:
        out["periods_per_year"] = resolve_periods_per_year(bars.index, None)
    return out


def check_data(strategy: Any, bars: Bars) -> Bars | pd.DataFrame:
    """What the look-ahead check cuts: the bars for ``inputs = "bars"``, else the closes.

    :func:`~backtest.engine.target_weights` reads only the closes of other strategies,
    so cutting the closes alone is the same check, cheaper.
    """
    return bars if getattr(strategy, "inputs", "close") == "bars" else bars.close
