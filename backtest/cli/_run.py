"""``backtest run``: compose ``conf/`` with Hydra and run the experiment (:func:`backtest.app.run`).

Hydra prints its own short report of an exception and exits 1 unless
``HYDRA_FULL_ERROR=1``; here exceptions always come back to :func:`backtest.cli.main`,
which prints a :class:`~backtest.errors.BacktestError` as one line (exit 2) and a
composition error (a typo in a key) as Hydra's message, also with exit 2.
"""

from __future__ import annotations

import os
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
        with _argv(argv):
            _hydra_main()
    except (HydraException, OmegaConfBaseException) as exc:
        if verbose or _user_error(exc) is not None:
            raise
        print(composition_error(exc, argv), file=sys.stderr)
        return EXIT_USER_ERROR
    return 0
