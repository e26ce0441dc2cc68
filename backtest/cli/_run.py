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

import hydra
from omegaconf import DictConfig

from backtest.app import normalise
from backtest.config import CONF_DIR
from backtest.config._hydra import register_configs


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    from backtest.app import run

    return run(cfg)


@contextmanager
def _argv(argv: Sequence[str]) -> Iterator[None]:
    saved_argv, saved_env = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = ["backtest", *normalise(argv)]
    os.environ["HYDRA_FULL_ERROR"] = "1"  # exceptions come back to us, see the docstring
    try:
        yield
    finally:
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

    from backtest.cli._errors import EXIT_USER_ERROR, _user_error

    try:
        with _argv(argv):
            _hydra_main()
    except (HydraException, OmegaConfBaseException) as exc:
        if verbose or _user_error(exc) is not None:
            raise
        messages = [str(exc).strip()]
        cause = exc.__cause__
        while cause is not None and len(messages) < 4:
            text = str(cause).strip()
            if text and text not in messages[-1]:
                messages.append(text)
            cause = cause.__cause__
        print("error: " + "\n".join(messages), file=sys.stderr)
        return EXIT_USER_ERROR
    return 0
