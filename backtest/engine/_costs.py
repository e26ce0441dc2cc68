"""Costs and bar returns: what one unit of traded notional costs, and close-to-close returns.

``engine.fee_bps`` and ``engine.slippage_bps`` are a number of basis points for every
asset, or a mapping ``{symbol: bps}`` per asset whose key ``default`` (:data:`DEFAULT_KEY`)
prices the symbols it does not list (``{default: 5, AAPL: 2}``). :func:`check_cost`
validates either form; :func:`asset_rates` resolves them against the data's symbols to the
per-asset fractions the per-bar kernels take; :func:`uniform_costs` turns a mapping that
prices every symbol alike (one asset, or equal values) into its number, so a single-asset
run keeps the fused kernels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from backtest.errors import ConfigError

#: The key of a per-asset cost mapping that prices every symbol the mapping does not list.
DEFAULT_KEY = "default"
COST_KEYS = ("fee_bps", "slippage_bps")


def check_cost(name: str, value: object) -> float | dict[str, float]:
    """A validated ``engine.<name>``: a number >= 0, or ``{symbol: bps}`` of such numbers.

    Raises:
        ConfigError: a negative, non-finite or non-numeric value (naming the symbol of a
            mapping), or an empty mapping.
    """
    if isinstance(value, Mapping):
        if not value:
            raise ConfigError(
                f"engine.{name} is an empty mapping; give bps per symbol and a "
                f"'{DEFAULT_KEY}' (e.g. {{{DEFAULT_KEY}: 5, AAPL: 2}}) or one number",
                key=f"engine.{name}",
            )
        return {str(k): _bps(f"{name}.{k}", v) for k, v in value.items()}
    return _bps(name, value)


def _bps(name: str, value: object) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"engine.{name} must be a number of basis points >= 0 or a mapping "
            f"{{symbol: bps}} with a '{DEFAULT_KEY}', got {value!r}",
            key=f"engine.{name}",
        ) from exc
    if not math.isfinite(out) or out < 0:
        raise ConfigError(
            f"engine.{name} must be a finite number >= 0, got {value!r}", key=f"engine.{name}"
        )
    return out


def asset_bps(name: str, value: float | Mapping[str, float], symbols: Sequence[str]) -> NDArray:
    """Basis points of ``engine.<name>`` per symbol, in the order of ``symbols``.

    Raises:
        ConfigError: a symbol of the mapping that is not in the data (naming it and the
            data's symbols), or a symbol of the data that the mapping does not price and
            no ``default``.
    """
    names = [str(s) for s in symbols]
    if not isinstance(value, Mapping):
        return np.full(len(names), float(value))
    unknown = [s for s in value if s != DEFAULT_KEY and s not in names]
    if unknown:
        raise ConfigError(
            f"engine.{name} prices symbol {unknown[0]!r}, which is not in the data "
            f"(symbols: {', '.join(names)}); remove it or fix its name",
            key=f"engine.{name}.{unknown[0]}",
        )
    missing = [s for s in names if s not in value]
    if missing and DEFAULT_KEY not in value:
        raise ConfigError(
            f"engine.{name} has no entry for symbol {missing[0]!r} and no '{DEFAULT_KEY}'; "
            f"add {missing[0]}: <bps> or {DEFAULT_KEY}: <bps>",
            key=f"engine.{name}.{missing[0]}",
        )
    return np.array([float(value.get(s, value.get(DEFAULT_KEY, 0.0))) for s in names])


def asset_rates(
    fee_bps: float | Mapping[str, float],
    slippage_bps: float | Mapping[str, float],
    symbols: Sequence[str],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(fee, slippage)`` per asset as fractions of traded notional (the kernels' arrays)."""
    fee = asset_bps("fee_bps", check_cost("fee_bps", fee_bps), symbols) / 1e4
    slip = asset_bps("slippage_bps", check_cost("slippage_bps", slippage_bps), symbols) / 1e4
    return np.ascontiguousarray(fee), np.ascontiguousarray(slip)


def uniform_costs(
    fee_bps: float | Mapping[str, float],
    slippage_bps: float | Mapping[str, float],
    symbols: Sequence[str],
) -> tuple[float | dict[str, float], float | dict[str, float]]:
    """Validated ``(fee_bps, slippage_bps)``; a mapping pricing every symbol alike is its number.

    Each mapping is checked against ``symbols`` (:func:`asset_bps`); one with different
    values per symbol is kept (the per-bar kernel then prices each asset).
    """
    out = []
    for name, value in (("fee_bps", fee_bps), ("slippage_bps", slippage_bps)):
        checked = check_cost(name, value)
        if isinstance(checked, dict):
            bps = asset_bps(name, checked, symbols)
            if len(bps) and np.all(bps == bps[0]):
                checked = float(bps[0])
        out.append(checked)
    return out[0], out[1]


def is_per_asset(value: object) -> bool:
    """Whether a cost option is a per-asset mapping."""
    return isinstance(value, Mapping)


def cost_rate(
    fee_bps: float | Mapping[str, float], slippage_bps: float | Mapping[str, float]
) -> float:
    """Cost per unit of traded notional as a fraction (``(fee + slippage) / 1e4``).

    A per-asset mapping has no single rate: :func:`asset_rates` resolves it.

    Raises:
        ConfigError: a negative or non-finite rate, or a per-asset mapping.
    """
    for name, value in (("fee_bps", fee_bps), ("slippage_bps", slippage_bps)):
        if isinstance(value, Mapping):
            raise ConfigError(
                f"engine.{name} per asset ({dict(value)}) has no single cost rate; this path "
                f"needs one number of basis points for every asset",
                key=f"engine.{name}",
            )
        if not np.isfinite(value) or value < 0:
            raise ConfigError(
                f"engine.{name} must be a finite number >= 0, got {value}", key=f"engine.{name}"
            )
    return (float(fee_bps) + float(slippage_bps)) / 1e4  # type: ignore[arg-type]


def bar_returns(close: NDArray[np.float64], axis: int = 0) -> NDArray[np.float64]:
    """Close-to-close returns with a leading 0, along ``axis`` (the bars).

    ``axis=1`` for asset-major closes ``(n_assets, n_bars)``, as the batched kernels read them.
    """
    r = np.zeros_like(close, dtype=np.float64)
    out = np.moveaxis(r, axis, 0)
    bars = np.moveaxis(np.asarray(close), axis, 0)
    out[1:] = bars[1:] / bars[:-1] - 1.0
    return r


def asset_returns(
    close: NDArray[np.float64], positions: NDArray[np.float64], cost: float | NDArray[np.float64]
) -> NDArray[np.float64]:
    """Per-asset (or per-set) strategy returns after costs; arrays of the same shape.

    ``cost`` is one rate, or one per column (per-asset costs, :func:`asset_rates` summed).
    """
    r = bar_returns(close)
    if positions.ndim == 2 and r.ndim == 1:
        r = r[:, np.newaxis]
    prev = np.zeros_like(positions)
    prev[1:] = positions[:-1]
    # r[0] = 0 and pos[-1] = 0, so ret[0] is 0 unless a position is opened at the first
    # close; then its cost is charged there (a cost is never dropped).
    return (1.0 + prev * r) * (1.0 - cost * np.abs(positions - prev)) - 1.0
