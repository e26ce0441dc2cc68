"""Engine settings a strategy declares itself: read per set, from the instance, everywhere.

A strategy may own an engine setting by having an attribute (or a parameter, a dataclass
field) of the same name as the ``engine.*`` key: :data:`STRATEGY_KEYS`, the exits of
:mod:`backtest.engine._exits` (``stop_loss``, ``take_profit``, ``trailing_stop``,
``stop_unit``, ``atr_lookback``, ``max_bars``, ``stop_reentry``). The rule, the same in
every path (the single backtest, the batched, fused and per-bar kernel paths, a
walk-forward, a Monte Carlo jitter):

* the value is the instance's: ``getattr(strategy, key)`` of the strategy built with the
  set's parameters, so a searched field ``trailing_stop`` gives each set its own stop;
* a value that is not ``None`` wins over ``engine.<key>`` (the config's or a keyword's);
  ``None`` leaves ``engine.<key>`` in charge;
* searching ``engine.<key>`` for a strategy that declares ``<key>`` (a parameter of that
  name, or a class attribute that is not ``None``) is a
  :class:`~backtest.errors.ConfigError` naming both, before anything runs: the
  strategy's value would win and the search would change nothing.

The batched paths cannot call each set's constructor for nothing: :func:`declared_keys`
says whether a class declares anything (the built-ins declare nothing, and pay nothing);
only then :func:`per_set_settings` builds one instance per distinct set and reads its
values, which :func:`apply_declared` turns into the per-set ``engine.<key>`` columns (or,
when every set agrees, the batch's own option) every batched path already honours.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from backtest.engine._exits import STOP_FIELDS
from backtest.errors import ConfigError

#: Engine keys a strategy may declare as an attribute, a parameter or a dataclass field.
STRATEGY_KEYS = STOP_FIELDS
PREFIX = "engine."


def declared_keys(strategy_cls: type) -> tuple[str, ...]:
    """The :data:`STRATEGY_KEYS` a strategy class declares.

    A key is declared by a parameter of that name (``param_names``, a dataclass field, an
    ``__init__`` keyword) or by a class attribute (or property) that is not ``None``.

    Examples:
        >>> from dataclasses import dataclass
        >>> from backtest.strategies import SmaCross
        >>> @dataclass(frozen=True)
        ... class Trailing:
        ...     fast: int = 10
        ...     trailing_stop: float | None = None
        ...     max_bars = 20
        ...     def positions(self, prices):
        ...         return prices * 0.0
        >>> declared_keys(SmaCross), declared_keys(Trailing)
        ((), ('trailing_stop', 'max_bars'))
    """
    from backtest.strategies._params import param_names

    params = set(param_names(strategy_cls))
    out = []
    for key in STRATEGY_KEYS:
        if key in params:
            out.append(key)
            continue
        try:
            value = inspect.getattr_static(strategy_cls, key)
        except AttributeError:
            continue
        if value is not None:
            out.append(key)
    return tuple(out)


def instance_settings(strategy: object) -> dict[str, Any]:
    """The engine settings an instance sets: its :data:`STRATEGY_KEYS` that are not ``None``."""
    out = {}
    for key in STRATEGY_KEYS:
        value = getattr(strategy, key, None)
        if value is not None:
            out[key] = getattr(value, "value", value)
    return out


def is_engine_column(name: str, strategy_cls: type | None = None) -> bool:
    """Whether a parameter-frame column is an engine option rather than a strategy parameter.

    ``engine.<key>`` always; a bare exit name (``stop_loss``) too, unless the strategy has
    a parameter of that name (then it is the strategy's, and its instance's value counts).
    """
    if name.startswith(PREFIX):
        return True
    if name not in STOP_FIELDS:
        return False
    if strategy_cls is None:
        return True
    from backtest.strategies._params import param_names

    return name not in param_names(strategy_cls)


def check_searched_keys(
    strategy_cls: type, names: Iterable[str], *, where: str = "search.space"
) -> None:
    """Refuse a searched ``engine.<key>`` that the strategy declares itself.

    Args:
        strategy_cls: The strategy class.
        names: The searched names (``fast``, ``engine.stop_loss``, bare ``stop_loss``).
        where: What holds the names, for the message (``search.space``, a frame's columns).

    Raises:
        ConfigError: naming ``<where>.engine.<key>`` and ``<Strategy>.<key>``, and the fix.
    """
    declared = declared_keys(strategy_cls)
    if not declared:
        return
    from backtest.strategies._params import param_names

    params = param_names(strategy_cls)
    for name in names:
        name = str(name)
        if not is_engine_column(name, strategy_cls):
            continue
        key = name.removeprefix(PREFIX)
        if key not in declared:
            continue
        cls = strategy_cls.__name__
        fix = (
            f"search the strategy's own parameter instead ({where}.{key})"
            if key in params
            else f"remove {cls}.{key} (then engine.{key} applies) or search another key"
        )
        raise ConfigError(
            f"{where}.{name} and {cls}.{key} both set {key}: the strategy declares it, so "
            f"its value wins over engine.{key} and the search would change nothing; {fix}",
            key=f"{where}.{name}",
        )


def per_set_settings(
    strategy_cls: type, frame: pd.DataFrame, keys: Iterable[str]
) -> dict[str, list[Any]]:
    """Each set's value of each declared key, from ``strategy_cls(**set)`` (None: not set).

    ``frame`` holds the strategy's parameters only (one row per set); the constructor runs
    once per distinct set.

    Raises:
        ConfigError, TypeError, ValueError: a set the strategy rejects (as ``simulate``
            would for that set).
    """
    keys = tuple(keys)
    rows = frame.to_dict("records") if frame.shape[1] else [{}] * len(frame)
    cache: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    out: dict[str, list[Any]] = {key: [] for key in keys}
    for row in rows:
        plain = {str(c): _plain(v) for c, v in row.items()}
        ident = tuple(sorted((c, repr(v)) for c, v in plain.items()))
        if ident not in cache:
            cache[ident] = instance_settings(strategy_cls(**plain))
        own = cache[ident]
        for key in keys:
            out[key].append(own.get(key))
    return out


def apply_declared(
    strategy_cls: type, frame: pd.DataFrame, options: Mapping[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A batch's parameter frame and exit options with the strategy's own settings in them.

    Checks that no ``engine.<key>`` column names a declared key
    (:func:`check_searched_keys`); bare exit columns become ``engine.<key>`` columns. Then,
    for each declared key, the value every set's instance has: when all sets agree it
    becomes the batch's option (the strategy wins over ``options``); otherwise an
    ``engine.<key>`` column, each set's own value, or the batch's option where the
    instance's is ``None``.

    Args:
        strategy_cls: The strategy class.
        frame: One row per set: strategy parameters and ``engine.<key>`` columns.
        options: The batch's exit options (``stop_loss``, ...), by key.

    Returns:
        ``(frame, options)`` to run: every exit of every set is in one of the two.

    Raises:
        ConfigError: a searched ``engine.<key>`` the strategy declares.
    """
    renamed = {
        c: f"{PREFIX}{c}"
        for c in frame.columns
        if not str(c).startswith(PREFIX) and is_engine_column(str(c), strategy_cls)
    }
    for bare, prefixed in renamed.items():
        if prefixed in frame.columns:
            raise ConfigError(
                f"param_sets has both {bare} and {prefixed}, the same engine option: keep one",
                key=f"param_sets.{prefixed}",
            )
    if renamed:
        frame = frame.rename(columns=renamed)
    out = dict(options)
    declared = declared_keys(strategy_cls)
    if not declared:
        return frame, out
    check_searched_keys(strategy_cls, [str(c) for c in frame.columns], where="param_sets")
    own = [c for c in frame.columns if not str(c).startswith(PREFIX)]
    values = per_set_settings(strategy_cls, frame[own], declared)
    for key, per_set in values.items():
        distinct = {repr(v) for v in per_set}
        if len(distinct) == 1:
            if per_set and per_set[0] is not None:
                out[key] = per_set[0]
            continue
        fallback = out.get(key)
        column = [fallback if v is None else v for v in per_set]
        frame = frame.assign(**{f"{PREFIX}{key}": _column(column)})
    return frame, out


def _column(values: list[Any]) -> np.ndarray:
    if all(v is None or isinstance(v, int | float | np.number) for v in values):
        return np.array([np.nan if v is None else float(v) for v in values])
    return np.array(values, dtype=object)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
