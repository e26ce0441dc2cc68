"""Checks a :class:`~backtest.config.MonteCarloConfig` before any path is drawn.

Every bad value raises :class:`~backtest.errors.ConfigError` whose ``key`` is the
dotted config key (``montecarlo.block_size``), so a typo in YAML or in Python is
reported the same way.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from backtest.config import MonteCarloConfig, MonteCarloMethod
from backtest.errors import ConfigError

_P = "montecarlo"


def _int(name: str, value: object, minimum: int) -> int:
    out: int | None = None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        out = int(value)
    elif isinstance(value, numbers.Real) and float(value).is_integer():
        out = int(float(value))
    if out is None:
        raise ConfigError(f"{_P}.{name} must be an integer, got {value!r}", key=f"{_P}.{name}")
    if out < minimum:
        raise ConfigError(f"{_P}.{name} must be >= {minimum}, got {value}", key=f"{_P}.{name}")
    return out


def _float(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
    ):
        raise ConfigError(f"{_P}.{name} must be a finite number, got {value!r}", key=f"{_P}.{name}")
    return float(value)


def method_of(value: object) -> MonteCarloMethod:
    """The method as an enum; accepts the enum, its name or its value."""
    if isinstance(value, MonteCarloMethod):
        return value
    text = str(value).split(".")[-1]
    try:
        return MonteCarloMethod[text]
    except KeyError:
        choices = ", ".join(m.value for m in MonteCarloMethod)
        raise ConfigError(
            f"{_P}.method must be one of {choices}; got {value!r}", key=f"{_P}.method"
        ) from None


def _jitter(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{_P}.jitter must map parameter names to a relative half-width or a list of "
            f"values, got {value!r}",
            key=f"{_P}.jitter",
        )
    out: dict[str, Any] = {}
    for name, spec in value.items():
        key = f"{_P}.jitter.{name}"
        if isinstance(spec, Sequence) and not isinstance(spec, str):
            if len(spec) == 0:
                raise ConfigError(f"{key} is an empty list of values", key=key)
            out[str(name)] = list(spec)
            continue
        width = _float(f"jitter.{name}", spec)
        if width <= 0:
            raise ConfigError(
                f"{key} must be a relative half-width > 0 (0.2 = ±20%), got {spec!r}", key=key
            )
        out[str(name)] = width
    return out


def check_config(config: MonteCarloConfig) -> MonteCarloConfig:
    """Validate ``config`` and return a normalised copy (enum method, plain containers).

    Raises:
        ConfigError: naming the first bad key, e.g. ``montecarlo.block_size``.
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise ConfigError(f"expected a MonteCarloConfig, got {type(config).__name__}", key=_P)
    method = method_of(config.method)
    n_paths = _int("n_paths", config.n_paths, 1)
    block_size = _float("block_size", config.block_size)
    if block_size < 1:
        raise ConfigError(
            f"{_P}.block_size is the mean block length in bars and must be >= 1, "
            f"got {config.block_size}",
            key=f"{_P}.block_size",
        )
    horizon = None if config.horizon_bars is None else _int("horizon_bars", config.horizon_bars, 2)
    conf = config.confidence
    if isinstance(conf, str) or not isinstance(conf, Sequence) or len(conf) == 0:
        raise ConfigError(
            f"{_P}.confidence must be a non-empty list of percentiles such as [5, 50, 95], "
            f"got {conf!r}",
            key=f"{_P}.confidence",
        )
    levels = [_float("confidence", c) for c in conf]
    for c in levels:
        if not 0.0 <= c <= 100.0:
            raise ConfigError(
                f"{_P}.confidence levels are percentiles in [0, 100], got {c}",
                key=f"{_P}.confidence",
            )
    ruin = _float("ruin_drawdown", config.ruin_drawdown)
    if not 0.0 < ruin <= 1.0:
        raise ConfigError(
            f"{_P}.ruin_drawdown is a fall from the peak as a fraction in (0, 1] "
            f"(0.5 = 50%), got {config.ruin_drawdown}",
            key=f"{_P}.ruin_drawdown",
        )
    n_jobs = config.n_jobs
    if n_jobs != -1:
        n_jobs = _int("n_jobs", n_jobs, 1)
    chunk_size = _int("chunk_size", config.chunk_size, 1)
    seed = config.seed
    if seed is not None:
        seed = _int("seed", seed, 0)
    return dataclasses.replace(
        config,
        method=method,
        n_paths=n_paths,
        block_size=block_size,
        horizon_bars=horizon,
        confidence=sorted(set(levels)),
        ruin_drawdown=ruin,
        jitter=_jitter(config.jitter),
        n_jobs=n_jobs,
        chunk_size=chunk_size,
        seed=seed,
    )


def quantile_label(level: float) -> str:
    """Column name of a percentile level: ``5.0 -> "p5"``, ``97.5 -> "p97.5"``."""
    return f"p{level:g}"
