"""Parameter spaces: what each strategy parameter may take during a search.

In config (``search.space``) and in Python alike, each parameter is either

* a list: the choices, e.g. ``fast: [5, 10, 20]`` (a ``range`` works too);
* a mapping ``{low, high}`` with optional ``step`` and ``log``: a range of integers
  when ``low``, ``high`` (and ``step``) are integers, of floats otherwise. Both ends
  are included. ``log: true`` samples evenly in log space (random and Optuna search);
  a grid needs a ``step`` for floats and enumerates every integer otherwise.

A scalar fixes the parameter to that value (a choice of one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from backtest.errors import ConfigError

_RANGE_KEYS = {"low", "high", "step", "log"}


@dataclass(frozen=True, slots=True)
class Choice:
    """One of a fixed list of values, each equally likely in random search."""

    values: tuple[Any, ...]

    def grid(self) -> list[Any]:
        """Every value, in order."""
        return list(self.values)

    def sample(self, rng: np.random.Generator, size: int) -> NDArray[Any] | list[Any]:
        """``size`` uniform draws."""
        idx = rng.integers(0, len(self.values), size=size)
        if all(isinstance(v, bool | np.bool_) for v in self.values):
            return np.asarray(self.values, dtype=bool)[idx]
        if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in self.values):
            return np.asarray(self.values, dtype=np.int64)[idx]
        if all(
            isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in self.values
        ):
            return np.asarray(self.values, dtype=np.float64)[idx]
        return [self.values[i] for i in idx]


@dataclass(frozen=True, slots=True)
class IntRange:
    """Integers ``low, low + step, ..., <= high``; log-uniform when ``log``."""

    low: int
    high: int
    step: int = 1
    log: bool = False

    def grid(self) -> NDArray[np.int64]:
        """Every integer of the range."""
        return np.arange(self.low, self.high + 1, self.step, dtype=np.int64)

    def sample(self, rng: np.random.Generator, size: int) -> NDArray[np.int64]:
        """``size`` draws: uniform over the grid, or log-uniform then rounded."""
        if self.log:
            # like optuna: uniform in log space over [low - 0.5, high + 0.5], then round
            lo, hi = math.log(self.low - 0.5), math.log(self.high + 0.5)
            values = np.rint(np.exp(rng.uniform(lo, hi, size=size))).astype(np.int64)
            return np.clip(values, self.low, self.high)
        n = (self.high - self.low) // self.step + 1
        return self.low + self.step * rng.integers(0, n, size=size, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class FloatRange:
    """Floats in ``[low, high]``: uniform, log-uniform, or on a grid of ``step``."""

    low: float
    high: float
    step: float | None = None
    log: bool = False

    def grid(self) -> NDArray[np.float64]:
        """Every multiple of ``step`` from ``low`` up to ``high``."""
        if self.step is None:
            raise ConfigError(
                f"a float range [{self.low}, {self.high}] has no grid; give it a step "
                "or a list of values",
                key="step",
            )
        n = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        return self.low + self.step * np.arange(n, dtype=np.float64)

    def sample(self, rng: np.random.Generator, size: int) -> NDArray[np.float64]:
        """``size`` draws: uniform, log-uniform, or uniform over the step grid."""
        if self.step is not None:
            grid = self.grid()
            return grid[rng.integers(0, len(grid), size=size)]
        if self.log:
            return np.exp(rng.uniform(math.log(self.low), math.log(self.high), size=size))
        return rng.uniform(self.low, self.high, size=size)


Dimension = Choice | IntRange | FloatRange


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _number(value: object, key: str) -> float | int:
    if _is_int(value):
        return int(value)  # type: ignore[call-overload]
    if isinstance(value, float | np.floating) and math.isfinite(float(value)):
        return float(value)
    raise ConfigError(f"{key} must be a finite number, got {value!r}", key=key)


def parse_dimension(name: str, spec: object, *, prefix: str = "search.space") -> Dimension:
    """One parameter's values from its config form (see the module docstring).

    Raises:
        ConfigError: an empty list, an unknown key, ``low > high``, a non-positive
            step or a log range that includes 0; the key is named.
    """
    key = f"{prefix}.{name}"
    if isinstance(spec, Dimension):
        return spec
    if isinstance(spec, Mapping):
        unknown = sorted(set(map(str, spec)) - _RANGE_KEYS)
        if unknown:
            raise ConfigError(
                f"{key} has unknown key {unknown[0]!r}; a range takes low, high, step and log",
                key=f"{key}.{unknown[0]}",
            )
        for required in ("low", "high"):
            if required not in spec:
                raise ConfigError(
                    f"{key} needs {required!r} (a range is {{low, high}})", key=f"{key}.{required}"
                )
        low = _number(spec["low"], f"{key}.low")
        high = _number(spec["high"], f"{key}.high")
        step = spec.get("step")
        step = None if step is None else _number(step, f"{key}.step")
        log = bool(spec.get("log", False))
        if low > high:
            raise ConfigError(f"{key}: low ({low}) must not exceed high ({high})", key=f"{key}.low")
        if step is not None and step <= 0:
            raise ConfigError(f"{key}.step must be positive, got {step}", key=f"{key}.step")
        if log and low <= 0:
            raise ConfigError(f"{key}: a log range needs low > 0, got {low}", key=f"{key}.low")
        if log and step is not None and step != 1:
            raise ConfigError(f"{key}: a log range cannot have a step", key=f"{key}.step")
        if _is_int(low) and _is_int(high) and (step is None or _is_int(step)):
            return IntRange(int(low), int(high), int(step or 1), log)
        return FloatRange(float(low), float(high), None if step is None else float(step), log)
    if isinstance(spec, str | bytes) or not isinstance(spec, Sequence | range | np.ndarray):
        return Choice((spec,))
    values = tuple(v.item() if isinstance(v, np.generic) else v for v in spec)
    if not values:
        raise ConfigError(f"{key} is an empty list: give at least one value", key=key)
    return Choice(values)


def parse_space(space: Mapping[str, Any], *, prefix: str = "search.space") -> dict[str, Dimension]:
    """Every parameter's :class:`Dimension`, in the order given.

    Raises:
        ConfigError: an empty space (naming ``search.space``) or a bad dimension.
    """
    if not space:
        raise ConfigError(
            f"{prefix} is empty: list the parameters to search, e.g. {prefix}.fast: [5, 10, 20]",
            key=prefix,
        )
    return {
        str(name): parse_dimension(str(name), spec, prefix=prefix) for name, spec in space.items()
    }


def grid_size(space: Mapping[str, Dimension]) -> int:
    """The number of combinations of a grid over ``space`` (before any constraint)."""
    return math.prod(len(dim.grid()) for dim in space.values())
