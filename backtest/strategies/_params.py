"""A strategy's parameters: discovered from its signature or dataclass, checked before a run.

The parameters of a strategy class are, in order of precedence:

1. ``param_names`` (a class attribute tuple), as the built-ins declare;
2. its dataclass fields (not starting with ``_``), for a ``@dataclass`` strategy;
3. the keyword parameters of its ``__init__`` (an instance keeps each as an attribute
   of the same name, ``self.period = period``, so a run can record it).

:func:`validate_params` checks config values against that list before anything runs:
an unknown key, a missing value or a wrong type is a ``ConfigError`` naming
``strategy.<key>`` and what was expected. Types come from the annotations (``int``,
``float``, ``bool``, ``str`` and ``X | None``); unannotated parameters are not
type-checked.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import numbers
import types
import typing
from collections.abc import Mapping
from typing import Any

from backtest.errors import ConfigError

_EMPTY = inspect.Parameter.empty


def _signature(cls: type) -> dict[str, inspect.Parameter]:
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return {}
    return dict(sig.parameters)


def param_names(cls: type) -> list[str]:
    """The names of a strategy class's parameters (see the module docstring)."""
    declared = getattr(cls, "param_names", None)
    if declared is not None:
        return [str(n) for n in declared]
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")]
    return [
        n
        for n, p in _signature(cls).items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and not n.startswith("_")
    ]


def strategy_params(strategy: Any) -> dict[str, Any]:
    """The parameters of a strategy instance, by name (for results and tracking)."""
    names = param_names(type(strategy))
    return {n: getattr(strategy, n) for n in names if hasattr(strategy, n)}


def _hints(cls: type) -> dict[str, Any]:
    target = cls if dataclasses.is_dataclass(cls) else cls.__init__  # type: ignore[misc]
    try:
        return typing.get_type_hints(target)
    except Exception:  # unresolvable annotations: no type checks, never a crash
        return {}


def _allowed(hint: Any) -> tuple[tuple[type, ...], bool] | None:
    """``(types, optional)`` for a checkable annotation, else ``None``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        inner = [a for a in args if a is not type(None)]
        found: list[type] = []
        for a in inner:
            one = _allowed(a)
            if one is None:
                return None
            found += one[0]
        return tuple(found), len(inner) < len(args)
    if hint in (int, float, bool, str):
        return (hint,), False
    return None


def _coerce(name: str, value: Any, hint: Any) -> Any:
    spec = _allowed(hint)
    if spec is None:
        return value
    allowed, optional = spec
    if value is None:
        if optional:
            return None
        raise ConfigError(f"strategy.{name} must not be null", key=f"strategy.{name}")
    for kind in allowed:
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        if kind is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if kind is float and isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        if kind is str and isinstance(value, str):
            return value
    want = " or ".join(k.__name__ for k in allowed)
    raise ConfigError(
        f"strategy.{name} must be {want}, got {value!r} ({type(value).__name__})",
        key=f"strategy.{name}",
    )


def validate_params(cls: type, params: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``params`` against the class's parameters and annotations.

    Args:
        cls: The strategy class.
        params: Parameter values from the config (``strategy.*`` without ``_target_``).

    Returns:
        The values, integers given as whole floats turned into ints.

    Raises:
        ConfigError: an unknown key, a missing value or a wrong type, naming
            ``strategy.<key>`` and the strategy's parameters.

    Examples:
        >>> from backtest.strategies import SmaCross
        >>> validate_params(SmaCross, {"fast": 5.0})
        {'fast': 5}
        >>> validate_params(SmaCross, {"fsat": 5})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        backtest.errors.ConfigError: strategy.fsat is not a parameter of SmaCross: did you mean ...
    """
    sig = _signature(cls)
    names = param_names(cls)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.values())
    known = set(names) | {n for n, p in sig.items() if p.kind is not p.VAR_POSITIONAL}
    for key in params:
        if key not in known and not accepts_any:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
            mean = f": did you mean strategy.{close[0]}?" if close else ""
            raise ConfigError(
                f"strategy.{key} is not a parameter of {cls.__name__}{mean} "
                f"(its parameters: {', '.join(names)})",
                key=f"strategy.{key}",
            )
    for n, p in sig.items():
        if (
            p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.default is _EMPTY
            and n not in params
        ):
            raise ConfigError(
                f"strategy.{n} is missing: {cls.__name__} needs a value for it "
                f"(set strategy.{n} in the strategy YAML or on the command line)",
                key=f"strategy.{n}",
            )
    hints = _hints(cls)
    return {k: _coerce(k, v, hints[k]) if k in hints else v for k, v in params.items()}
