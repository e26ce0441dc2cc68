"""Engine options from a config: what tasks pass to :func:`~backtest.engine.simulate`."""

from __future__ import annotations

from typing import Any

import pandas as pd

from backtest.data._bars import Bars
from backtest.engine import _exits
from backtest.engine._params import ENGINE_KEYS, EngineParams, engine_params
from backtest.engine._periods import resolve_periods_per_year

_ALWAYS = ("fee_bps", "slippage_bps", "weights", "periods_per_year")


def engine_options(engine: Any, index: pd.DatetimeIndex | None = None) -> dict[str, Any]:
    """Keyword options of an ``EngineConfig``: the v1 four always, others when not default.

    An unset ``periods_per_year`` is inferred from ``index`` (252 without one).
    """
    defaults = EngineParams()
    out: dict[str, Any] = {}
    for key in (*ENGINE_KEYS, *_exits.STOP_FIELDS):
        if not hasattr(engine, key):
            continue
        value = getattr(engine, key)
        value = getattr(value, "value", value)
        if key == "weights":
            out[key] = dict(value) or None
            continue
        is_set = (
            key in _ALWAYS
            or (key in ENGINE_KEYS and value != getattr(defaults, key))
            or (key in _exits.STOP_FIELDS and value is not None)
        )
        if is_set and value != _STOP_DEFAULTS.get(key):
            out[key] = value
    if out.get("periods_per_year") is None:
        out["periods_per_year"] = (
            resolve_periods_per_year(index, None) if index is not None else 252.0
        )
    if float(out["periods_per_year"]).is_integer():
        out["periods_per_year"] = int(out["periods_per_year"])
    return out


_STOP_DEFAULTS = {"stop_unit": "fraction", "atr_lookback": 14, "stop_reentry": "signal_change"}


def check_engine_config(engine: Any, bars: Bars) -> float:
    """Validate an ``EngineConfig`` against the data; return its ``periods_per_year``.

    Raises:
        ConfigError: a bad option, naming ``engine.<key>``.
        DataValidationError: ``next_open`` without opens, stops without highs and lows, a
            benchmark symbol not in the data.
    """
    from backtest.engine._single import check_inputs

    options = engine_options(engine, bars.index)
    stops = {k: options.pop(k) for k in list(options) if k in _exits.STOP_FIELDS}
    params = engine_params(**options)
    check_inputs(bars, params, _exits.stop_rules(None, None, **stops))
    return float(options["periods_per_year"])
