"""Running a job: config -> typed settings -> data -> strategy -> task -> files -> tracking.

Each task lives in its own module with ``run(ctx: TaskContext) -> TaskOutput``:
``_backtest`` (one backtest), ``_search``, ``_walkforward`` and ``_montecarlo``. This
module does what they share: resolve settings, load and fingerprint data, check the
strategy target, make the run idempotent, write the result atomically, mirror it to
MLflow.
"""

from __future__ import annotations

import copy
import importlib
import logging
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from backtest import results
from backtest.config import RootConfig, TrackingConfig
from backtest.engine import BacktestResult
from backtest.errors import BacktestError, ConfigError
from backtest.tasks._context import TaskContext, TaskOutput
from backtest.tasks._jobs import BacktestJob, now_iso
from backtest.tasks._logs import kv

__all__ = [
    "TaskContext",
    "TaskOutput",
    "execute_job",
    "load_backtest",
    "prepare",
    "run_backtest",
    "typed_settings",
]

log = logging.getLogger("backtest.tasks")

_TASK_MODULES = {
    "backtest": "backtest.tasks._backtest",
    "search": "backtest.tasks._search",
    "walkforward": "backtest.tasks._walkforward",
    "montecarlo": "backtest.tasks._montecarlo",
}
# tasks whose configured strategy is checked for look-ahead in prepare()
_CHECKED_TASKS = ("backtest", "search", "walkforward")


def package_version() -> str:
    """The installed version of ``backtest``."""
    from backtest import __version__

    return __version__


def typed_settings(config: Mapping[str, Any]) -> RootConfig:
    """Validate a plain config against the schemas and return typed dataclasses.

    The settings of the last plain config are kept: a run types its job's config
    twice (:func:`backtest.app.check_space_keys`, then :func:`prepare`), and a merge
    into the schemas is most of a tenth of a second. Each call gets its own copy. A
    ``DictConfig`` is typed each time (its structured nodes stay dataclasses).

    Raises:
        ConfigError: an unknown key, a wrong type or a missing value; names the key.
    """
    global _last_settings
    key = _settings_key(config)
    if key is None:
        return _typed_settings(config)
    last = _last_settings
    if last is not None and last[0] == key:
        return copy.deepcopy(last[1])
    settings = _typed_settings(config)  # an error is raised, and nothing kept
    _last_settings = (key, copy.deepcopy(settings))
    return settings


# (canonical JSON of a plain config, its settings): the plain config typed last
_last_settings: tuple[str, RootConfig] | None = None


def _settings_key(config: Mapping[str, Any]) -> str | None:
    """The canonical JSON of a plain config; None where it is no plain config.

    None for a ``DictConfig``, for anything holding other than strings, numbers,
    booleans, None, lists and string-keyed dicts, and for a ``${...}`` in a string
    (OmegaConf resolves it when typing the settings, perhaps differently each time).
    """
    import json

    if not isinstance(config, dict) or not _is_plain(config):
        return None
    try:
        text = json.dumps(config, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        return None
    return None if "${" in text else text


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, list):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):  # str keys only: JSON would write 1 and "1" alike
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _typed_settings(config: Mapping[str, Any]) -> RootConfig:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        merged = OmegaConf.merge(OmegaConf.structured(RootConfig), dict(config))
        settings = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        msg = str(exc).splitlines()[0]
        raise ConfigError(f"invalid config at {key!r}: {msg}", key=key) from exc
    assert isinstance(settings, RootConfig)
    return settings


def prepare(job: BacktestJob, run_dir: Path | None = None, progress: bool = False) -> TaskContext:
    """Validate a job before anything runs: settings, sizes, conflicts, strategy, data.

    Nothing is written and nothing is logged to MLflow, so a bad config or bad data
    fails with one clear error and leaves no trace.

    Raises:
        ConfigError: a bad or conflicting setting (names the keys).
        DataValidationError: the prices fail validation (names the column and the fix),
            or the engine's options need data the file lacks (opens, highs, a symbol).
        StrategyContractError: the strategy looks ahead (``engine.check_lookahead``).
    """
    from backtest.config._conflicts import check_conflicts
    from backtest.data import data_fingerprint, load_bars
    from backtest.engine import check_engine_config
    from backtest.strategies._loader import build_strategy
    from backtest.tasks import _ahead
    from backtest.tasks._bounds import check_sizes, check_windows

    if run_dir is None:
        run_dir = Path(job.result_path) if job.result_path else job.default_result_path()
    check_conflicts(job.config)
    settings = typed_settings(job.config)
    check_sizes(settings)  # a named error with the memory estimate, before any work
    # a cold kernel cache: a second process compiles the kernels the run needs later
    _ahead.start(job, run_dir, settings)
    cls, params, _ = build_strategy(settings.strategy, settings.allowed_modules)
    if job.task in ("search", "walkforward") and not settings.search.space:
        name = next(iter(params), "fast")
        raise ConfigError(
            f"a {job.task} needs a search space but search.space is empty: list the strategy "
            f"parameters to search, on the command line e.g. '+search.space.{name}=[5,10,20]'",
            key="search.space",
        )
    if job.task in ("search", "walkforward"):  # engine.X searched for a strategy owning X
        from backtest.engine._declared import check_searched_keys

        check_searched_keys(cls, settings.search.space)
    bars = load_bars(settings.data)
    prices = bars.close
    if settings.montecarlo is not None:  # a universe that changes: not every method applies
        from backtest.montecarlo._strategy import check_full_panel

        check_full_panel(settings.montecarlo.method, prices)
    check_windows(settings, job.task, cls(**params), prices.index)
    # the engine's options checked against the data before anything runs; an unset
    # periods_per_year becomes the figure inferred from the index, for every task
    settings.engine.periods_per_year = check_engine_config(settings.engine, bars)
    ctx = TaskContext(
        job=job,
        settings=settings,
        bars=bars,
        prices=prices,
        strategy_cls=cls,
        strategy_params=params,
        run_dir=run_dir,
        data_fingerprint=data_fingerprint(bars),  # with the membership and actions, if any
        progress=progress,
    )
    if job.task in _CHECKED_TASKS:  # the look-ahead check, before any run dir or MLflow run
        try:
            with _sigterm_raises():
                ctx.check_strategy(cls(**params))
        except BacktestError:
            raise  # the strategy breaks its contract: a validation error, no trace
        except BaseException as exc:  # its own code failed or was interrupted: as in a run
            _track_failure(job, run_dir, exc)
            raise
    return ctx


def load_backtest(run_dir: str | Path) -> BacktestResult:
    """Read the headline backtest of a complete run directory back into memory.

    Raises:
        ResultPathMissing: no complete result at ``run_dir``.
    """
    stored = results.load_result(run_dir)
    equity = stored.table("equity")
    positions = stored.table("positions") if "positions" in stored.tables else pd.DataFrame()
    trades = stored.table("trades") if "trades" in stored.tables else pd.DataFrame()
    return BacktestResult(
        returns=equity["returns"],
        equity=equity["equity"],
        positions=positions,
        trades=trades,
        metrics={k: (float("nan") if v is None else v) for k, v in stored.metrics.items()},
        params=dict(stored.record.get("params", {})),
        run_dir=str(stored.path),
        costs=stored.table("costs") if "costs" in stored.tables else None,
        benchmark=equity["benchmark"] if "benchmark" in equity.columns else None,
        benchmark_metrics=dict(stored.record.get("benchmark_metrics", {})),
        periods_per_year=stored.record.get("periods_per_year"),
        initial_capital=(stored.record.get("capital") or {}).get("initial_capital"),
    )


def run_task(ctx: TaskContext) -> TaskOutput:
    """Run the job's task, then Monte Carlo on its result when configured."""
    module = importlib.import_module(_TASK_MODULES[ctx.job.task])
    output: TaskOutput = module.run(ctx)
    if ctx.settings.montecarlo is not None and ctx.job.task != "montecarlo":
        from backtest.tasks import _montecarlo

        output = _montecarlo.attach(ctx, output)
    return output


def _headline_params(params: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The headline backtest's parameters, with the engine keys a search chose for it.

    A searched ``engine.stop_loss`` shapes the headline as much as ``fast`` does, so it is
    named beside them (``params`` of ``result.json``, the summary, MLflow).
    """
    best = (record.get("search") or {}).get("best_params") or {}
    return {**params, **{k: v for k, v in best.items() if str(k).startswith("engine.")}}


def _record(ctx: TaskContext, output: TaskOutput, started_at: str) -> dict[str, Any]:
    from backtest.engine._exits import exit_reason_counts
    from backtest.tracking._log import git_commit  # a subprocess call; no MLflow import

    bt = output.backtest
    exits = exit_reason_counts(bt.trades)
    summary = [*output.summary]
    if exits:  # how the headline backtest's trades ended (signal, stop_loss, ...)
        summary.append(("exits", ", ".join(f"{k} {v}" for k, v in exits.items())))
    return {
        "task": ctx.job.task,
        "job_id": ctx.job.job_id,
        "name": ctx.settings.name,
        "params": _headline_params(bt.params, output.record),
        "metrics": bt.metrics,
        "objective": output.objective,
        "seed": ctx.settings.seed,
        "config_hash": ctx.job.config_hash,
        "data_fingerprint": ctx.data_fingerprint,
        "n_bars": len(ctx.prices),
        "symbols": [str(c) for c in ctx.prices.columns],
        "periods_per_year": ctx.settings.engine.periods_per_year,
        "start": str(ctx.prices.index[0].date()),
        "end": str(ctx.prices.index[-1].date()),
        "version": package_version(),
        "git_commit": git_commit(),
        "started_at": started_at,
        "ended_at": now_iso(),
        "summary": [list(row) for row in summary],
        "exit_reasons": exits,
        **({"benchmark_metrics": bt.benchmark_metrics} if bt.benchmark_metrics else {}),
        **({"benchmark_name": str(ctx.settings.engine.benchmark)} if bt.benchmark_metrics else {}),
        **_capital(ctx, bt),
        **output.record,
    }


def _capital(ctx: TaskContext, bt: BacktestResult) -> dict[str, Any]:
    """The headline in currency (``capital``) when ``engine.initial_capital`` is set."""
    from backtest.results._summary import capital_section

    section = capital_section(bt.equity.to_numpy(), ctx.settings.engine.initial_capital)
    return {"capital": section} if section else {}


def run_backtest(job_or_config: Any, *, progress: bool = False) -> BacktestResult:
    """Run any task end to end and write its result; idempotent.

    Args:
        job_or_config: A :class:`~backtest.tasks._jobs.BacktestJob`, a composed ``DictConfig``
            or a plain mapping.
        progress: Show progress bars.

    Returns:
        The headline :class:`~backtest.engine.BacktestResult` (for a search, the best
        parameters' backtest; for a walk-forward, the stitched out-of-sample one), with
        ``run_dir`` set. If a complete result for the same job and config already
        exists in the result path, it is read back instead of recomputed.
    """
    job = (
        job_or_config
        if isinstance(job_or_config, BacktestJob)
        else BacktestJob.from_config(job_or_config)
    )
    return execute_job(job, progress=progress)


def execute_job(
    job: BacktestJob, *, progress: bool = False, ctx: TaskContext | None = None
) -> BacktestResult:
    """Run a job and write its result; return the stored one if it is already complete.

    The job is validated first (:func:`prepare`, or pass its ``ctx``); a validation error
    leaves no run directory and no MLflow run. A failure while the task runs is logged
    to MLflow as a ``FAILED`` (or, interrupted, ``KILLED``) run; so is a full disk while
    the result is written, which leaves no ``result.json`` and no partial file.

    Raises:
        BacktestError: the run directory already holds a result of another config
            (nothing is overwritten).
        DiskFull: the disk filled up (names the folder, the file and the space needed).
    """
    run_dir = Path(job.result_path) if job.result_path else job.default_result_path()
    if results.has_result(run_dir) and (missing := results.incomplete_reason(run_dir)):
        log.warning(kv("incomplete result computed again", reason=missing, run_dir=run_dir))
        (run_dir / results.RESULT_FILE).unlink(missing_ok=True)  # never served half
    if results.has_result(run_dir):
        record = results.load_result(run_dir, job_id=job.job_id).record
        if record.get("config_hash") == job.config_hash:
            log.info(
                kv("result already complete; not recomputed", job_id=job.job_id, run_dir=run_dir)
            )
            tracking_cfg = typed_settings(job.config).tracking
            if tracking_cfg.enabled:  # a retry after a crash mid-mirror logs it now, once
                _track(tracking_cfg, run_dir, None)
            return load_backtest(run_dir)
        raise BacktestError(
            f"run directory {str(run_dir)!r} already holds the result of another config "
            f"(hash {str(record.get('config_hash'))[:12]}); choose another output_dir"
        )
    started_at = now_iso()
    if ctx is None:
        ctx = prepare(job, run_dir, progress)
    try:
        with _sigterm_raises():
            output = run_task(ctx)
    except BaseException as exc:
        full = results.full_disk(exc, run_dir)  # a task's own figure or table did not fit
        _track_failure(job, run_dir, full or exc)
        if full is not None and full is not exc:
            raise full from exc
        raise
    try:
        return _write_run(job, ctx, output, run_dir, started_at)
    except BaseException as exc:
        full = results.full_disk(exc, run_dir)
        if full is None:
            raise
        # refused for a full disk: no result.json (every other file was written whole, or
        # its temporary file removed), the MLflow run FAILED with the same one line
        (run_dir / results.RESULT_FILE).unlink(missing_ok=True)
        _track_failure(job, run_dir, full)
        if full is exc:
            raise
        raise full from exc


def _write_run(
    job: BacktestJob, ctx: TaskContext, output: TaskOutput, run_dir: Path, started_at: str
) -> BacktestResult:
    """Write a finished task's figures, tables, ``result.json`` and report; mirror it."""
    bt = output.backtest
    if ctx.settings.draws_figures():
        from backtest.report import _png as plots

        plots.equity_figure(bt, results.figures_dir(run_dir) / "equity.png")
    from backtest.report._performance import equity_frame  # in currency with a capital

    capital = ctx.settings.engine.initial_capital
    equity = equity_frame(bt.returns, bt.equity, bt.benchmark, capital=capital)
    tables = {
        "equity": equity,
        "positions": bt.positions,
        "trades": bt.trades,
        **({results.COSTS_FILE.removesuffix(".parquet"): bt.costs} if bt.costs is not None else {}),
        **output.tables,
    }
    if ctx.settings.report:
        tables[results.PRICES_TABLE] = results.price_table(ctx.prices, bt.trades)
    from omegaconf import OmegaConf

    record = _record(ctx, output, started_at)
    results.write_result(run_dir, record, tables=tables, config_yaml=OmegaConf.to_yaml(job.config))
    log.info(kv("result written", task=job.task, job_id=job.job_id, run_dir=run_dir))
    if ctx.settings.report:
        _report(run_dir)
    if ctx.settings.tracking.enabled:
        _track(ctx.settings.tracking, run_dir, output.children)
    return replace(bt, run_dir=str(run_dir))


def _report(run_dir: Path) -> None:
    """Write the HTML report; a failure warns and loses nothing (the result is complete)."""
    try:
        from backtest.report import build_report

        build_report(run_dir)
    except Exception as exc:
        if results.full_disk(exc, run_dir) is not None:
            raise  # the run is refused (execute_job): a full disk is no missing report
        log.warning(
            "report.html not written (%s: %s); rebuild it with: python -m backtest.report %s",
            type(exc).__name__,
            exc,
            run_dir,
        )


def _track(
    tracking_cfg: TrackingConfig, run_dir: Path, children: list[dict[str, Any]] | None
) -> None:
    """Mirror the written result to MLflow once; a failure warns and loses nothing on disk.

    Inside ``backtest.tracking.mirrors_after()`` (the ``backtest`` command) the mirror
    runs in the background while the summary prints; otherwise before this returns.
    """
    try:
        from backtest.tracking._background import mirror_soon
    except ImportError:  # tracking module not present
        return

    def failed(exc: Exception) -> None:
        log.warning(
            "MLflow tracking failed (%s); the result is complete in %s and can be "
            "logged later with: python -m backtest.sync %s",
            exc,
            run_dir,
            run_dir,
        )

    mirror_soon(run_dir, tracking_cfg, children, on_error=failed)


def _track_failure(job: BacktestJob, run_dir: Path, exc: BaseException) -> None:
    """Log a failed (``FAILED``) or interrupted (``KILLED``) job as an ended MLflow run."""
    try:
        from backtest import tracking

        tracking.log_failure(job, exc, run_dir=run_dir)
    except Exception as track_exc:
        log.warning("MLflow tracking of the failed job %s failed (%s)", job.job_id, track_exc)


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit(143)`` while a task runs, so it ends ``KILLED``.

    Only in the main thread and only when SIGTERM has its default handler (an RQ
    work horse, a plain CLI run); an application's own handler is left alone.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
