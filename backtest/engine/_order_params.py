"""The order, sizing, session and volume keys of ``engine.*``, validated; the kernels' vector.

:func:`check_order_params` checks the keys of :class:`~backtest.engine.EngineParams` that
:mod:`backtest.engine._orders` and :mod:`backtest.engine._sessions` act on (named errors,
a key without effect refused); :func:`check_orders` checks them against the data and the
stops; :func:`orders_of` packs them into the ``orders`` vector the kernels take
(:data:`~backtest.engine._orders.ORDER_FIELDS`).
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import numpy as np

from backtest.engine._orders import ORDER_TYPES, SIZINGS
from backtest.errors import ConfigError


def order_vector(
    entry_order: str,
    entry_offset: float,
    entry_valid_bars: int | None,
    sizing: str,
    risk_per_trade: float | None,
    max_weight: float | None,
    max_gross: float | None,
    stop_loss: float,
    flat_at_session_end: bool = False,
    max_bars_unit: str = "bars",
    max_participation: float | None = None,
    impact: float = 0.0,
) -> np.ndarray:
    """The kernels' ``orders`` vector (:data:`ORDER_FIELDS`) from validated options."""
    return np.array(
        [
            float(ORDER_TYPES.index(entry_order)),
            float(entry_offset),
            float(entry_valid_bars or 0),
            float(SIZINGS.index(sizing)),
            0.0 if risk_per_trade is None else float(risk_per_trade),
            math.inf if max_weight is None else float(max_weight),
            math.inf if max_gross is None else float(max_gross),
            float(stop_loss),
            float(bool(flat_at_session_end)),
            float(max_bars_unit == "sessions"),
            math.inf if max_participation is None else float(max_participation),
            float(impact),
        ],
        dtype=np.float64,
    )


def check_order_params(p: Any) -> dict[str, Any]:
    """Validated order and sizing keys (``entry_order`` ... ``risk_per_trade``) of ``p``.

    Raises:
        ConfigError: an unknown order type or sizing, a negative offset, a non-integer or
            < 1 expiry, a risk outside (0, 1), or a key that has no effect with the others
            (an offset or expiry on market entries, a risk with weight sizing, risk
            sizing without a risk), naming ``engine.<key>``.
    """
    kind = str(getattr(p.entry_order, "value", p.entry_order))
    if kind not in ORDER_TYPES:
        raise ConfigError(
            f"engine.entry_order must be one of {', '.join(ORDER_TYPES)}, got {p.entry_order!r}",
            key="engine.entry_order",
        )
    sizing = str(getattr(p.sizing, "value", p.sizing))
    if sizing not in SIZINGS:
        raise ConfigError(
            f"engine.sizing must be one of {', '.join(SIZINGS)}, got {p.sizing!r}",
            key="engine.sizing",
        )
    offset = _float("entry_offset", p.entry_offset)
    if not (math.isfinite(offset) and offset >= 0.0):
        raise ConfigError(
            f"engine.entry_offset must be a finite number >= 0, got {p.entry_offset!r}",
            key="engine.entry_offset",
        )
    valid = _given(p.entry_valid_bars)
    if valid is not None:
        if isinstance(valid, bool) or _float("entry_valid_bars", valid) != int(valid) or valid < 1:
            raise ConfigError(
                f"engine.entry_valid_bars must be a whole number of bars >= 1 (null: the order "
                f"never expires), got {p.entry_valid_bars!r}",
                key="engine.entry_valid_bars",
            )
        valid = int(valid)
    if kind == "market":
        for key, value, off in (("entry_offset", offset, 0.0), ("entry_valid_bars", valid, None)):
            if value != off:
                raise ConfigError(
                    f"engine.{key} applies to limit and stop entries and has no effect with "
                    "engine.entry_order=market: set engine.entry_order=limit (or stop), or "
                    f"remove engine.{key}",
                    key=f"engine.{key}",
                )
    risk = _given(p.risk_per_trade)
    if risk is not None:
        risk = _float("risk_per_trade", risk)
        if not (0.0 < risk < 1.0):
            raise ConfigError(
                f"engine.risk_per_trade is a fraction of equity and must be in (0, 1), got "
                f"{p.risk_per_trade!r} (e.g. 0.01 to lose 1% of equity at the stop)",
                key="engine.risk_per_trade",
            )
    if sizing == "risk" and risk is None:
        raise ConfigError(
            "engine.sizing=risk needs engine.risk_per_trade (the fraction of equity lost at "
            "the stop, e.g. 0.01)",
            key="engine.risk_per_trade",
        )
    if sizing == "volatility" and p.target_volatility is None:
        raise ConfigError(
            "engine.sizing=volatility scales each asset's weight to engine.target_volatility "
            "(annual, e.g. 0.15) over engine.vol_lookback bars: set engine.target_volatility",
            key="engine.target_volatility",
        )
    if sizing != "risk" and risk is not None:
        raise ConfigError(
            f"engine.risk_per_trade has no effect with engine.sizing={sizing}: set "
            "engine.sizing=risk or remove engine.risk_per_trade",
            key="engine.risk_per_trade",
        )
    unit = str(getattr(p.max_bars_unit, "value", p.max_bars_unit))
    if unit not in ("bars", "sessions"):
        raise ConfigError(
            f"engine.max_bars_unit must be 'bars' or 'sessions', got {p.max_bars_unit!r}",
            key="engine.max_bars_unit",
        )
    part = _given(p.max_participation)
    if part is not None:
        part = _float("max_participation", part)
        if not (0.0 < part <= 1.0):
            raise ConfigError(
                f"engine.max_participation is a fraction of each bar's volume and must be in "
                f"(0, 1], got {p.max_participation!r} (e.g. 0.1 for 10%)",
                key="engine.max_participation",
            )
    impact = _float("impact", p.impact)
    if not (math.isfinite(impact) and impact >= 0.0):
        raise ConfigError(
            f"engine.impact must be a finite number >= 0, got {p.impact!r} (zipline's "
            "default is 0.1)",
            key="engine.impact",
        )
    return {
        "max_participation": part,
        "impact": impact,
        "max_bars_unit": unit,
        "flat_at_session_end": bool(p.flat_at_session_end),
        "entry_order": kind,
        "entry_offset": offset,
        "entry_valid_bars": valid,
        "sizing": sizing,
        "risk_per_trade": risk,
    }


_T = TypeVar("_T")


def _given(value: _T) -> _T | None:
    """``value``, or ``None`` for a NaN (a missing cell of a parameter frame: the option is off)."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _float(key: str, value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"engine.{key} must be a number, got {value!r}", key=f"engine.{key}"
        ) from exc


def check_orders(bars: Any, params: Any, rules: Any) -> None:
    """Refuse order and sizing options the data or the stops cannot serve.

    Raises:
        ConfigError: risk sizing without a stop-loss, naming the keys.
        DataValidationError: limit/stop entries on data without opens, highs and lows.
    """
    if params.entry_order != "market":
        bars.require("open", "high", "low", why=f"engine.entry_order={params.entry_order} entries")
    for key in ("max_participation", "impact"):
        if getattr(params, key) not in (None, 0.0):
            bars.require("volume", why=f"engine.{key} (a share of each bar's volume)")
    if params.max_bars_unit == "sessions" and not rules.max_bars:
        raise ConfigError(
            "engine.max_bars_unit=sessions has no effect without engine.max_bars (the time "
            "stop it counts): set engine.max_bars or remove engine.max_bars_unit",
            key="engine.max_bars_unit",
        )
    from backtest.engine._sessions import check_sessions

    check_sessions(bars.index, params)
    if params.sizing == "risk" and math.isnan(rules.stop_loss):
        raise ConfigError(
            "engine.sizing=risk sizes each entry as risk_per_trade x equity / (entry - stop "
            "level) and needs a stop-loss: set engine.stop_loss (a fraction, or ATR multiples "
            "with engine.stop_unit=atr), or use engine.sizing=weight",
            key="engine.sizing",
        )


def orders_of(params: Any, rules: Any) -> np.ndarray:
    """The kernels' ``orders`` vector of validated engine options and stop rules."""
    return order_vector(
        params.entry_order, params.entry_offset, params.entry_valid_bars, params.sizing,
        params.risk_per_trade, params.max_weight, params.max_gross_leverage, rules.stop_loss,
        params.flat_at_session_end, params.max_bars_unit, params.max_participation,
        params.impact,
    )  # fmt: skip
