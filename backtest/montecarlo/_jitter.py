"""``parameter_jitter``: the strategy's parameters drawn around the chosen ones.

The engine's exit levels take part as ``engine.<name>`` parameters (``engine.stop_loss``,
``engine.take_profit``, ``engine.trailing_stop``, ``engine.max_bars``) when they are set,
so a jitter of ``{engine.stop_loss: 0.2}`` tests how much a result owes to the exact stop;
likewise the entry orders' ``engine.entry_offset`` / ``entry_valid_bars`` and the risk
sizing's ``engine.risk_per_trade`` (when set).
A level the strategy declares itself is its parameter, not the engine's: each path reads
it from the jittered instance, as every backtest does.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from backtest.errors import ConfigError

_MAX_DRAWS = 100  # parameter draws per path before a jitter neighbourhood is declared invalid


def strategy_params(strategy: Any) -> dict[str, Any]:
    """The strategy's parameters (``param_names``, else its dataclass fields)."""
    names = getattr(strategy, "param_names", None)
    if names is None:
        if not dataclasses.is_dataclass(strategy):
            raise ConfigError(
                f"parameter_jitter needs a dataclass strategy (or one with param_names); "
                f"got {type(strategy).__name__}",
                key="strategy",
            )
        names = [f.name for f in dataclasses.fields(strategy) if not f.name.startswith("_")]
    return {n: getattr(strategy, n) for n in names}


#: Exit levels of the engine that parameter_jitter can draw (as ``engine.<name>``).
STOP_LEVELS = ("stop_loss", "take_profit", "trailing_stop", "max_bars")
#: Entry-order and sizing levels it can draw too (engine/_orders.py), when set.
ORDER_LEVELS = ("entry_offset", "entry_valid_bars", "risk_per_trade")


def engine_stop_params(engine: Any, strategy: Any = None) -> dict[str, Any]:
    """The engine's exit levels that are set, as ``{"engine.stop_loss": 0.05, ...}``.

    A level the strategy declares itself (an attribute or parameter of that name, see
    :mod:`backtest.engine._declared`) is left out: the strategy's value is the one that
    counts, and it is jittered as the strategy's parameter when it is one.
    """
    from backtest.engine._declared import declared_keys

    own = declared_keys(type(strategy)) if strategy is not None else ()
    out: dict[str, Any] = {}
    for name in STOP_LEVELS:
        if name in own:
            continue
        value = getattr(engine, name, None)
        if value is not None and not (name == "max_bars" and not value):
            out[f"engine.{name}"] = value
    if getattr(getattr(engine, "entry_order", None), "value", "market") != "market":
        out["engine.entry_offset"] = engine.entry_offset
        if engine.entry_valid_bars is not None:
            out["engine.entry_valid_bars"] = engine.entry_valid_bars
    if getattr(engine, "risk_per_trade", None) is not None:
        out["engine.risk_per_trade"] = engine.risk_per_trade
    return out


def _check_drawn(strategy: Any, params: Mapping[str, Any], engine: Any) -> None:
    own = {k: v for k, v in params.items() if not k.startswith("engine.")}
    dataclasses.replace(strategy, **own)
    drawn = {k.removeprefix("engine."): v for k, v in params.items() if k.startswith("engine.")}
    orders = {k: v for k, v in drawn.items() if k in ORDER_LEVELS}
    stops = {k: v for k, v in drawn.items() if k not in ORDER_LEVELS}
    if orders:
        from backtest.engine._order_params import check_order_params
        from backtest.engine._params import EngineParams, params_from_config

        base = params_from_config(engine) if engine is not None else EngineParams()
        check_order_params(dataclasses.replace(base, **orders))
    if stops:
        from backtest.engine._exits import stop_rules

        stop_rules(engine, None, **stops)


def draw_params(
    strategy: Any,
    base_params: Mapping[str, Any],
    jitter: Mapping[str, Any],
    rng: np.random.Generator,
    engine: Any = None,
) -> dict[str, Any]:
    """Jittered parameters that the strategy (and the engine's stop rules) accept.

    A float ``spec`` is a relative half-width: ``base * (1 + U(-spec, spec))``, rounded
    for integer parameters; a list is a set of values drawn uniformly. Draws are repeated
    until valid (a stop-loss fraction must stay in (0, 1), ``fast < slow``, ...).
    """
    last: ConfigError | None = None
    for _ in range(_MAX_DRAWS):
        params = dict(base_params)
        for name, spec in jitter.items():
            if isinstance(spec, list):
                params[name] = spec[int(rng.integers(len(spec)))]
                continue
            base = base_params[name]
            value = base * (1.0 + rng.uniform(-spec, spec))
            params[name] = round(value) if isinstance(base, numbers.Integral) else value
        try:
            _check_drawn(strategy, params, engine)
        except ConfigError as exc:
            last = exc
            continue
        return params
    raise ConfigError(
        f"montecarlo.jitter gives no valid parameters in {_MAX_DRAWS} draws around "
        f"{base_params} (last error: {last}); narrow the neighbourhood",
        key="montecarlo.jitter",
    )


#: Relative half-width used for every numeric parameter when ``jitter`` is empty.
DEFAULT_JITTER = 0.2


def check_jitter(jitter: dict[str, Any], params: dict[str, Any], strategy: Any) -> dict[str, Any]:
    """The jitter to apply: as configured, or ±20% on every numeric parameter when empty.

    Raises:
        ConfigError: an unknown parameter or a width for a non-numeric one, naming
            ``montecarlo.jitter.<name>``; nothing to jitter (``montecarlo.jitter``).
    """

    def numeric(value: object) -> bool:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)

    if not jitter:
        jitter = {name: DEFAULT_JITTER for name, value in params.items() if numeric(value)}
        if not jitter:
            raise ConfigError(
                f"{type(strategy).__name__} has no numeric parameter to jitter; set "
                "montecarlo.jitter to lists of values",
                key="montecarlo.jitter",
            )
    for name, spec in jitter.items():
        key = f"montecarlo.jitter.{name}"
        if name not in params:
            raise ConfigError(
                f"{type(strategy).__name__} has no parameter {name!r}; its "
                f"parameters are {', '.join(params) or 'none'}",
                key=key,
            )
        if not isinstance(spec, list) and not numeric(params[name]):
            raise ConfigError(
                f"{key}: parameter {name!r} = {params[name]!r} is not numeric; give a "
                "list of values to draw from",
                key=key,
            )
    return dict(jitter)
