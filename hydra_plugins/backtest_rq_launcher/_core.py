"""What ``hydra/launcher=rq`` does for a batch of override lists (imports rq lazily)."""

from __future__ import annotations

import atexit
import copy
import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

if TYPE_CHECKING:
    from backtest.tasks._jobs import BacktestJob
    from hydra_plugins.backtest_rq_launcher.rq_launcher import BacktestRQLauncher

log = logging.getLogger("backtest.launcher")

# A sweeper may call ``launch`` from several threads at once (our Optuna sweeper keeps
# ``n_jobs`` one-job batches in flight). Preparing jobs sets Hydra's global
# ``HydraConfig`` and starts the runtime once, so it runs under this lock; waiting for
# the workers does not.
_PREPARE = threading.Lock()
_CHUNK = 8  # jobs queued per Redis round trip while the rest of a batch is prepared


class _Runtime:
    """The queue and the local workers of one launcher, kept across batches."""

    def __init__(self, launcher: BacktestRQLauncher) -> None:
        from backtest.config import QueueConfig
        from backtest.errors import ConfigError
        from backtest.queue import BacktestJobQueue

        assert launcher.config is not None
        queue_cfg = OmegaConf.to_object(launcher.config.queue)
        if not isinstance(queue_cfg, QueueConfig):
            raise ConfigError("hydra/launcher=rq needs the queue config group", key="queue")
        self.queue = BacktestJobQueue(queue_cfg)
        params = launcher.params
        n = params.local_workers
        if n is None:
            n = queue_cfg.n_workers if self.queue.embedded else 0
        self.workers = None
        if n > 0:
            roots = {} if self.queue.embedded else worker_roots(launcher.config)
            self.workers = self.queue.start_workers(
                n,
                env={**worker_env(n), **tracking_env(launcher.config)},
                maintenance_interval=params.maintenance_interval,
                monitoring_interval=params.monitoring_interval,
                heartbeat_grace=params.heartbeat_grace,
                allowed_modules=list(launcher.config.get("allowed_modules") or []),
                **roots,
            )
        where = "an embedded Redis" if self.queue.embedded else self.queue.masked_url
        log.info("rq launcher: queue %r on %s, %d local worker(s)", self.queue.name, where, n)
        atexit.register(self.close)

    def close(self) -> None:
        """Stop the local workers, then the embedded Redis (if any)."""
        if self.workers is not None:
            self.workers.stop()
            self.workers = None
        self.queue.close()


def worker_env(n_workers: int) -> dict[str, str]:
    """Environment of the launcher's local workers: a fair share of the cores for numba.

    Each worker's jobs would otherwise start numba's threads on every core, so ``n``
    workers oversubscribe the machine ``n`` times. ``NUMBA_NUM_THREADS`` becomes
    ``max(1, cores // n_workers)``, unless the user set it. The numbers do not depend
    on it: the engine's parallel loops split work per parameter set or per chunk, and
    each is computed alone.
    """
    if os.environ.get("NUMBA_NUM_THREADS"):
        return {}
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return {"NUMBA_NUM_THREADS": str(max(1, cores // max(1, n_workers)))}


def tracking_env(config: DictConfig) -> dict[str, str]:
    """``MLFLOW_TRACKING_URI`` of the sweep for its local workers.

    A worker tracks to its own store only (a job's ``tracking.uri`` is ignored on a
    worker, :mod:`backtest.queue._policy`); the launcher's own workers act for this
    sweep, so their own store is the sweep's.
    """
    tracking = config.get("tracking")
    if tracking is None or not tracking.get("enabled", True) or not tracking.get("uri"):
        return {}
    from backtest.masking import reveal

    return {"MLFLOW_TRACKING_URI": str(reveal(str(tracking.uri)))}


def worker_roots(config: DictConfig) -> dict[str, list[str]]:
    """Data and output folders of local workers on a shared Redis: this sweep's only.

    The working directory, the sweep directory and the folder of ``data.path``; jobs
    that other writers queue get no more from this machine's workers than that.
    """
    cwd = Path.cwd()
    outputs = [cwd, Path(str(config.hydra.sweep.dir)).absolute()]
    if config.get("output_dir"):
        outputs.append(Path(str(config.output_dir)).absolute())
    data = [cwd]
    path = OmegaConf.select(config, "data.path", default=None)
    if path:
        data.append(Path(str(path)).absolute().parent)
    return {"data_roots": [str(p) for p in data], "output_roots": [str(p) for p in outputs]}


def start(launcher: BacktestRQLauncher) -> None:
    """Start the queue and the local workers, if not yet done.

    Called from the launcher's ``setup``: the workers import the package and warm up
    while the sweeper still validates the sweep's configs, not after.
    """
    from backtest.masking import mask_logs

    with _PREPARE:
        if launcher.runtime is None:
            mask_logs()
            launcher.runtime = _Runtime(launcher)


_NOT_SET = object()


def _same_override(swept: Any, job: Any) -> bool:
    """Whether a job's override is the sweep's own non-sweep one, however it is spelled.

    Hydra's basic sweeper writes each job's overrides anew from the parsed values, so
    ``summary=false`` on the command line reaches the launcher as ``summary=False``.
    """
    if swept.is_sweep_override() or job.is_sweep_override():
        return False
    if (swept.type, swept.key_or_group, swept.package) != (job.type, job.key_or_group, job.package):
        return False
    a, b = swept.value(), job.value()
    return type(a) is type(b) and repr(a) == repr(b)


def _value_sweep_config(launcher: BacktestRQLauncher, overrides: list[str]) -> DictConfig | None:
    """A job's config from the sweep's own, when the job only sets swept values.

    Hydra composes every job's config from scratch (``load_sweep_config``): about a
    third of a second each, which made queueing 40 jobs slower than running them. A
    job whose overrides differ from the sweep's only where the sweep listed values
    of existing plain keys (``strategy.fast=5,10,20``, not a config group) gets the
    same config by setting those values on a copy of the sweep's config. Anything
    else (a group choice, an added or deleted key) returns ``None``: composed in full.
    """
    from hydra._internal.config_loader_impl import get_overrides_dirname
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    assert launcher.config is not None and launcher.hydra_context is not None
    master = launcher.config
    base = [str(o) for o in master.hydra.overrides.task]
    if len(base) != len(overrides):
        return None
    parser = OverridesParser.create()
    repo = getattr(launcher.hydra_context.config_loader, "repository", None)
    changes = []
    try:
        parsed = parser.parse_overrides(overrides)
        for swept, job, line in zip(parser.parse_overrides(base), parsed, overrides, strict=True):
            if str(swept.input_line) == line or _same_override(swept, job):
                continue  # the sweep's own override (Hydra may spell it anew: false -> False)
            key = job.key_or_group
            if (
                job.type is not OverrideType.CHANGE
                or job.package is not None
                or job.is_sweep_override()
                or not swept.is_sweep_override()
                or swept.key_or_group != key
                or key.split(".")[0] == "hydra"
                or repo is None
                or repo.group_exists(key.replace(".", "/"))
                or OmegaConf.select(master, key, default=_NOT_SET) is _NOT_SET
            ):
                return None
            changes.append((key, job.value()))
    except Exception:  # anything unusual: let Hydra compose it
        return None
    cfg = copy.deepcopy(master)
    hydra = cfg.hydra
    OmegaConf.set_readonly(hydra, None)  # HydraConfig.set_config froze it; a fresh one is not
    try:  # Hydra marks its own nodes read-only: open each one that changes
        with read_write(cfg), open_dict(cfg), read_write(hydra), open_dict(hydra):
            for key, value in changes:
                OmegaConf.update(cfg, key, value, merge=False)
            with read_write(hydra.overrides), read_write(hydra.job), open_dict(hydra.job):
                hydra.overrides.task = list(overrides)
                dirname = hydra.job.config.override_dirname
                hydra.job.override_dirname = get_overrides_dirname(
                    overrides=parsed,
                    kv_sep=dirname.kv_sep,
                    item_sep=dirname.item_sep,
                    exclude_keys=dirname.exclude_keys,
                )
            hydra.mode = None  # as load_sweep_config leaves it
    except Exception:
        return None
    OmegaConf.copy_cache(from_config=master, to_config=cfg)
    return cfg


def _job_for(
    launcher: BacktestRQLauncher, overrides: Sequence[str], job_num: int
) -> tuple[BacktestJob, DictConfig, DictConfig]:
    """The backtest job of one sweep job, with its run directory and recorded overrides."""
    from backtest.masking import mask_text
    from backtest.tasks._jobs import BacktestJob

    assert launcher.config is not None and launcher.hydra_context is not None
    loader = launcher.hydra_context.config_loader
    sweep_config = _value_sweep_config(launcher, list(overrides))
    if sweep_config is None:  # group choices changed: compose it as Hydra does
        sweep_config = loader.load_sweep_config(launcher.config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.num = job_num
        sweep_config.hydra.job.id = f"rq_{job_num}"
    sweep_node = OmegaConf.to_container(sweep_config.hydra.sweep, resolve=False)
    if "${hydra:" in str(sweep_node):  # the folder names read the job's Hydra config
        HydraConfig.instance().set_config(sweep_config)
    output_dir = Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
    output_dir = output_dir.absolute()
    with read_write(sweep_config.hydra.runtime), open_dict(sweep_config.hydra.runtime):
        sweep_config.hydra.runtime.output_dir = str(output_dir)
    HydraConfig.instance().set_config(sweep_config)

    task_cfg = copy.deepcopy(sweep_config)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    run_dir = Path(str(task_cfg.output_dir)) if task_cfg.get("output_dir") else output_dir
    probe = BacktestJob.from_config(task_cfg, result_path=str(run_dir.absolute()))
    where = hashlib.sha256(str(probe.result_path).encode()).hexdigest()[:8]
    job = BacktestJob(
        config=probe.config,
        task=probe.task,
        job_id=f"{probe.task}-{probe.config_hash[:16]}-{where}",
        result_path=probe.result_path,
    )
    with read_write(sweep_config.hydra.job), open_dict(sweep_config.hydra.job):
        sweep_config.hydra.job.id = job.job_id
    hydra_cfg = copy.deepcopy(HydraConfig.instance().cfg)  # set above; only the id changed
    with read_write(hydra_cfg.hydra.job), open_dict(hydra_cfg.hydra.job):
        hydra_cfg.hydra.job.id = job.job_id
    if run_dir.absolute() == output_dir:  # made here: marked as the job's own run folder
        from backtest.queue._policy import mark_run_dir

        mark_run_dir(output_dir, job.job_id)
    subdir = sweep_config.hydra.output_subdir
    if subdir is not None:  # what Hydra's own launchers record in each job directory
        record = output_dir / str(subdir)
        record.mkdir(parents=True, exist_ok=True)
        overrides = sweep_config.hydra.overrides.task
        (record / "config.yaml").write_text(mask_text(OmegaConf.to_yaml(task_cfg)))
        (record / "hydra.yaml").write_text(mask_text(OmegaConf.to_yaml(hydra_cfg)))
        (record / "overrides.yaml").write_text(mask_text(OmegaConf.to_yaml(overrides)))
    return job, task_cfg, hydra_cfg  # type: ignore[return-value]


def launch(
    launcher: BacktestRQLauncher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> Sequence[JobReturn]:
    """Queue the batch, wait for it, and return one ``JobReturn`` per override list.

    A finished job returns its objective (``result.json``'s ``objective``); a failed or
    cancelled one returns status ``FAILED`` with a :class:`~backtest.queue.JobFailed`
    that carries the reason. Redis going away raises ``QueueUnavailable``.
    """
    from backtest.masking import mask_files, mask_logs, remember_config
    from backtest.queue import JobFailed
    from backtest.results import load_result

    assert launcher.config is not None
    with _PREPARE:
        setup_globals()
        configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
        mask_logs()
        remember_config(OmegaConf.to_container(launcher.config, resolve=False))
        if launcher.runtime is None:
            launcher.runtime = _Runtime(launcher)
        runtime: _Runtime = launcher.runtime
        sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        mask_files([sweep_dir / "multirun.yaml"])  # the sweeper's record of the command line
        log.info(
            "rq launcher: queueing %d job(s); sweep output dir: %s", len(job_overrides), sweep_dir
        )
        prepared = []
        original_hydra_cfg = HydraConfig.instance().cfg
        ids: list[str] = []
        try:
            for idx, overrides in enumerate(job_overrides):
                job, task_cfg, hydra_cfg = _job_for(launcher, overrides, initial_job_idx + idx)
                prepared.append((list(overrides), job, task_cfg, hydra_cfg))
                log.info(
                    "\t#%d : %s -> %s",
                    initial_job_idx + idx,
                    " ".join(filter_overrides(overrides)),
                    job.job_id,
                )
                if len(prepared) - len(ids) >= _CHUNK:  # workers start while the rest is made
                    ids += runtime.queue.submit_many(j for _, j, _, _ in prepared[len(ids) :])
        finally:
            HydraConfig.instance().cfg = original_hydra_cfg
        ids += runtime.queue.submit_many(j for _, j, _, _ in prepared[len(ids) :])

    params = launcher.params
    final = runtime.queue.wait(  # outside the lock: other batches run meanwhile
        ids,
        timeout=params.timeout,
        progress=params.progress and len(ids) > 1,  # sweepers send one-job batches
        poll_interval=params.poll_interval,
        outage_s=params.outage_s,
    )

    returns: list[JobReturn] = []
    for (overrides, _job, task_cfg, hydra_cfg), job_id in zip(prepared, ids, strict=True):
        record = final[job_id]
        ret = JobReturn(
            overrides=overrides,
            cfg=task_cfg,
            hydra_cfg=hydra_cfg,
            working_dir=os.getcwd(),
            task_name=str(hydra_cfg.hydra.job.name),
        )
        if record.status == "finished":
            stored = load_result(str(record.result_path), job_id=job_id)
            objective = stored.record.get("objective")
            ret.status = JobStatus.COMPLETED
            ret.return_value = None if objective is None else float(objective)
            log.info(
                "#%s %s: objective %s (%s)",
                hydra_cfg.hydra.job.num,
                " ".join(filter_overrides(overrides)),
                objective,
                record.result_path,
            )
        else:
            from backtest.cli._callbacks import write_failure

            ret.status = JobStatus.FAILED
            ret.return_value = JobFailed(job_id, record.status, record.error)
            write_failure(  # the sweep summary lists it with its overrides and error
                Path(str(hydra_cfg.hydra.runtime.output_dir)),
                list(overrides),
                f"{record.status}: {record.error}",
            )
            log.error(
                "#%s %s: %s: %s",
                hydra_cfg.hydra.job.num,
                " ".join(filter_overrides(overrides)),
                record.status,
                record.error,
            )
        returns.append(ret)
    return returns


def close(launcher: BacktestRQLauncher) -> None:
    """Stop what the launcher started (also done at interpreter exit)."""
    if launcher.runtime is not None:
        launcher.runtime.close()
        launcher.runtime = None
