"""The ``optuna`` sweeper: its config (registered as ``hydra/sweeper=optuna``) and class.

optuna is imported only when a sweep starts (in ``_core``), so Hydra can scan this
plugin quickly. No ``from __future__ import annotations``: Hydra's plugin scanner runs
this module before it is in ``sys.modules``, where string annotations of dataclasses
cannot be resolved; ``Optional``/``Dict`` are what OmegaConf reads.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional  # noqa: UP035 - OmegaConf reads typing generics

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class BacktestOptunaSweeperConf:
    """Settings of ``hydra/sweeper=optuna``.

    Attributes:
        sampler: ``tpe`` (default), ``cmaes`` (numeric ranges) or ``random``.
        direction: ``maximize`` (default: the objective is a Sharpe-like metric) or
            ``minimize``.
        seed: Seed of the sampler (unseeded when unset).
        n_trials: Total trials of the study, counting trials finished before a resume.
        n_jobs: Jobs kept in flight at once (each launched alone through the
            launcher as soon as a slot frees up). The basic launcher runs jobs in this
            process, one at a time, whatever this says.
        storage: Optuna storage URL, e.g. ``sqlite:///outputs/sweeps.db``; in memory
            when unset (then nothing can resume).
        study_name: Study name in the storage; ``<name>-<sweeper>`` from the config
            when unset.
        params: Config key -> search space: Hydra's sweep syntax (``choice(5, 10)``,
            ``range(10, 300, 10)``, ``interval(0.5, 3.0)``, ``tag(log, interval(1e-3,
            1))``), a list of choices, or ``{low, high, step, log}`` as in
            ``search.space``. Sweep overrides on the command line are added to it.
        constraint: An expression over the parameters' last key segments, e.g.
            ``fast < slow``; proposals for which it is false are told as pruned and
            are not trials.
        max_failures: Stop once this many trials have failed in this run (0: never).
    """

    _target_: str = "hydra_plugins.backtest_optuna_sweeper.optuna_sweeper.BacktestOptunaSweeper"
    sampler: str = "tpe"
    direction: str = "maximize"
    seed: Optional[int] = None  # noqa: UP045 - OmegaConf reads typing.Optional
    n_trials: int = 20
    n_jobs: int = 1
    storage: Optional[str] = None  # noqa: UP045
    study_name: Optional[str] = None  # noqa: UP045
    params: Dict[str, Any] = field(default_factory=dict)  # noqa: UP006
    constraint: Optional[str] = None  # noqa: UP045
    max_failures: int = 0


ConfigStore.instance().store(
    group="hydra/sweeper", name="optuna", node=BacktestOptunaSweeperConf, provider="backtest"
)


class BacktestOptunaSweeper(Sweeper):
    """Optuna over Hydra jobs (see the package docstring)."""

    def __init__(self, **params: Any) -> None:
        self.settings = BacktestOptunaSweeperConf(
            **{k: v for k, v in params.items() if k != "_target_"}
        )
        self.config: Optional[DictConfig] = None  # noqa: UP045
        self.hydra_context: Optional[HydraContext] = None  # noqa: UP045
        self.launcher: Any = None

    def setup(
        self,
        *,
        hydra_context: HydraContext,
        task_function: TaskFunction,
        config: DictConfig,
    ) -> None:
        """Instantiate the configured launcher."""
        from hydra.core.plugins import Plugins

        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: List[str]) -> Any:  # noqa: UP006
        """Run the study; return its summary (also written to the sweep directory)."""
        from hydra_plugins.backtest_optuna_sweeper import _core

        return _core.sweep(self, list(arguments))
