"""The ``rq`` launcher: its config (registered as ``hydra/launcher=rq``) and class.

rq and redis are imported only when a batch is launched (in ``_core``), so Hydra can
scan this plugin even where rq is not installed.

No ``from __future__ import annotations`` here: Hydra's plugin scanner executes this
module before registering it in ``sys.modules``, and dataclasses with string
annotations cannot be processed then. ``Optional`` is used for OmegaConf.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


@dataclass
class BacktestRQLauncherConf:
    """Settings of ``hydra/launcher=rq`` (the queue itself is the ``queue`` config group).

    Attributes:
        local_workers: Worker processes started on this machine for the sweep. Unset:
            ``queue.n_workers`` with an embedded Redis, none with ``queue.redis_url``
            (workers run elsewhere, started with ``python -m backtest.worker``). They
            start when the launcher is set up, and each runs numba on ``cores //
            local_workers`` threads unless ``NUMBA_NUM_THREADS`` is set.
        timeout: Seconds to wait for a batch (forever when unset).
        poll_interval: Seconds between status polls.
        progress: Show a progress bar.
        maintenance_interval: Local workers: seconds between abandoned-job checks.
        monitoring_interval: Local workers: seconds between job heartbeats.
        heartbeat_grace: Local workers: seconds a heartbeat may be late.
        outage_s: A Redis outage is reported and waited out this long (workers
            reconnect by themselves), then the sweep fails with ``QueueUnavailable``.
    """

    _target_: str = "hydra_plugins.backtest_rq_launcher.rq_launcher.BacktestRQLauncher"
    local_workers: Optional[int] = None  # noqa: UP045 - OmegaConf reads typing.Optional
    timeout: Optional[float] = None  # noqa: UP045 - OmegaConf reads typing.Optional
    poll_interval: float = 0.25
    progress: bool = True
    maintenance_interval: int = 10
    monitoring_interval: int = 5
    heartbeat_grace: int = 15
    outage_s: float = 120.0


ConfigStore.instance().store(
    group="hydra/launcher", name="rq", node=BacktestRQLauncherConf, provider="backtest"
)


def _check_installed(config: DictConfig) -> None:
    """Fail in one line, naming the install command, when rq, redis or a local Redis is missing.

    Raised before anything is queued or started (the untouched sweep folder is removed
    at exit by the sweep summary callback).
    """
    from backtest.cli._errors import queue_extra_missing
    from backtest.errors import ConfigError

    try:
        url = OmegaConf.select(config, "queue.redis_url", default=None)
    except Exception:  # an unresolvable interpolation: the queue reports it itself
        url = "unknown"
    problem = queue_extra_missing("hydra/launcher=rq", local_redis=not url)
    if problem:
        raise ConfigError(problem, key="hydra/launcher")


class BacktestRQLauncher(Launcher):
    """Launch multirun jobs as backtest jobs on RQ workers (see the package docstring)."""

    def __init__(self, **params: Any) -> None:
        self.params = BacktestRQLauncherConf(**{k: v for k, v in params.items() if k != "_target_"})
        self.config: Optional[DictConfig] = None  # noqa: UP045
        self.hydra_context: Optional[HydraContext] = None  # noqa: UP045
        self.task_function: Optional[TaskFunction] = None  # noqa: UP045
        self.runtime: Any = None  # the queue and local workers, made on the first launch

    def setup(
        self,
        *,
        hydra_context: HydraContext,
        task_function: TaskFunction,
        config: DictConfig,
    ) -> None:
        """Keep what :meth:`launch` needs and start the queue and the local workers.

        Hydra sets the launcher up before the sweeper composes and validates every
        job's config; the workers start up meanwhile, not after.
        """
        _check_installed(config)
        from hydra_plugins.backtest_rq_launcher import _core

        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function
        _core.start(self)

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        """Queue one backtest job per override list and return their results in order."""
        from hydra_plugins.backtest_rq_launcher import _core

        return _core.launch(self, job_overrides, initial_job_idx)
