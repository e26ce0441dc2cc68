"""The engine's options, validated once: :class:`EngineParams`.

Every option of ``engine.*`` in the config (except the stops, :mod:`._exits`) is a field
here with the same name, so a config, a keyword of :func:`~backtest.engine.simulate` and a
key of ``search.space`` (``engine.rebalance``) all mean the same thing. Bad values raise
:class:`~backtest.errors.ConfigError` naming ``engine.<key>`` before anything runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import PurePath
from typing import Any

from backtest.engine._costs import COST_KEYS, check_cost
from backtest.errors import ConfigError

#: Calendar rebalance codes: every bar, first bar of each day, week, month, quarter.
REBALANCE_CODES = ("bar", "D", "W", "M", "Q")
EXECUTIONS = ("close", "next_open")
_INT = re.compile(r"^\d+$")


@dataclass(frozen=True, slots=True)
class EngineParams:
    """How target weights become a portfolio (see the README's "Portfolio engine").

    Attributes:
        fee_bps: Commission per unit of traded notional, in basis points: one number, or
            ``{symbol: bps}`` per asset with a ``default`` for the others (:mod:`._costs`).
        slippage_bps: Slippage per unit of traded notional, in basis points (a number or
            a mapping, as ``fee_bps``).
        weights: Symbol -> weight applied to a legacy strategy's positions (equal when empty).
        periods_per_year: Bars per year for annualising; ``None`` infers it from the index.
        initial_capital: Starting cash; ``None`` means 1.0 (results as fractions).
        rebalance: ``bar`` (every bar, engine v1's sleeves), ``D``/``W``/``M``/``Q`` (first
            bar of each day/week/month/quarter) or an int N (every N bars).
        rebalance_threshold: Trade an asset at a rebalance only when its weight is more
            than this away from target (0: always).
        execution: ``close`` (fill at the decision close) or ``next_open``.
        fixed_cost: Cost per order, in currency (needs ``initial_capital``).
        min_commission: Minimum fee per order, in currency (needs ``initial_capital``).
        borrow_rate: Annual rate on short notional.
        financing_rate: Annual rate on gross exposure above equity.
        cash_rate: Annual interest on positive idle cash.
        max_gross_leverage: Largest sum of absolute weights (``None``: no limit).
        max_weight: Largest absolute weight of one asset (``None``: no limit).
        long_only: Clip short targets to 0.
        target_volatility: Annual volatility the book is scaled to (``None``: off).
        vol_lookback: Bars of the realised volatility estimate.
        benchmark: ``None``, a symbol of the data, ``equal_weight``,
            ``equal_weight_rebalanced`` or a file of closes (``date, close``); see
            :mod:`backtest.engine._benchmark`.
        entry_order: ``market``, ``limit`` or ``stop`` entries (:mod:`._orders`).
        entry_offset: Distance of a limit/stop entry's level from the deciding close: a
            fraction of it, or ATR multiples with ``stop_unit = "atr"``.
        entry_valid_bars: Bars an entry order works before it is cancelled (``None``: never).
        sizing: ``weight`` (the target weight), ``risk`` (from the stop distance) or
            ``volatility`` (each asset scaled to ``target_volatility``).
        risk_per_trade: Fraction of equity lost at the stop of a ``risk``-sized entry.
        flat_at_session_end: Close every position at each session's last bar
            (:mod:`._sessions`).
        max_bars_unit: What ``max_bars`` counts: ``bars`` or ``sessions``.
        max_participation: Largest share of a bar's volume an opening/adding order trades.
        impact: zipline's volume-share impact coefficient (``impact x share^2``).
    """

    fee_bps: float | Mapping[str, float] = 0.0
    slippage_bps: float | Mapping[str, float] = 0.0
    weights: Mapping[str, float] = field(default_factory=dict)
    periods_per_year: float | None = None
    initial_capital: float | None = None
    rebalance: str | int = "bar"
    rebalance_threshold: float = 0.0
    execution: str = "close"
    fixed_cost: float = 0.0
    min_commission: float = 0.0
    borrow_rate: float = 0.0
    financing_rate: float = 0.0
    cash_rate: float = 0.0
    max_gross_leverage: float | None = None
    max_weight: float | None = None
    long_only: bool = False
    target_volatility: float | None = None
    vol_lookback: int = 63
    benchmark: str | None = None
    entry_order: str = "market"
    entry_offset: float = 0.0
    entry_valid_bars: int | None = None
    sizing: str = "weight"
    risk_per_trade: float | None = None
    flat_at_session_end: bool = False
    max_bars_unit: str = "bars"
    max_participation: float | None = None
    impact: float = 0.0

    @property
    def capital(self) -> float:
        """The initial capital (1.0 when unset)."""
        return 1.0 if self.initial_capital is None else float(self.initial_capital)

    @property
    def every_bar(self) -> bool:
        """Whether the book is rebalanced at every bar."""
        return self.rebalance in ("bar", 1)

    @property
    def sleeves(self) -> bool:
        """Whether engine v1's sleeve accounting applies (see :mod:`._kernel`)."""
        return (
            self.rebalance == "bar"
            and self.execution == "close"
            and self.rebalance_threshold == 0.0
            and self.fixed_cost == 0.0
            and self.min_commission == 0.0
            and self.entry_order == "market"
            and self.sizing == "weight"
            and not self.flat_at_session_end
            and self.max_bars_unit == "bars"
            and self.max_participation is None
            and self.impact == 0.0
        )

    @property
    def next_open(self) -> bool:
        """Whether fills happen at the next bar's open."""
        return self.execution == "next_open"


ENGINE_KEYS = tuple(f.name for f in fields(EngineParams))


def _number(key: str, value: object, *, minimum: float = 0.0, strict: bool = False) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"engine.{key} must be a number, got {value!r}", key=f"engine.{key}"
        ) from exc
    if not math.isfinite(out) or out < minimum or (strict and out <= minimum):
        op = ">" if strict else ">="
        raise ConfigError(
            f"engine.{key} must be a finite number {op} {minimum:g}, got {value!r}",
            key=f"engine.{key}",
        )
    return out


def parse_rebalance(value: object) -> str | int:
    """``bar``, a calendar code, or a positive int number of bars; else ``ConfigError``."""
    raw = getattr(value, "value", value)
    if isinstance(raw, bool):
        raw = str(raw)
    if isinstance(raw, int) or (isinstance(raw, float) and raw.is_integer()):
        n = int(raw)
    elif isinstance(raw, str) and _INT.match(raw.strip()):
        n = int(raw.strip())
    elif isinstance(raw, str) and raw.strip() in REBALANCE_CODES:
        return raw.strip()
    else:
        raise ConfigError(
            f"engine.rebalance must be one of {', '.join(REBALANCE_CODES)} or a whole number "
            f"of bars, got {value!r}",
            key="engine.rebalance",
        )
    if n < 1:
        raise ConfigError(
            f"engine.rebalance as a number of bars must be >= 1, got {value!r}",
            key="engine.rebalance",
        )
    return "bar" if n == 1 else n


def engine_params(**options: Any) -> EngineParams:
    """Validated :class:`EngineParams` from keyword options (unknown keys are refused).

    Raises:
        ConfigError: an unknown option, an unknown rebalance code or execution, a negative
            cost, capital or rate, a limit <= 0, per-order costs without ``initial_capital``;
            the message names ``engine.<key>``.
    """
    unknown = sorted(set(options) - set(ENGINE_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown engine option engine.{unknown[0]} (known: {', '.join(ENGINE_KEYS)})",
            key=f"engine.{unknown[0]}",
        )
    values = {k: getattr(v, "value", v) for k, v in options.items()}
    p = replace(EngineParams(), **values)
    checked: dict[str, Any] = {}
    for key in COST_KEYS:
        checked[key] = check_cost(key, getattr(p, key))
    for key in ("fixed_cost", "min_commission", "borrow_rate", "financing_rate", "cash_rate",
                "rebalance_threshold"):  # fmt: skip
        checked[key] = _number(key, getattr(p, key))
    for key in ("max_gross_leverage", "max_weight", "target_volatility", "initial_capital",
                "periods_per_year"):  # fmt: skip
        value = getattr(p, key)
        checked[key] = None if value is None else _number(key, value, strict=True)
    checked["vol_lookback"] = int(_number("vol_lookback", p.vol_lookback, minimum=2))
    checked["rebalance"] = parse_rebalance(p.rebalance)
    if p.execution not in EXECUTIONS:
        raise ConfigError(
            f"engine.execution must be 'close' or 'next_open', got {p.execution!r}",
            key="engine.execution",
        )
    for key in ("fixed_cost", "min_commission"):
        if checked[key] > 0 and checked["initial_capital"] is None:
            raise ConfigError(
                f"engine.{key} is in currency and needs engine.initial_capital "
                f"(e.g. engine.initial_capital=100000)",
                key=f"engine.{key}",
            )
    benchmark = str(p.benchmark) if isinstance(p.benchmark, PurePath) else p.benchmark
    if benchmark is not None and (not isinstance(benchmark, str) or not benchmark):
        raise ConfigError(
            f"engine.benchmark must be null, a symbol of the data, 'equal_weight', "
            f"'equal_weight_rebalanced' or a file (path.csv), got {benchmark!r}",
            key="engine.benchmark",
        )
    from backtest.engine._order_params import check_order_params

    checked.update(check_order_params(p))
    checked["benchmark"] = benchmark
    return replace(p, **checked, weights=dict(p.weights or {}), long_only=bool(p.long_only))


def params_from_config(engine: object) -> EngineParams:
    """:class:`EngineParams` from an ``EngineConfig`` (its stop fields are left out)."""
    return engine_params(
        **{k: getattr(engine, k) for k in ENGINE_KEYS if hasattr(engine, k)},
    )
