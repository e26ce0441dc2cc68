"""Local rq workers tuned for tests: quick maintenance, monitoring and heartbeats.

A killed or stopped worker is noticed within seconds, so the tests that kill one wait
for behaviour (a job requeued, a result written), not for production intervals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backtest.queue._local import LocalWorkers
from backtest.tasks._jobs import BacktestJob


def quick_workers(
    redis_url: str,
    queue: str,
    n: int,
    *,
    support: Path | None = None,
    module: str | None = None,
    maintenance_interval: int = 1,
    env: dict[str, str] | None = None,
    **options: Any,
) -> LocalWorkers:
    """``n`` local workers on ``queue``, importing test strategies from ``support``.

    Args:
        redis_url: The Redis the workers use.
        queue: The queue they listen on.
        n: How many workers.
        support: A folder put on the workers' ``PYTHONPATH`` (test strategies).
        module: The module prefix of ``support`` the workers may import.
        maintenance_interval: rq's maintenance interval, seconds.
        env: More environment for the workers.
        **options: Passed to :class:`~backtest.queue._local.LocalWorkers` (``log_dir``,
            ``output_roots``, ``burst``...).
    """
    env = dict(env or {})
    if support is not None:
        env["PYTHONPATH"] = str(support)
    return LocalWorkers(
        redis_url,
        queue,
        n,
        maintenance_interval=maintenance_interval,
        monitoring_interval=1,
        heartbeat_grace=3,
        env=env,
        allowed_modules=[module] if module else [],
        **options,
    )


def sma_jobs(
    base: dict[str, Any],
    n: int,
    target: str,
    out: Path,
    *,
    engine: dict[str, Any] | None = None,
    **strategy: Any,
) -> list[BacktestJob]:
    """``n`` jobs of the support strategy ``target`` (``module.Class``): ``fast`` 5, 6, ...

    Each job is ``base`` with its strategy replaced (``slow=60`` and ``strategy`` on top),
    its module allowed, ``engine`` options set, and its own folder ``out/jobNN``.
    """
    jobs = []
    for i in range(n):
        config = json.loads(json.dumps(base))
        config["allowed_modules"] = [target.partition(".")[0]]
        config["strategy"] = {"_target_": target, "fast": 5 + i, "slow": 60, **strategy}
        config.setdefault("engine", {}).update(engine or {})
        jobs.append(BacktestJob(config=config, result_path=str(out / f"job{i:02d}")))
    return jobs
