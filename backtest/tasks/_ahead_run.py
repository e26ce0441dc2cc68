"""The compile-ahead helper process: ``python -m backtest.tasks._ahead_run JOB_FILE PARENT_PID``.

Started by :func:`backtest.tasks._ahead.start` (read it first). A module of its own because
it needs :func:`backtest.tasks.prepare`, whose module starts the helper: ``_ahead`` itself
imports nothing of ``backtest.tasks``' own, so the import graph keeps no circle.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

from backtest.tasks import TaskContext, prepare, typed_settings
from backtest.tasks._ahead import run_helper
from backtest.tasks._jobs import BacktestJob


def context(job: BacktestJob, run_dir: Path | None) -> TaskContext:
    """The run's :class:`TaskContext`, built as the run builds it, less its look-ahead check.

    The run checks the strategy; the helper only compiles. ``check_lookahead`` is set back
    afterwards, as a Monte Carlo reads it.
    """
    lookahead = typed_settings(job.config).engine.check_lookahead
    config = {**job.config, "engine": {**(job.config.get("engine") or {})}}
    config["engine"]["check_lookahead"] = False
    ctx = prepare(replace(job, config=config), run_dir)
    ctx.settings.engine.check_lookahead = lookahead
    return ctx


if __name__ == "__main__":  # pragma: no cover - run as the helper process
    logging.disable(logging.CRITICAL)
    run_helper(sys.argv[1], int(sys.argv[2]), context)
    os._exit(0)  # without waiting for anything the run's modules started
