"""The sweep loop: ask Optuna, launch one job, tell the result, keep ``n_jobs`` in flight."""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from backtest.errors import BacktestError, ConfigError
from hydra_plugins.backtest_optuna_sweeper._space import build_space, format_value

if TYPE_CHECKING:
    from hydra_plugins.backtest_optuna_sweeper.optuna_sweeper import BacktestOptunaSweeper

log = logging.getLogger("backtest.sweeper")

RESULTS_FILE = "optimization_results.yaml"
_JOB_ATTR = "backtest_job"  # set on every trial that became a job (pruned proposals did not)
_INTERRUPTED_ATTR = "interrupted_trials"  # study attr: trials left running by a stopped sweep


def _constraint(text: str | None, keys: list[str]) -> Callable[[dict[str, Any]], bool] | None:
    """The constraint over the last segments of the swept keys (``fast < slow``)."""
    if not text:
        return None
    from backtest.search import Constraint

    short = {k.rsplit(".", 1)[-1]: k for k in keys}
    rule = Constraint(text, names=list(short))
    return lambda params: rule({s: params[k] for s, k in short.items()})


def _sampler(name: str, seed: int | None) -> Any:
    import optuna

    from backtest.search._optuna import make_sampler

    if seed is None and name == "tpe":
        return optuna.samplers.TPESampler()
    if seed is None and name == "random":
        return optuna.samplers.RandomSampler()
    return make_sampler(name, seed if seed is not None else 0)


def _counted(study: Any) -> list[Any]:
    """Trials that count toward ``n_trials``: finished jobs, not stale or pruned ones."""
    from optuna.trial import TrialState

    interrupted = set(study.user_attrs.get(_INTERRUPTED_ATTR, []))
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.FAIL)
        and t.user_attrs.get(_JOB_ATTR)
        and t.number not in interrupted
    ]


def _mark_interrupted(study: Any) -> int:
    """Fail the trials a stopped sweep left running, so the sampler and the count skip them."""
    from optuna.trial import TrialState

    stale = [t.number for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    if stale:
        numbers = sorted(set(study.user_attrs.get(_INTERRUPTED_ATTR, [])) | set(stale))
        study.set_user_attr(_INTERRUPTED_ATTR, numbers)
        for number in stale:
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        log.warning(
            "optuna sweeper: %d trial(s) left running by a stopped sweep marked as "
            "interrupted (not counted): %s",
            len(stale),
            stale,
        )
    return len(stale)


def _outcome(returns: Any) -> tuple[float | None, str | None]:
    """The objective of a finished job, or why the trial failed."""
    from hydra.core.utils import JobStatus

    ret = returns[0]
    if ret.status != JobStatus.COMPLETED:
        err = getattr(ret, "_return_value", None)
        return None, f"{type(err).__name__}: {err}" if err is not None else "job failed"
    value = ret.return_value
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None, f"objective is {value!r} (the job returned no number)"
    if not math.isfinite(value):
        return None, f"objective is {value}"
    return value, None


class _Study:
    """An Optuna study driven through a Hydra launcher."""

    def __init__(self, sweeper: BacktestOptunaSweeper, arguments: list[str]) -> None:
        import optuna

        s = sweeper.settings
        config = sweeper.config
        assert config is not None
        if s.n_trials < 1 or s.n_jobs < 1:
            raise ConfigError(
                "hydra.sweeper.n_trials and n_jobs must be >= 1", key="hydra.sweeper.n_trials"
            )
        if s.direction not in ("maximize", "minimize"):
            raise ConfigError(
                f"hydra.sweeper.direction must be maximize or minimize, got {s.direction!r}",
                key="hydra.sweeper.direction",
            )
        self.sweeper = sweeper
        self.settings = s
        self.space, self.fixed = build_space(
            OmegaConf.to_container(OmegaConf.create(s.params)) if s.params else {}, arguments
        )
        self.constraint = _constraint(s.constraint, list(self.space))
        self.study_name = s.study_name or f"{config.get('name', 'sweep')}-optuna"
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        from sqlalchemy.exc import SQLAlchemyError

        try:
            _make_sqlite_folder(s.storage)
            self.study = optuna.create_study(
                storage=s.storage,
                study_name=self.study_name,
                direction=s.direction,
                sampler=_sampler(s.sampler, s.seed),
                load_if_exists=True,
            )
        except (ValueError, ImportError, OSError, RuntimeError, SQLAlchemyError) as exc:
            raise ConfigError(
                f"cannot open study {self.study_name!r} in {s.storage!r}: {exc}",
                key="hydra.sweeper.study_name",
            ) from exc
        self.lock = threading.Lock()
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self.new: list[tuple[int, float | None, str | None]] = []

    def ask(self) -> tuple[Any, list[str]]:
        """The next trial the constraint allows, and its overrides."""
        from optuna.trial import TrialState

        with self.lock:
            for _ in range(10_000):
                trial = self.study.ask(self.space)
                if self.constraint is None or self.constraint(trial.params):
                    trial.set_user_attr(_JOB_ATTR, True)
                    overrides = [
                        *self.fixed,
                        *(f"{k}={format_value(v)}" for k, v in trial.params.items()),
                    ]
                    trial.set_user_attr("overrides", overrides)
                    return trial, overrides
                self.study.tell(trial, state=TrialState.PRUNED)
        raise ConfigError(
            f"hydra.sweeper.constraint {self.settings.constraint!r} rejected "
            "10,000 proposals in a row",
            key="hydra.sweeper.constraint",
        )

    def launch(self, trial: Any, overrides: list[str]) -> tuple[float | None, str | None]:
        """Run one job through the launcher (blocks until it finishes)."""
        try:
            return _outcome(self.sweeper.launcher.launch([overrides], initial_job_idx=trial.number))
        except Exception as exc:  # a launcher error fails this trial, not the sweep
            return None, f"{type(exc).__name__}: {exc}"

    def tell(self, trial: Any, value: float | None, error: str | None) -> None:
        """Report a finished job to Optuna."""
        from optuna.trial import TrialState

        with self.lock:
            if value is None:
                trial.set_user_attr("error", error)
                self.study.tell(trial, state=TrialState.FAIL)
                log.warning("optuna sweeper: trial %d failed: %s", trial.number, error)
            else:
                self.study.tell(trial, value)
            self.new.append((trial.number, value, error))

    def failures(self) -> int:
        return sum(1 for _, value, _ in self.new if value is None)


def _in_process(launcher: Any) -> bool:
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher

    return isinstance(launcher, BasicLauncher)


def sweep(sweeper: BacktestOptunaSweeper, arguments: list[str]) -> dict[str, Any]:
    """Run the study to ``n_trials`` counted trials and write its summary.

    Returns:
        The summary also written to ``<sweep dir>/optimization_results.yaml``.
    """
    run = _Study(sweeper, arguments)
    s = run.settings
    interrupted = _mark_interrupted(run.study)
    done_before = len(_counted(run.study))
    remaining = max(0, s.n_trials - done_before)
    log.info(
        "optuna sweeper: study %r (%s), %d trial(s) already finished, %d to run, "
        "%d in flight at most; space: %s",
        run.study_name,
        s.storage or "in memory",
        done_before,
        remaining,
        s.n_jobs,
        ", ".join(run.space),
    )
    run.sweep_dir.mkdir(parents=True, exist_ok=True)
    # As Hydra's basic sweeper does: the sweep's config marks the directory as one sweep,
    # so tracking nests its jobs under one parent run.
    OmegaConf.save(sweeper.config, run.sweep_dir / "multirun.yaml")
    slots = 1 if _in_process(sweeper.launcher) else s.n_jobs
    if slots != s.n_jobs:
        log.info("optuna sweeper: the basic launcher runs jobs in this process, one at a time")

    def stop() -> bool:
        return s.max_failures > 0 and run.failures() >= s.max_failures

    launched = 0
    if slots == 1:
        while launched < remaining and not stop():
            trial, overrides = run.ask()
            if launched == 0:
                sweeper.validate_batch_is_legal([overrides])
            launched += 1
            run.tell(trial, *run.launch(trial, overrides))
    else:
        with ThreadPoolExecutor(max_workers=slots, thread_name_prefix="optuna-job") as pool:
            in_flight: dict[Future[tuple[float | None, str | None]], Any] = {}
            while (launched < remaining and not stop()) or in_flight:
                while len(in_flight) < slots and launched < remaining and not stop():
                    trial, overrides = run.ask()
                    if launched == 0:
                        sweeper.validate_batch_is_legal([overrides])
                    launched += 1
                    in_flight[pool.submit(run.launch, trial, overrides)] = trial
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    run.tell(in_flight.pop(future), *future.result())
    summary = _report(run, done_before, interrupted)
    if stop():
        raise _stopped(run)
    return summary


class SweepStopped(BacktestError, RuntimeError):
    """An Optuna sweep stopped early on ``max_failures``; names the failed trials."""


def _stopped(run: _Study) -> SweepStopped:
    """The error a sweep stopped by ``max_failures`` exits with: the failed trials named."""
    lines = []
    for number, value, error in run.new:
        if value is None:
            overrides = run.study.trials[number].user_attrs.get("overrides") or []
            lines.append(f"  trial {number} [{' '.join(overrides)}]: {error}")
    return SweepStopped(
        f"optuna sweeper stopped after {run.failures()} failed trial(s) "
        f"(hydra.sweeper.max_failures={run.settings.max_failures}); results so far are in "
        f"{run.sweep_dir}:\n" + "\n".join(lines)
    )


def _report(run: _Study, done_before: int, interrupted: int) -> dict[str, Any]:
    from optuna.trial import TrialState

    counted = _counted(run.study)
    complete = [t for t in counted if t.state == TrialState.COMPLETE]
    failed = [t for t in counted if t.state == TrialState.FAIL]
    summary: dict[str, Any] = {
        "study_name": run.study_name,
        "storage": run.settings.storage,
        "sampler": run.settings.sampler,
        "direction": run.settings.direction,
        "n_trials": run.settings.n_trials,
        "n_finished": len(counted),
        "n_complete": len(complete),
        "n_failed": len(failed),
        "n_run_now": len(run.new),
        "n_failed_now": run.failures(),
        "n_finished_before": done_before,
        "n_interrupted": interrupted,
        "failure_reasons": dict(Counter(str(t.user_attrs.get("error")) for t in failed)),
        "best_value": None,
        "best_params": None,
        "best_trial": None,
    }
    if complete:
        best = run.study.best_trial
        summary.update(
            best_value=float(best.value),
            best_trial=best.number,
            best_params={k: _plain(v) for k, v in best.params.items()},
        )
    from backtest.results import atomic_write_bytes

    atomic_write_bytes(
        run.sweep_dir / RESULTS_FILE, OmegaConf.to_yaml(OmegaConf.create(summary)).encode()
    )
    if complete:
        log.info(
            "optuna sweeper: %d trials (%d failed), best objective %.6g at trial %d: %s",
            len(counted),
            len(failed),
            summary["best_value"],
            summary["best_trial"],
            " ".join(f"{k}={v}" for k, v in summary["best_params"].items()),
        )
    else:
        log.error(
            "optuna sweeper: all %d trials failed: %s", len(counted), summary["failure_reasons"]
        )
    return summary


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _make_sqlite_folder(storage: str | None) -> None:
    """Create the folder of a ``sqlite:///path/to/file.db`` storage (sqlite will not)."""
    prefix = "sqlite:///"
    if storage and storage.startswith(prefix) and storage != prefix + ":memory:":
        Path(storage[len(prefix) :]).expanduser().parent.mkdir(parents=True, exist_ok=True)
