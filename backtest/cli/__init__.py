"""The ``backtest`` command and its subcommands (``python -m backtest`` is the same).

::

    backtest [run] +experiment=NAME [overrides] [-m]   run an experiment (Hydra)
    backtest compare EXPERIMENT [--metric ...]         compare tracked runs
    backtest sync outputs/ [--uri ...]                 log results not yet in MLflow
    backtest worker [--queues backtest]                run a queue worker (REDIS_URL)
    backtest search-distributed [options] [overrides]  Optuna search on queue workers
    backtest report RUN_DIR [...]                      the HTML report of a run

Thin on purpose: each subcommand hands its arguments to the module that does the work,
imported only when it is used. A :class:`~backtest.errors.BacktestError` prints one
line and a hint, without a traceback, and exits with status 2 (:mod:`backtest.cli._errors`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from backtest.cli._errors import (
    EXIT_USER_ERROR,
    QUEUE_INSTALL,
    QUEUE_MODULES,
    queue_extra_missing,
    reported,
)
from backtest.cli._usage import SUBCOMMANDS, usage
from backtest.masking import mask_logs

VERBOSE_FLAGS = ("--verbose", "-v")


def _load(name: str) -> Callable[[Sequence[str]], int]:
    import importlib

    module_name = SUBCOMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] in QUEUE_MODULES:  # worker, search-distributed
            problem = queue_extra_missing(f"backtest {name}") or f"{exc}: {QUEUE_INSTALL}"
            print(f"error: {problem}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from exc
        if exc.name is not None and module_name.startswith(exc.name):
            print(
                f"error: backtest {name} is not available in this installation "
                f"({module_name} is missing); update backtest (pip install -e .)",
                file=sys.stderr,
            )
            raise SystemExit(EXIT_USER_ERROR) from exc
        raise
    return module.main


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``backtest`` script and of ``python -m backtest``; the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in VERBOSE_FLAGS for a in args)
    args = [a for a in args if a not in VERBOSE_FLAGS]
    if args[:1] in (["-h"], ["--help"], ["help"]):
        print(usage())
        return 0
    name = args[0] if args and args[0] in SUBCOMMANDS else "run"
    rest = args[1:] if args and args[0] in SUBCOMMANDS else args
    mask_logs()  # no secret in any log line of this process
    with reported(verbose=verbose):
        code = _load(name)(rest)
    return int(code or 0)
