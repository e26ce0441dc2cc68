"""``backtest run``: compose ``conf/`` with Hydra and run the experiment (:func:`backtest.app.run`).

Hydra prints its own short report of an exception and exits 1 unless
``HYDRA_FULL_ERROR=1``; here exceptions always come back to :func:`backtest.cli.main`,
which prints a :class:`~backtest.errors.BacktestError` as one line (exit 2) and a
composition error (a typo in a key) as Hydra's message, also with exit 2.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from backtest.app import normalise
from backtest.config import CONF_DIR
from backtest.config._hydra import register_configs


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    from backtest.app import run

    return run(cfg)


class _WithoutJobLine:
    """``sys.stderr`` without Hydra's "Error executing job with overrides: [...]" line.

    A single run's overrides are the command line the user just typed; its error is
    printed as one line of its own (:mod:`backtest.cli._errors`).
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if text.startswith("Error executing job with overrides:"):
            return len(text)
        return int(self._stream.write(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def _argv(argv: Sequence[str]) -> Iterator[None]:
    saved_argv, saved_env, saved_err = sys.argv, os.environ.get("HYDRA_FULL_ERROR"), sys.stderr
    sys.argv = ["backtest", *normalise(argv)]
    os.environ["HYDRA_FULL_ERROR"] = "1"  # exceptions come back to us, see the docstring
    if not any(a in ("-m", "--multirun") for a in argv):
        sys.stderr = _WithoutJobLine(sys.stderr)
    try:
        yield
    finally:
        sys.stderr = saved_err
        sys.argv = saved_argv
        if saved_env is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_env


# Hydra's own configs (none sets hydra.mode) and the ConfigStore's: nothing to read
_SAFE_SOURCES = ("pkg://hydra.conf", "structured://")
# what could set the mode, loosely: a ``mode:`` key anywhere, ``hydra.mode``, and a
# ``hydra.searchpath`` in a config (it would add folders this check does not read)
_MAY_SET_MODE = re.compile(r"\bmode['\"]?\s*:|hydra\.mode|searchpath")


def _files_may_set_mode(folders: Sequence[str]) -> bool:
    """Whether a YAML file under one of these search-path elements could set ``hydra.mode``.

    ``file://`` folders (or plain paths, which Hydra reads as files) are read; any
    provider other than Hydra's own configs and the ConfigStore counts as "could".
    """
    for element in folders:
        if element.startswith(_SAFE_SOURCES):
            continue
        scheme, sep, path = element.partition("://")
        if not sep:
            path = element
        elif scheme != "file":
            return True
        root = Path(path)
        if not root.is_dir():
            continue  # Hydra reads nothing there either
        for file in sorted(root.rglob("*.y*ml")):
            try:
                text = file.read_text(encoding="utf-8", errors="replace")
            except OSError:
                return True
            if _MAY_SET_MODE.search(text):
                return True
    return False


def _may_set_mode(hydra_app: Any, overrides: Sequence[str]) -> bool:
    """Whether any config this command can read, or an override, could set ``hydra.mode``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # Hydra reports it when it composes
        return True
    folders = [e.path for e in hydra_app.config_loader.get_search_path().get_path()]
    for override in parsed:
        key = override.key_or_group
        if not (key == "hydra" or key.startswith(("hydra.", "hydra/"))):
            continue
        if key == "hydra.searchpath":  # where Hydra will look for the configs too
            value = override.value()
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return True
            folders.extend(value)
        elif "mode" in override.input_line:
            return True
    return _files_may_set_mode([str(f) for f in folders if f is not None])


@contextmanager
def _mode_without_compose() -> Iterator[None]:
    """Hydra's ``get_mode`` without its full composition when nothing could set the mode.

    Hydra 1.3 composes the whole config once (in MULTIRUN mode) only to read
    ``hydra.mode``, then again to run. None of our configs sets it: when no YAML file
    on the command's search path and no override could, ``get_mode`` returns None,
    what it returns when nothing sets the mode, and Hydra takes RUN or MULTIRUN from
    ``-m`` as before. Otherwise (a ``hydra: mode: MULTIRUN`` in your own experiment,
    another ``pkg://`` provider) Hydra's own ``get_mode`` runs.
    """
    from hydra._internal.hydra import Hydra

    original = Hydra.get_mode

    def get_mode(self: Any, config_name: str | None, overrides: list[str]) -> Any:
        if _may_set_mode(self, overrides):
            return original(self, config_name=config_name, overrides=overrides)
        return None

    Hydra.get_mode = get_mode  # type: ignore[method-assign]
    try:
        yield
    finally:
        Hydra.get_mode = original  # type: ignore[method-assign]


def main(argv: Sequence[str]) -> int:
    """Run ``backtest run ARGS`` (Hydra overrides and flags); returns the exit status."""
    if any(a in ("-h", "--help") for a in argv):
        from backtest.cli._usage import usage

        print(usage())
        return 0
    if not Path(CONF_DIR, "config.yaml").is_file():
        raise SystemExit(
            f"backtest: no configs at {CONF_DIR}; install from a checkout with "
            "`pip install -e .` so that conf/ stays next to the package"
        )
    verbose = os.environ.get("HYDRA_FULL_ERROR") == "1"
    register_configs()
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from backtest.cli._errors import EXIT_USER_ERROR, _user_error, composition_error

    try:
        with _argv(argv), _mode_without_compose():
            _hydra_main()
    except (HydraException, OmegaConfBaseException) as exc:
        if verbose or _user_error(exc) is not None:
            raise
        print(composition_error(exc, argv), file=sys.stderr)
        return EXIT_USER_ERROR
    return 0
