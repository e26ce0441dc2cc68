"""Checks a strategy must pass before a run relies on it: no look-ahead, an honest fast path.

* :func:`check_lookahead`: positions computed on the data cut at a few bars t equal
  the full run's positions up to t. A strategy that reads a later bar (``shift(-1)``,
  a full-sample mean, a centred window) changes its past when the future is removed.
* :func:`batch_column`: one parameter set's output from a class's batched form, which
  :func:`backtest.engine._checks.check_batch_positions` compares with ``positions``.
* :func:`has_fast_path`: a ``batch_positions`` counts only when it belongs to the class
  whose ``positions`` it replaces (a subclass overriding only ``positions`` must not be
  searched through its parent's fast path).

The look-ahead check takes "a callable computing targets for the data" (``data ->
wide frame``, the data cut with ``.iloc[:t]``, :class:`~backtest.data.Bars` or wide
closes); every run plugs in the engine's own conversion of a strategy into target
weights (:func:`backtest.engine._checks.targets_fn`), so strategies that declare
``inputs = "bars"`` or ``output = "weights"`` are checked like any other. What needs the
engine (that conversion, :func:`~backtest.engine.check_strategy`, the batch-vs-positions
check) lives in :mod:`backtest.engine._checks`: nothing here imports the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
        positions: ``data -> wide targets`` (``engine._checks.targets_fn`` of a
            strategy, or a strategy's bound ``positions``); it receives ``prices`` cut with
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


SAMPLED_SETS = 8
"""Parameter sets of a batch whose fast path is compared with ``positions`` (at least)."""


def sample_rows(
    n_rows: int, n_samples: int = SAMPLED_SETS, frame: pd.DataFrame | None = None
) -> list[int]:
    """Which rows of a parameter frame to verify, spread over the space.

    The first, the last and evenly between (``n_samples`` in all), and with ``frame``
    also a row holding each parameter's smallest and largest value.

    >>> sample_rows(100, 4)
    [0, 33, 66, 99]
    >>> sample_rows(6, 3, pd.DataFrame({"a": [1, 1, 1, 1, 1, 1], "b": [3, 9, 1, 4, 5, 2]}))
    [0, 1, 2, 5]
    """
    if n_rows <= n_samples:
        return list(range(n_rows))
    rows = {int(i) for i in np.linspace(0, n_rows - 1, n_samples).round()}
    columns = {} if frame is None else {c: frame[c] for c in frame.columns}
    for column in columns.values():
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        if np.isfinite(values).any():
            rows |= {int(np.nanargmin(values)), int(np.nanargmax(values))}
    return sorted(rows)


def check_data(strategy: Any, bars: Bars) -> Bars | pd.DataFrame:
    """What the look-ahead check cuts: the bars for ``inputs = "bars"``, else the closes.

    :func:`~backtest.engine.target_weights` reads only the closes of other strategies,
    so cutting the closes alone is the same check, cheaper.
    """
    return bars if getattr(strategy, "inputs", "close") == "bars" else bars.close
