"""Command line: start a worker that runs backtest jobs from Redis.

    REDIS_URL=redis://:PASSWORD@queue-host:6379/0 python -m backtest.worker --queues backtest

``--url`` works too, but a password on the command line is visible to every user of
the machine (``ps``), so prefer ``REDIS_URL``. The worker runs until it receives
SIGTERM or Ctrl+C (it finishes the current job first; a second signal stops it at
once), or, with ``--burst``, until the queues are empty.

A job's payload is data, never a capability (:mod:`backtest.queue._policy`): the worker
reads price files only under ``--data-root`` folders, writes run directories only under
``--output-root`` folders (both: its working directory by default), tracks only to its
own ``MLFLOW_TRACKING_URI``, and connects a distributed search only to its own study
storage (``--storage`` or ``BACKTEST_STUDY_STORAGE``, else its queue's Redis).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m backtest.worker`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m backtest.worker",
        description="Run backtest jobs from a Redis queue.",
    )
    parser.add_argument(
        "--url",
        default=None,
        help="Redis URL, redis://[:password@]host:port/db (default: $REDIS_URL)",
    )
    parser.add_argument(
        "--queues",
        nargs="+",
        default=["backtest"],
        help="queue names to listen on (default: backtest)",
    )
    parser.add_argument("--name", default=None, help="worker name (default: random)")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--max-jobs", type=int, default=None, help="exit after this many jobs")
    parser.add_argument(
        "--maintenance-interval",
        type=int,
        default=10,
        help="seconds between abandoned-job checks (default: 10)",
    )
    parser.add_argument(
        "--monitoring-interval",
        type=int,
        default=5,
        help="seconds between job heartbeats (default: 5)",
    )
    parser.add_argument(
        "--heartbeat-grace",
        type=int,
        default=15,
        help="seconds a heartbeat may be late before a job counts as abandoned (default: 15)",
    )
    parser.add_argument(
        "--allow-module",
        nargs="+",
        default=None,
        metavar="PREFIX",
        help="module prefixes (besides backtest.) strategies may come from; a job cannot "
        "widen this list (default: $BACKTEST_ALLOWED_MODULES, comma-separated)",
    )
    parser.add_argument(
        "--data-root",
        action="append",
        default=None,
        metavar="DIR",
        help="a folder jobs may read price files from (repeatable; default: the working "
        "directory); a data.path outside every one is refused before the file is opened",
    )
    parser.add_argument(
        "--output-root",
        action="append",
        default=None,
        metavar="DIR",
        help="a folder jobs may write their run directories into (repeatable; default: the "
        "working directory); on several machines, the shared disk",
    )
    parser.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="the Optuna storage of distributed searches, e.g. postgresql://user@db/optuna "
        "(default: $BACKTEST_STUDY_STORAGE, else the queue's Redis); a password belongs in "
        "that variable (or ~/.pgpass), not on the command line",
    )
    parser.add_argument("--log-level", default="INFO", help="log level (default: INFO)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Start a worker; returns the process exit code."""
    args = build_parser().parse_args(argv)
    url = args.url or os.environ.get("REDIS_URL")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    from backtest.errors import BacktestError

    try:
        from backtest.queue import BacktestWorker
    except ImportError as exc:
        import importlib.util

        missing = [m for m in ("rq", "redis") if importlib.util.find_spec(m) is None]
        names = " and ".join(missing) or "rq and redis"
        verb = "are" if len(missing) != 1 else "is"
        why = f"which {verb} not installed" if missing else f"which do not import ({exc})"
        print(f'error: backtest worker needs {names}, {why}: pip install -e ".[queue]"',
              file=sys.stderr)  # fmt: skip
        return 2
    from backtest.config import QueueConfig

    allowed = args.allow_module
    if allowed is None:
        env = os.environ.get("BACKTEST_ALLOWED_MODULES", "")
        allowed = [m.strip() for m in env.split(",") if m.strip()]
    try:
        worker = BacktestWorker(
            args.queues,
            QueueConfig(redis_url=url, name=args.queues[0]),
            name=args.name,
            maintenance_interval=args.maintenance_interval,
            monitoring_interval=args.monitoring_interval,
            heartbeat_grace=args.heartbeat_grace,
            allowed_modules=allowed,
            data_roots=args.data_root or (),
            output_roots=args.output_root or (),
            study_storage=args.storage or os.environ.get("BACKTEST_STUDY_STORAGE") or None,
        )
        worker.work(burst=args.burst, max_jobs=args.max_jobs, logging_level=args.log_level.upper())
    except BacktestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _exit(code: int) -> None:
    """End the process now, skipping the interpreter's teardown.

    Exit handlers run and logs are flushed; only the freeing of numba, pandas and
    pyarrow (about 0.6 s) is skipped. Whoever stops a worker waits for it, the rq
    launcher at the end of every sweep among them.
    """
    import atexit

    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit(main())
