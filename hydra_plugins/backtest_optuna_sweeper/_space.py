"""The sweeper's search space: Hydra sweep syntax or ``search.space`` syntax -> Optuna."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from backtest.errors import ConfigError

_PLAIN = re.compile(r"^[A-Za-z0-9_.+\-]+$")


def _range_distribution(key: str, start: Any, stop: Any, step: Any, log: bool) -> Any:
    from optuna.distributions import FloatDistribution, IntDistribution

    if step <= 0 or stop <= start:
        raise ConfigError(
            f"hydra.sweeper.params.{key}: range({start}, {stop}, {step}) is empty",
            key=f"hydra.sweeper.params.{key}",
        )
    if all(isinstance(v, int) for v in (start, stop, step)):
        last = start + (stop - 1 - start) // step * step  # range() excludes stop
        if log:
            if step != 1:
                raise ConfigError(
                    f"hydra.sweeper.params.{key}: a log range has no step",
                    key=f"hydra.sweeper.params.{key}",
                )
            return IntDistribution(start, last, log=True)
        return IntDistribution(start, last, step=step)
    n = math.ceil((stop - start) / step - 1e-9)
    return FloatDistribution(float(start), float(start + (n - 1) * step), step=float(step))


def hydra_distribution(key: str, text: str) -> Any:
    """The Optuna distribution of a Hydra sweep such as ``range(10, 300, 10)``.

    ``choice`` and comma lists are categorical, ``range`` (stop excluded) integers or
    stepped floats, ``interval`` continuous floats (integers with ``tag(int, ...)``);
    ``tag(log, ...)`` samples in log space. A plain value returns ``None`` (not swept).

    Raises:
        ConfigError: a sweep that does not parse or is empty.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from hydra.errors import HydraException
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    try:
        override = OverridesParser.create().parse_override(f"{key}={text}")
    except HydraException as exc:
        raise ConfigError(
            f"hydra.sweeper.params.{key}: cannot parse {text!r}: {exc}",
            key=f"hydra.sweeper.params.{key}",
        ) from exc
    if not override.is_sweep_override():
        return None
    sweep = override.value()
    tags = set(getattr(sweep, "tags", set()) or set())
    log = "log" in tags
    if isinstance(sweep, ChoiceSweep):
        return CategoricalDistribution(list(sweep.list))
    if isinstance(sweep, RangeSweep):
        return _range_distribution(key, sweep.start, sweep.stop, sweep.step, log)
    if isinstance(sweep, IntervalSweep):
        start, end = sweep.start, sweep.end
        if "int" in tags:
            return IntDistribution(math.ceil(start), math.floor(end), log=log)
        return FloatDistribution(float(start), float(end), log=log)
    raise ConfigError(
        f"hydra.sweeper.params.{key}: unsupported sweep {text!r}", key=f"hydra.sweeper.params.{key}"
    )


def distribution(key: str, spec: Any) -> Any:
    """The Optuna distribution of one ``params`` entry (``None`` for a fixed value)."""
    if isinstance(spec, str):
        return hydra_distribution(key, spec)
    from backtest.search._optuna import to_distribution
    from backtest.search._space import Choice, parse_dimension

    if isinstance(spec, Mapping) or (isinstance(spec, Sequence) and not isinstance(spec, str)):
        dim = parse_dimension(key, spec, prefix="hydra.sweeper.params")
        if isinstance(dim, Choice) and len(dim.values) == 1:
            return None
        return to_distribution(dim)
    return None


def format_value(value: Any) -> str:
    """A parameter value as Hydra override text (quoted when it needs to be)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if _PLAIN.match(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def build_space(
    params: Mapping[str, Any], arguments: Sequence[str]
) -> tuple[dict[str, Any], list[str]]:
    """Distributions by config key, and the overrides every job gets.

    ``params`` come from ``hydra.sweeper.params``; ``arguments`` are the command line
    overrides: sweeps among them join the space, plain ones go to every job.

    Raises:
        ConfigError: an empty space or a bad entry (the key is named).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    space: dict[str, Any] = {}
    fixed: list[str] = []
    for key, spec in params.items():
        dist = distribution(str(key), spec)
        if dist is None:
            fixed.append(f"{key}={format_value(spec)}")
        else:
            space[str(key)] = dist
    parser = OverridesParser.create()
    for override in parser.parse_overrides(list(arguments)):
        key = override.get_key_element()
        if override.is_sweep_override():
            text = override.input_line.split("=", 1)[1]
            space[key] = hydra_distribution(key, text)
        else:
            fixed.append(override.input_line)
    if not space:
        raise ConfigError(
            "the optuna sweeper has nothing to search: set hydra.sweeper.params "
            "(e.g. strategy.fast: range(5, 50)) or pass a sweep override",
            key="hydra.sweeper.params",
        )
    return space, fixed
