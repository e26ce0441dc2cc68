"""Turns a composed Hydra config into a job, runs it and prints the summary."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from backtest import results
from backtest.config import CONF_DIR
from backtest.errors import BacktestError
from backtest.masking import mask_files, mask_logs, remember_config
from backtest.results import load_result
from backtest.results._summary import format_summary
from backtest.tasks import execute_job, prepare
from backtest.tasks._jobs import BacktestJob
from backtest.tasks._logs import kv, use_structlog

log = logging.getLogger("backtest")


def optional_groups() -> list[str]:
    """Groups whose default in ``conf/config.yaml`` is ``null`` (walkforward, montecarlo)."""
    import yaml

    config = yaml.safe_load(Path(CONF_DIR, "config.yaml").read_text())
    return [
        name
        for entry in config.get("defaults", [])
        if isinstance(entry, dict)
        for name, option in entry.items()
        if option is None
    ]


_OFF = ("null", "none", "None", "~")


def switch_off(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """Empty each optional group the command line switched off (``~walkforward``).

    Hydra's ``~group`` removes the group's option, but an experiment that also sets
    values under it (``walkforward.train_period: 3Y``) would leave those behind and the
    task would still run: a switch that did not switch. ``walkforward=null``,
    ``walkforward=none`` and ``~walkforward`` (likewise ``montecarlo``) all mean off;
    ``search=none`` also drops the experiment's ``search.space`` (a space given on the
    command line with it stays, and is refused as a contradiction).
    """
    optional = optional_groups()  # read conf/config.yaml once, not once per override
    off = [a[1:].partition("=")[0] for a in overrides if a.startswith("~")]
    off = [g for g in off if g in optional and cfg.get(g) is not None]
    if "search=none" in overrides and "walkforward" not in off and cfg.get("walkforward"):
        from backtest.errors import ConfigError

        raise ConfigError(
            "search=none switches the search off, but the walk-forward re-optimises the "
            "parameters on every fold with it: switch the walk-forward off too "
            "(~walkforward), or keep a search method (search=grid, random, tpe)",
            key="search",
        )
    own_space = any(a.lstrip("+~").startswith("search.space") for a in overrides)
    clear_space = "search=none" in overrides and not own_space and cfg.search.get("space")
    if not off and not clear_space:
        return cfg
    cfg = cfg.copy()
    with open_dict(cfg):
        for group in off:
            cfg[group] = None
        if clear_space:  # the experiment's space goes with its search (yours is kept: refused)
            cfg.search.space = {}
    return cfg


def flat_space(cfg: DictConfig) -> DictConfig:
    """``search.space.engine.stop_loss=[...]`` as the search reads it: ``engine.stop_loss``.

    On the command line ``+search.space.engine.stop_loss=[0.02,0.05]`` nests the engine's
    keys under ``engine``; the search names them ``engine.<key>`` (as an experiment file's
    ``engine.stop_loss: [...]`` does). Both spellings mean the same search.
    """
    space = cfg.get("search", {}).get("space") if isinstance(cfg, DictConfig) else None
    nested = space.get("engine") if space is not None else None
    if not isinstance(nested, DictConfig) or any(k in nested for k in ("low", "high", "step")):
        return cfg
    cfg = cfg.copy()
    with open_dict(cfg):
        flat = {k: v for k, v in cfg.search.space.items() if k != "engine"}
        flat.update({f"engine.{k}": v for k, v in nested.items()})
        cfg.search.space = flat
    return cfg


def normalise(argv: Sequence[str]) -> list[str]:
    """The command line as Hydra needs it.

    ``+walkforward=rolling`` means ``walkforward=rolling`` for a group with a null
    default: Hydra refuses ``+group=option`` there ("Multiple values for walkforward"),
    though ``+`` is how other optional groups (``+experiment=``) are added; both forms
    work here. A ``conf/`` folder in the working directory is searched for your own
    options (``conf/strategy/my_strategy.yaml``) after the package's ``conf/``.

    ``walkforward=null`` (or ``none``) switches an optional group off as ``~walkforward``
    does, and ``search=null`` or ``~search`` means ``search=none``.

    >>> normalise(["+experiment=sma_cross", "+montecarlo=random_entries", "+x.y=1"])
    ['+experiment=sma_cross', 'montecarlo=random_entries', '+x.y=1']
    >>> normalise(["+experiment=wf_momentum", "walkforward=null", "~montecarlo", "search=null"])
    ['+experiment=wf_momentum', '~walkforward', '~montecarlo', 'search=none']
    """
    optional = optional_groups()
    groups = tuple(f"+{g}=" for g in optional)
    out = []
    for arg in argv:
        group, _, option = arg.lstrip("~+").partition("=")
        if group in optional and (arg.startswith("~") or option in _OFF):
            out.append(f"~{group}")  # switched off: removed here, emptied in switch_off()
        elif group == "search" and (arg.startswith("~") or option in _OFF):
            out.append("search=none")
        else:
            out.append(arg[1:] if arg.startswith(groups) else arg)
    local = Path.cwd() / "conf"
    if (
        local.is_dir()
        and local.resolve() != Path(CONF_DIR).resolve()
        and not any(a.startswith("hydra.searchpath") for a in out)
    ):
        out.append(f"hydra.searchpath=[file://{local.resolve()}]")
    return out


def compose(*overrides: str) -> DictConfig:
    """The config ``backtest run OVERRIDES`` would run, composed from ``conf/`` in Python.

    For building :class:`~backtest.tasks._jobs.BacktestJob` records to submit to a
    :class:`~backtest.queue.BacktestJobQueue` without the command line::

        jobs = [BacktestJob.from_config(compose("+experiment=sma_cross", f"strategy.fast={f}"))
                for f in (5, 10, 20)]

    Raises:
        ConfigError: an override names an unknown key or option (the key is named).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    from backtest.config._hydra import register_configs
    from backtest.errors import ConfigError

    register_configs()
    args = normalise(overrides)
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return flat_space(switch_off(hydra_compose(config_name="config", overrides=args), args))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"{exc}".strip()) from exc


def run_dir_for(cfg: DictConfig) -> Path:
    """``cfg.output_dir`` when set, else Hydra's run (or sweep job) directory.

    A relative ``output_dir`` means the folder the command ran in, also with
    ``hydra.job.chdir=true``; a single run's Hydra run directory is ``output_dir``
    itself (:class:`backtest.cli._callbacks.ClaimOutputDir`).
    """
    from hydra.core.hydra_config import HydraConfig

    if cfg.get("output_dir"):
        path = Path(cfg.output_dir)
        if not path.is_absolute() and HydraConfig.initialized():
            path = Path(HydraConfig.get().runtime.cwd) / path
        return path
    return Path(HydraConfig.get().runtime.output_dir)


def _paths_as_typed(cfg: DictConfig) -> DictConfig:
    """Relative ``data.path`` (and a benchmark file) against the directory the user ran in.

    (``hydra.job.chdir=true`` moves the process into the run directory.)
    """
    from hydra.core.hydra_config import HydraConfig

    from backtest.engine._benchmark import is_file

    bench = cfg.get("engine", {}).get("benchmark")
    keys = {"data.path": cfg.get("data", {}).get("path")}
    if isinstance(bench, str) and is_file(bench):
        keys["engine.benchmark"] = bench
    keys = {k: p for k, p in keys.items() if p and not Path(p).is_absolute()}
    if not keys or not HydraConfig.initialized():
        return cfg
    original = Path(HydraConfig.get().runtime.cwd)
    if original.resolve() == Path.cwd().resolve():
        return cfg  # nothing moved: the path means the same here (and keeps its hash)
    cfg = cfg.copy()
    for key, path in keys.items():
        OmegaConf.update(cfg, key, str(original / path), merge=False)
    return cfg


def _hydra_files(run_dir: Path) -> list[Path]:
    """Hydra's record of the run (``.hydra/*.yaml``) and the sweep's ``multirun.yaml``."""
    return [*run_dir.glob(".hydra/*.yaml"), run_dir.parent / "multirun.yaml"]


def _task_overrides() -> list[str]:
    """The command line's overrides of this run (or sweep job), as Hydra recorded them."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _in_sweep() -> bool:
    """Whether this is a job of a multirun (whose failures the sweep summary lists)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _remove_untouched(run_dir: Path, *, keep_parents: bool = False) -> None:
    """Remove a run directory that holds nothing but what Hydra (and its claim) put there.

    A sweep job's directory stays: its log holds the traceback and the sweep summary
    lists the failure (:mod:`backtest.cli._callbacks`).
    """
    if not run_dir.is_dir() or _in_sweep():
        return
    entries = list(run_dir.iterdir())
    if all(e.name in (".hydra", results.CLAIM_FILE) or e.suffix == ".log" for e in entries):
        shutil.rmtree(run_dir, ignore_errors=True)
        if keep_parents:
            return  # an output_dir the user named: its parents are theirs
        for parent in list(run_dir.parents)[:2]:  # outputs/<name>/ when now empty
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()


def check_space_keys(cfg: DictConfig) -> None:
    """A ``search.space`` key that is no parameter: named with the closest one, before any run.

    Raises:
        ConfigError: naming ``search.space.<key>``, the closest valid key and the
            strategy's parameters.
    """
    import difflib

    from backtest.engine import _exits
    from backtest.engine._params import ENGINE_KEYS
    from backtest.errors import ConfigError
    from backtest.strategies import param_names
    from backtest.strategies._loader import build_strategy
    from backtest.tasks import typed_settings
    from backtest.tasks._jobs import plain_config
    from backtest.tasks._search import is_engine_key

    # the job's own config (what prepare() types next: typed once, see typed_settings)
    settings = typed_settings(plain_config(cfg))
    space = settings.search.space or {}
    cls = build_strategy(settings.strategy, settings.allowed_modules)[0]
    names = param_names(cls)
    engine = [f"engine.{k}" for k in (*ENGINE_KEYS, *_exits.STOP_FIELDS)]
    for key, values in space.items():
        if key in names or is_engine_key(key):
            continue
        word = str(key)  # +search.space.engine.stop_los=[...] nests: compare the whole path
        while isinstance(values, Mapping) and len(values) == 1:
            sub, values = next(iter(values.items()))
            word = f"{word}.{sub}"
        close = difflib.get_close_matches(word, [*names, *engine], n=1, cutoff=0.6)
        mean = f": did you mean search.space.{close[0]}?" if close else ""
        raise ConfigError(
            f"search.space.{key} is not a parameter of {cls.__name__}{mean} "
            f"(its parameters: {', '.join(names)}; or engine.<option>)",
            key=f"search.space.{key}",
        )


def run(cfg: DictConfig) -> float | None:
    """Run the composed config and return its objective (for sweepers).

    The task is ``walkforward`` when ``walkforward`` is set, ``search`` when
    ``search.method`` is not ``none``, ``montecarlo`` for a backtest with a
    ``montecarlo`` section, otherwise ``backtest``. Settings, conflicts, the strategy
    and the data are checked before anything runs: a bad config or bad data raises
    and leaves no run directory and no MLflow run behind. Secrets in URLs are masked
    in every file, log line and MLflow entry (:mod:`backtest.masking`).
    """
    use_structlog()  # only when structlog is installed
    mask_logs()
    cfg = flat_space(switch_off(cfg, _task_overrides()))
    with contextlib.suppress(OmegaConfBaseException):  # the job record reports the key
        remember_config(OmegaConf.to_container(cfg, resolve=True))
    run_dir = run_dir_for(cfg)
    mask_files(_hydra_files(run_dir))
    cfg = _paths_as_typed(cfg)
    job = BacktestJob.from_config(cfg, result_path=str(run_dir))
    try:
        if job.task in ("search", "walkforward"):
            check_space_keys(cfg)
        ctx = prepare(job, run_dir, progress=True)
    except BacktestError:
        _remove_untouched(run_dir, keep_parents=bool(cfg.get("output_dir")))
        raise
    log.info(kv("run started", task=job.task, job_id=job.job_id, run_dir=run_dir))
    from backtest.tracking._background import mirrors_after

    with mirrors_after():  # the summary prints while the result is mirrored to MLflow
        execute_job(job, progress=True, ctx=ctx)
        record = load_result(run_dir).record
        if cfg.get("summary", True):
            print(format_summary(record))
            print(f"result written to {run_dir}")
            report = run_dir / results.REPORT_FILE
            if report.is_file():
                print(f"report: {report}")
    objective = record.get("objective")
    return None if objective is None else float(objective)
