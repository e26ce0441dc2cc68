"""Settings that contradict each other: refused with both keys named, never one silently winning.

Called on the plain job config before anything runs (:func:`backtest.tasks.prepare`).
"""

from __future__ import annotations

from typing import Any

from backtest.errors import ConfigError

# Pairs of settings where one would silently win over the other: (key a, key b, why).
_CONFLICTS = (
    ("walkforward.train_bars", "walkforward.train_period", "a train window is bars or a period"),
    ("walkforward.test_bars", "walkforward.test_period", "a test window is bars or a period"),
    ("walkforward.step_bars", "walkforward.step_period", "a step is bars or a period"),
)
# Settings that only one option uses: (key, the option key, the values that use it).
_ONLY_WITH = (
    ("walkforward.train_bars", "walkforward.splitter", ("rolling", "anchored")),
    ("walkforward.test_bars", "walkforward.splitter", ("rolling", "anchored")),
    ("walkforward.step_bars", "walkforward.splitter", ("rolling", "anchored")),
    ("walkforward.train_period", "walkforward.splitter", ("rolling", "anchored")),
    ("walkforward.test_period", "walkforward.splitter", ("rolling", "anchored")),
    ("walkforward.step_period", "walkforward.splitter", ("rolling", "anchored")),
    ("montecarlo.jitter", "montecarlo.method", ("parameter_jitter",)),
    ("data.path", "data.source", ("csv", "parquet")),
)


def _get(config: Any, dotted: str) -> Any:
    node = config
    for part in dotted.split("."):
        if not hasattr(node, "get"):
            return None
        node = node.get(part)
    return node


def _is_set(value: Any) -> bool:
    return value not in (None, "", {}, [])


def _option(value: Any) -> str:
    return str(getattr(value, "name", value)).split(".")[-1]


def check_conflicts(config: Any) -> None:
    """Refuse settings that contradict each other instead of letting one silently win.

    ``walkforward.train_bars`` with ``walkforward.train_period`` (and the test and step
    pairs), a bar or period length with the ``cpcv`` splitter, ``montecarlo.jitter``
    with a method other than ``parameter_jitter``, ``data.path`` with synthetic data,
    ``search.space`` with ``search.method=none`` (outside a walk-forward).

    Args:
        config: A plain (or ``DictConfig``) resolved config.

    Raises:
        ConfigError: naming both keys and how to keep one.

    >>> check_conflicts({"walkforward": {"splitter": "rolling", "train_bars": 504,
    ...                                  "train_period": "3Y"}})
    Traceback (most recent call last):
    ...
    backtest.errors.ConfigError: walkforward.train_bars=504 and walkforward.train_period=3Y are both set, but a train window is bars or a period; drop one (e.g. walkforward.train_period=null)
    """  # noqa: E501 - a doctest's expected output is one line
    for a, b, why in _CONFLICTS:
        va, vb = _get(config, a), _get(config, b)
        if _is_set(va) and _is_set(vb):
            raise ConfigError(
                f"{a}={va} and {b}={vb} are both set, but {why}; drop one (e.g. {b}=null)",
                key=f"{a}, {b}",
            )
    search = _get(config, "search") or {}
    if (
        _is_set(search.get("space"))
        and _option(search.get("method")) == "none"
        and not _is_set(_get(config, "walkforward"))
    ):
        raise ConfigError(
            "search.space is set but search.method=none runs one backtest and ignores it; "
            "choose a method (search=grid, random, tpe) or drop search.space",
            key="search.space, search.method",
        )
    for key, option_key, used_by in _ONLY_WITH:
        value = _get(config, key)
        section = _get(config, key.split(".")[0])
        if not section or not _is_set(value):
            continue
        option = _option(_get(config, option_key))
        if option not in used_by:
            raise ConfigError(
                f"{key}={value} is set but {option_key}={option} does not use it (only "
                f"{' / '.join(used_by)} do); drop {key} or change {option_key}",
                key=f"{key}, {option_key}",
            )
