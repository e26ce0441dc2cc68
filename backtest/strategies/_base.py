"""The strategy contract and the helpers every built-in strategy shares.

A strategy maps prices up to bar t to a target position in [-1, 1] per asset at t:

* **no look-ahead**: the position at bar t uses closes up to and including t only;
  the engine holds it over bar t+1;
* **pure**: it never mutates its input and gives the same output for the same input;
* **flat while warming up**: before enough history exists the position is 0 (or NaN,
  which the engine treats as 0).

On a panel with listings, the closes are NaN before an asset's first price and after its
last: the built-ins run their rule on each listing (:func:`on_listing`: the warm-up counts
from the listing) and are flat where there is no price. The engine sets the target of an
asset that is not tradable (no price, or not a member of ``data.universe``) to 0 whatever
a strategy returns; a strategy that must know the tradable set declares
``inputs = "bars"`` and reads ``bars.tradable_mask()``. Strategies receive the split- and
dividend-adjusted view (``Bars.adjusted()``) when the data has corporate actions.

Built-in strategies also offer ``batch_positions``: positions for many parameter sets
of one asset at once, as an ``(n_bars, k)`` array, which is what makes searches fast.

Contract v2 (engine v2), both optional class attributes:

* ``inputs: ClassVar[str] = "bars"``: ``positions`` receives a :class:`~backtest.data.Bars`
  (open, high, low, close, volume of every asset) instead of wide closes;
* ``output: ClassVar[str] = "weights"``: what ``positions`` returns are target weights per
  asset (any sign; a gross above 1 is allowed, within ``engine.max_gross_leverage``), used
  as they are (``engine.weights`` is not applied). Otherwise positions in [-1, 1] are
  multiplied by ``engine.weights`` (equal ``1/n`` when empty).

A strategy may also define ``entry_price(bars) -> DataFrame`` (and a classmethod
``batch_entry_price(bars, params) -> (n_bars, n_assets, k)``): the price level of the limit
or stop entry order each close decides (``engine.entry_order: limit | stop``), NaN for no
order; same contract as positions (row t uses data up to t): see
:mod:`backtest.engine._levels`.

Cross-sectional strategies offer ``batch_weights(close_or_bars, params) -> (n_bars,
n_assets, k)``: the target weights of ``k`` parameter sets from all assets at once (closes
as a 2-D array, or :class:`~backtest.data.Bars` when ``inputs = "bars"``).
:func:`backtest.engine.target_weights` is the one function turning any strategy into the
engine's target weights.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.errors import ConfigError


@runtime_checkable
class Strategy(Protocol):
    """Anything with a ``positions`` method is a strategy.

    No look-ahead (row t uses data up to t), never mutates its input, deterministic.
    Optional class attributes ``inputs = "bars"`` (receive :class:`~backtest.data.Bars`)
    and ``output = "weights"`` (return target weights, not positions): see the module
    docstring.
    """

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        """Target positions in [-1, 1] (or target weights with ``output = "weights"``).

        Args:
            prices: Wide closes, a ``DatetimeIndex`` and one column per asset (a
                :class:`~backtest.data.Bars` with ``inputs = "bars"``).

        Returns:
            A frame of the closes' shape; row t depends on rows up to t only.
        """
        ...


@runtime_checkable
class BatchStrategy(Strategy, Protocol):
    """A strategy that can evaluate many parameter sets in one pass."""

    param_names: ClassVar[tuple[str, ...]]

    @classmethod
    def batch_positions(
        cls, close: NDArray[np.float64], params: Mapping[str, NDArray]
    ) -> NDArray[np.float64]:
        """Positions of one asset for ``k`` parameter sets: shape ``(n_bars, k)``."""
        ...


def check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` as an int, or raise ``ConfigError`` naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        if isinstance(value, float | np.floating) and float(value).is_integer():
            value = int(value)
        else:
            raise ConfigError(
                f"strategy parameter {name!r} must be an integer, got {value!r}", key=name
            )
    if value < minimum:
        raise ConfigError(
            f"strategy parameter {name!r} must be >= {minimum}, got {value}", key=name
        )
    return int(value)


def check_float(name: str, value: object, *, minimum: float | None = None) -> float:
    """Return ``value`` as a finite float, or raise ``ConfigError`` naming the parameter."""
    try:
        out = float(value)  # type: ignore[arg-type]  # checked by the except below
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"strategy parameter {name!r} must be a number, got {value!r}", key=name
        ) from exc
    if not np.isfinite(out) or (minimum is not None and out < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ConfigError(
            f"strategy parameter {name!r} must be a finite number{bound}, got {value!r}",
            key=name,
        )
    return out


def check_smaller(name: str, value: float, other: str, bound: float) -> None:
    """Raise ``ConfigError`` naming ``name`` unless ``value < bound`` (``other``'s value)."""
    if value >= bound:
        raise ConfigError(
            f"strategy parameter {name!r} ({value}) must be smaller than {other!r} ({bound})",
            key=name,
        )


def apply_per_column(
    prices: pd.DataFrame, fn: Callable[[NDArray[np.float64]], NDArray[np.float64]]
) -> pd.DataFrame:
    """Run a 1-D ``close -> positions`` function over every column of ``prices``.

    Each column goes through :func:`on_listing`: the function sees the asset's listed
    bars only, and the position is 0 where the asset has no price.
    """
    values = prices.to_numpy(dtype=np.float64)
    out = np.empty_like(values)
    for j in range(values.shape[1]):
        out[:, j] = on_listing(np.ascontiguousarray(values[:, j]), fn)
    return pd.DataFrame(out, index=prices.index, columns=prices.columns)


def listed_batch(
    fn: Callable[[Any, NDArray[np.float64], Mapping[str, NDArray]], NDArray[np.float64]],
) -> classmethod:
    """Make ``batch_positions`` a classmethod that runs ``fn`` on each asset's listed bars.

    Decorate a strategy's ``batch_positions(cls, close, params) -> (n_bars, k)``, written
    for a fully listed asset, with ``@listed_batch`` instead of ``@classmethod``: the sets
    then run on the asset's listed bars (:func:`on_listing`), flat where it has no price,
    as its ``positions`` does. ``fn`` itself stays reachable as ``__wrapped__``. Defined
    on the class itself, so :func:`~backtest.strategies._checks.has_fast_path` sees it as
    the class's own.
    """

    @functools.wraps(fn)
    def batch_positions(
        cls: type, close: NDArray[np.float64], params: Mapping[str, NDArray]
    ) -> NDArray[np.float64]:
        close = np.asarray(close, dtype=np.float64)
        return on_listing(close, lambda listed: fn(cls, listed, params))

    return classmethod(batch_positions)


def on_listing(
    close: NDArray[np.float64], fn: Callable[[NDArray[np.float64]], NDArray[np.float64]]
) -> NDArray[np.float64]:
    """``fn`` on one asset's listed bars; flat (0) before it lists and after it delists.

    An asset's closes are NaN before its first price (not listed yet) and after its last
    (delisted). ``fn`` (``close -> positions``, ``(n,)`` or ``(n, k)``) runs on the bars
    from the first to the last price, so its warm-up counts from the listing, exactly as
    on a panel that starts there; a bar without a price (and any NaN ``fn`` returns) is
    flat. A column without a NaN goes to ``fn`` as it is (the result is bit for bit the
    same as before listings existed).

    Examples:
        >>> close = np.array([np.nan, 1.0, 2.0, 3.0, np.nan])
        >>> on_listing(close, lambda c: c - c[0]).tolist()
        [0.0, 0.0, 1.0, 2.0, 0.0]
    """
    finite = np.isfinite(close)
    if finite.all():
        return fn(close)
    if not finite.any():
        probe = np.asarray(fn(np.ones(1)))  # the output's width, from a one-bar listing
        return np.zeros((close.shape[0], *probe.shape[1:]))
    first = int(np.argmax(finite))
    stop = close.shape[0] - int(np.argmax(finite[::-1]))
    inner = np.asarray(fn(np.ascontiguousarray(close[first:stop])), dtype=np.float64)
    out = np.zeros((close.shape[0], *inner.shape[1:]))
    out[first:stop] = np.where(np.isnan(inner), 0.0, inner)
    out[~finite] = 0.0
    return out


def as_param_array(params: Mapping[str, NDArray], name: str, k: int, default: object) -> NDArray:
    """One parameter's values for ``k`` sets, broadcasting a missing one to its default."""
    if name in params:
        arr = np.asarray(params[name])
        if arr.shape != (k,):
            raise ConfigError(f"batch parameter {name!r} must have shape ({k},)", key=name)
        return arr
    return np.full(k, default)


def n_sets(params: Mapping[str, NDArray]) -> int:
    """The number of parameter sets in a batch (all arrays must agree)."""
    lengths = {len(np.asarray(v)) for v in params.values()}
    if len(lengths) > 1:
        raise ConfigError(f"batch parameters have different lengths: {sorted(lengths)}")
    return lengths.pop() if lengths else 1


def batch_params(cls: Any, params: Mapping[str, NDArray], *names: str) -> list[NDArray]:
    """The values of the parameters ``names`` for ``k`` sets, typed as ``cls``'s defaults.

    ``cls`` is the strategy's dataclass (typed ``Any``: inside ``@listed_batch`` a type
    checker sees the decorated function's first argument as an instance).

    ``names`` are those the caller's rule reads (a subclass may add parameters, such as
    stop fields, that the engine reads and the rule does not). A parameter missing from
    ``params`` takes its field's default in every set (the default is written once, on
    the class). A parameter whose default is a bool is a bool array, an int one int64 (a
    value that is not a whole number is a ``ConfigError`` naming it, never truncated),
    any other float64.
    """
    k = n_sets(params)
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    out: list[NDArray] = []
    for name in names:
        default = defaults[name]
        values = as_param_array(params, name, k, default)
        if isinstance(default, bool):
            out.append(values.astype(bool))
        elif isinstance(default, int):
            whole = values.astype(np.int64)
            bad = np.flatnonzero(whole != values)
            if bad.size:
                raise ConfigError(
                    f"strategy parameter {name!r} must be an integer, "
                    f"got {values[bad[0]].item()!r}",
                    key=name,
                )
            out.append(whole)
        else:
            out.append(values.astype(np.float64))
    return out


def signed_positions(
    up: NDArray[np.bool_], down: NDArray[np.bool_], long_short: bool | NDArray[np.bool_]
) -> NDArray[np.float64]:
    """Long (1) where ``up``; short (-1) where ``down`` and ``long_short``; flat (0) elsewhere.

    ``long_short`` is one flag, or one per set (``(k,)``) for ``(n_bars, k)`` masks.

    Examples:
        >>> up, down = np.array([True, False, False]), np.array([False, True, False])
        >>> signed_positions(up, down, True).tolist(), signed_positions(up, down, False).tolist()
        ([1.0, -1.0, 0.0], [1.0, 0.0, 0.0])
    """
    pos = up.astype(np.float64)
    pos -= down & np.asarray(long_short, dtype=bool)
    return pos
