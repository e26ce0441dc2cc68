"""Turning a ``_target_`` string into a strategy class, safely.

A config file must never be able to import or call arbitrary code (think
``_target_: subprocess.run``), so the target is checked against an allow-list of
module prefixes *before anything is imported*: ``backtest.`` plus what the user
lists in ``allowed_modules``.

A worker runs configs that arrive through a queue, so a queued job must not widen
the allow-list: :func:`restrict_modules` (called by every worker at start, with the
list it was started with) makes that list the only one, whatever a config says.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from backtest.errors import ConfigError

_TARGET = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
BUILTIN_PREFIX = "backtest."
_WORKER_MODULES: tuple[str, ...] | None = None  # set in worker processes only


def restrict_modules(prefixes: Iterable[str] | None) -> None:
    """Fix the allow-list of this process: configs' ``allowed_modules`` no longer count.

    Called by :class:`~backtest.queue.BacktestWorker` with the prefixes it was started
    with (``--allow-module``/``BACKTEST_ALLOWED_MODULES``); ``None`` lifts it.
    """
    global _WORKER_MODULES
    _WORKER_MODULES = None if prefixes is None else tuple(prefixes)


def check_target(target: object, allowed_modules: Iterable[str] = ()) -> str:
    """Return ``target`` if its module prefix is allowed, else raise ``ConfigError``.

    Nothing is imported here. A prefix ``"mypkg"`` allows ``mypkg.X`` and
    ``mypkg.sub.X``, never ``mypkg_evil.X``.
    """
    if not isinstance(target, str) or not _TARGET.match(target):
        raise ConfigError(
            f"strategy._target_ must be a dotted import path like "
            f"'backtest.strategies.SmaCross', got {target!r}",
            key="strategy._target_",
        )
    fixed = _WORKER_MODULES is not None
    listed = _WORKER_MODULES if _WORKER_MODULES is not None else tuple(allowed_modules)
    prefixes = [BUILTIN_PREFIX, *(p if p.endswith(".") else p + "." for p in listed)]
    if not any(target.startswith(p) for p in prefixes):
        fix = (
            "this worker's allow-list is fixed when it starts and a job cannot widen it: "
            "start the worker with --allow-module PREFIX"
            if fixed
            else "add yours to allowed_modules"
        )
        # a worker's own list (its command line or environment) is not told to the job
        allowed = f"{BUILTIN_PREFIX} and the worker's own" if fixed else ", ".join(prefixes)
        raise ConfigError(
            f"strategy._target_ {target!r} is not in an allowed module; allowed prefixes: "
            f"{allowed} ({fix})",
            key="strategy._target_",
        )
    return target


def load_strategy_class(target: str, allowed_modules: Iterable[str] = ()) -> type:
    """Import and return the class named by ``target`` after the allow-list check."""
    check_target(target, allowed_modules)
    module_name, _, attr = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import strategy module {module_name!r}: {exc}", key="strategy._target_"
        ) from exc
    cls = getattr(module, attr, None)
    if not isinstance(cls, type) or not callable(getattr(cls, "positions", None)):
        raise ConfigError(
            f"{target!r} is not a strategy class (a class with a positions(prices) method)",
            key="strategy._target_",
        )
    return cls


def split_strategy_config(strategy_cfg: Mapping[str, Any] | Any) -> tuple[str, dict[str, Any]]:
    """``(_target_, params)`` from a strategy config node, dict or dataclass."""
    if hasattr(strategy_cfg, "__dataclass_fields__"):
        data = {n: getattr(strategy_cfg, n) for n in strategy_cfg.__dataclass_fields__}
    else:
        data = dict(strategy_cfg)
    if "_target_" not in data:
        raise ConfigError("strategy config has no _target_", key="strategy._target_")
    target = data.pop("_target_")
    return target, data


def build_strategy(
    strategy_cfg: Mapping[str, Any] | Any, allowed_modules: Iterable[str] = ()
) -> tuple[type, dict[str, Any], Any]:
    """Check, import and instantiate a strategy from its config.

    Returns:
        ``(strategy_cls, params, instance)``.

    Raises:
        ConfigError: a disallowed or unknown target, or a bad parameter (an unknown
            key, a missing value or a wrong type, named before the class is called).
    """
    from backtest.strategies._params import validate_params

    target, params = split_strategy_config(strategy_cfg)
    cls = load_strategy_class(target, allowed_modules)
    params = validate_params(cls, params)
    try:
        instance = cls(**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for {target}: {exc}", key="strategy") from exc
    return cls, params, instance
