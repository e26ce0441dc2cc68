"""Log every result on disk that is not yet in MLflow, exactly once.

Run directories are the record; MLflow is their mirror. When the tracking server
was down, the results are complete on disk, and::

    python -m backtest.sync outputs/
    python -m backtest.sync outputs/ --uri http://127.0.0.1:5000

Results of runs made with ``tracking=none`` are skipped (their owner chose not to
track them) unless ``--include-untracked`` asks for them too. A result that cannot be
read (a file cut short or garbled, a link out of its folder) is never logged: it is
named as failed and the others go on. A tracking server that does not answer, or a
sqlite store that SQLite cannot read, is tried once: its results are counted as left
for the next sync, in one line.

logs each of them to the tracking URI of its own config (``--uri`` overrides). Each
MLflow run carries the ``backtest.run_key`` tag of the result it mirrors, so running
the sync again, or after the live run did log, adds nothing. A mirror that was left
half-written (not ``FINISHED``) is deleted and logged again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from backtest import results
from backtest.config import TrackingConfig
from backtest.errors import BacktestError, ResultCorrupt, ResultPathMissing
from backtest.masking import mask_text, reveal

log = logging.getLogger("backtest.tracking._sync")

# Folders where MLflow keeps artifact copies (result.json included) of logged runs.
_ARTIFACT_STORES = frozenset({"mlartifacts", "mlruns"})


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What a sync did.

    Attributes:
        logged: Run directories logged now, with their new MLflow run ids.
        present: Run directories already mirrored by a finished run.
        failed: Run directories that could not be logged, with the reason (a corrupt
            result is one: :class:`~backtest.errors.ResultCorrupt`).
        untracked: Run directories made with ``tracking=none``, skipped.
        unreachable: Run directories left for the next sync because their tracking
            server did not answer (or their sqlite store is damaged), with its URI
            (masked).
        down: Each such URI (masked) and what is wrong with it.
    """

    logged: list[tuple[Path, str]] = field(default_factory=list)
    present: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    untracked: list[Path] = field(default_factory=list)
    unreachable: list[tuple[Path, str]] = field(default_factory=list)
    down: dict[str, str] = field(default_factory=dict)


INDEX_FILE = ".backtest-sync.json"
_UNTRACKED = "untracked:"  # index entry of a result made with tracking=none (skipped)


def _context(uri: str | None) -> str:
    """What decides where a result goes, besides its own files (the index is valid for it)."""
    return json.dumps([uri, os.environ.get("MLFLOW_TRACKING_URI"), str(Path.cwd())])


def _stamp(run_dir: Path) -> str:
    """A cheap fingerprint of a result's files: sizes and mtimes of ``result.json``/config."""
    parts = []
    for name in (results.RESULT_FILE, results.CONFIG_FILE):
        try:
            st = (run_dir / name).stat()
            parts.append(f"{st.st_size}:{st.st_mtime_ns}")
        except FileNotFoundError:
            parts.append("-")
    return "/".join(parts)


def _read_index(root: Path, context: str) -> dict[str, str]:
    """Run directory (relative to ``root``) -> stamp of the results known to be mirrored."""
    try:
        data = json.loads((root / INDEX_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("context") != context:
        return {}
    synced = data.get("synced")
    return synced if isinstance(synced, dict) else {}


def _write_index(root: Path, context: str, synced: dict[str, str]) -> None:
    """Atomically replace the index (a concurrent sync may win: entries are only hints)."""
    if root.is_dir():
        data = {"context": context, "synced": synced}
        results.atomic_write_bytes(root / INDEX_FILE, json.dumps(data).encode())


def sync(
    paths: str | Path | Sequence[str | Path],
    *,
    uri: str | None = None,
    dry_run: bool = False,
    use_index: bool = True,
    include_untracked: bool = False,
) -> SyncReport:
    """Log every complete result under ``paths`` that MLflow does not hold yet.

    Each result is mirrored under its run directory's lock (see
    :mod:`backtest.tracking._mirror`), so concurrent syncs, a retried job and a live
    run never log it twice, and a half-logged run left ``RUNNING`` by a killed process
    is closed (``KILLED``) before the result is logged again. Results found mirrored
    are remembered in ``<path>/.backtest-sync.json`` (by their files' sizes and
    mtimes), so a sync with nothing to do opens neither MLflow nor any result.

    Args:
        paths: Run directories or folders containing them (searched recursively).
        uri: Tracking URI for every result; each result's own ``tracking.uri`` when unset.
        dry_run: Only report what would be logged.
        use_index: Trust the index of results already mirrored (``False`` asks MLflow
            about every result, e.g. after the tracking store was replaced).
        include_untracked: Also log results of runs made with ``tracking=none``.

    Returns:
        The run directories logged, already present, failed and left because their
        server is down (each server is asked once per sync).

    Raises:
        ResultPathMissing: a path does not exist.
    """
    from backtest.tracking import _client

    roots = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    report = SyncReport()
    context = _context(uri)
    down: dict[str, str | None] = {}  # tracking URI -> what is wrong with it, this sync
    for root in roots:
        if not root.exists():
            raise ResultPathMissing(root)
        index = _read_index(root, context) if use_index else {}
        synced: dict[str, str] = {}
        for run_dir in results.find_results(root):
            if _ARTIFACT_STORES & set(run_dir.relative_to(root).parts):
                continue  # a copy inside MLflow's own artifact store, not a result
            rel, stamp = run_dir.relative_to(root).as_posix(), _stamp(run_dir)
            if index.get(rel) == stamp:
                report.present.append(run_dir)
                synced[rel] = stamp
                continue
            if not include_untracked and index.get(rel) == _UNTRACKED + stamp:
                report.untracked.append(run_dir)
                synced[rel] = _UNTRACKED + stamp
                continue
            try:
                results.load_result(run_dir)  # never log a corrupt result, nor follow a link
                cfg = _tracking(run_dir)
            except BacktestError as exc:
                report.failed.append((run_dir, str(exc)))
                continue
            if not include_untracked and not cfg.enabled:
                report.untracked.append(run_dir)
                synced[rel] = _UNTRACKED + stamp
                continue
            target = _client.resolve_uri(reveal(uri or cfg.uri))
            if target not in down:
                down[target] = _problem(target, cfg.timeout_s)
            if down[target] is not None:
                report.unreachable.append((run_dir, mask_text(target)))
                report.down[mask_text(target)] = str(down[target])
                continue
            try:
                done = _sync_one(run_dir, uri, dry_run)
            except Exception as exc:  # an MLflow error on one result must not stop the rest
                down[target] = _problem(target, cfg.timeout_s)  # gone away meanwhile?
                if down[target] is not None:
                    report.unreachable.append((run_dir, mask_text(target)))
                    report.down[mask_text(target)] = str(down[target])
                    continue
                reason = str(exc) if isinstance(exc, BacktestError) else None
                report.failed.append((run_dir, reason or f"{type(exc).__name__}: {exc}"))
                continue
            if done is None:
                report.present.append(run_dir)
                synced[rel] = stamp
            else:
                report.logged.append((run_dir, done))
                synced[rel] = "" if dry_run else stamp
        if not dry_run:
            _write_index(root, context, {k: v for k, v in synced.items() if v})
    return report


def _tracking(run_dir: Path) -> TrackingConfig:
    """The run's own ``tracking`` settings; a garbled ``config.yaml`` is :class:`ResultCorrupt`."""
    import yaml

    from backtest.tracking._log import read_config, tracking_config

    try:
        return tracking_config(read_config(run_dir))
    except (yaml.YAMLError, ValueError, TypeError, OSError) as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise ResultCorrupt(
            run_dir, results.CONFIG_FILE, f"cannot be read: {type(exc).__name__}: {first}"
        ) from exc


def _problem(target: str, timeout_s: float) -> str | None:
    """What keeps any result from reaching ``target``, else ``None``.

    A server that does not answer, or a sqlite store that SQLite cannot read (MLflow
    would retry opening it for about 100 s for each result, then fail).
    """
    from backtest.tracking import _client
    from backtest.tracking._compare import check_store
    from backtest.tracking._sqlite_runs import sqlite_path

    path = sqlite_path(target)
    try:
        if path is not None:
            check_store(path, target)
        else:
            _client.check_reachable(target, timeout_s)
    except BacktestError as exc:
        return str(exc) if path is not None else f"server unreachable at {mask_text(target)}"
    return None


def _sync_one(run_dir: Path, uri: str | None, dry_run: bool) -> str | None:
    """Mirror one result: ``None`` when already in MLflow, else the new run id."""
    from backtest.tracking import _client
    from backtest.tracking._log import read_config, tracking_config
    from backtest.tracking._mirror import mirror_result, runs_with_key

    cfg = tracking_config(read_config(run_dir))
    if dry_run:
        from backtest.tracking._flatten import run_key
        from backtest.tracking._ui import DEFAULT_EXPERIMENT

        record = results.load_result(run_dir).record
        target = _client.resolve_uri(reveal(uri or cfg.uri))
        experiment = cfg.experiment_name or str(record.get("name") or DEFAULT_EXPERIMENT)
        with _client.bounded_http(cfg.timeout_s):
            _client.check_reachable(target, cfg.timeout_s)
            with _client.connect(target) as client:
                found = runs_with_key(client, experiment, run_key(record))
        return None if any(status == "FINISHED" for _, status in found) else ""
    mirror = mirror_result(run_dir, cfg, uri=uri, infer_git=False)
    return mirror.run_id if mirror.logged else None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m backtest.sync PATH... [--uri URI] [--dry-run]``; exit 1 if any failed.

    A server that does not answer is one line (``server unreachable at URI: N results
    left for the next sync``) and exit status 1, however many results wait for it.
    """
    parser = argparse.ArgumentParser(
        prog="python -m backtest.sync",
        description="Log every result under PATH that is not yet in MLflow (exactly once).",
    )
    parser.add_argument("paths", nargs="+", help="run directories or folders such as outputs/")
    parser.add_argument("--uri", help="tracking URI (default: each result's tracking.uri)")
    parser.add_argument("--dry-run", action="store_true", help="only list what would be logged")
    parser.add_argument(
        "--full", action="store_true", help="ask MLflow about every result (ignore the index)"
    )
    parser.add_argument(
        "--include-untracked",
        action="store_true",
        help="also log results of runs made with tracking=none (skipped by default)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = sync(
            args.paths,
            uri=args.uri,
            dry_run=args.dry_run,
            use_index=not args.full,
            include_untracked=args.include_untracked,
        )
    except BacktestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verb = "would log" if args.dry_run else "logged"
    for run_dir, run_id in report.logged:
        print(f"{verb:<9} {run_dir}" + (f"  -> run {run_id}" if run_id else ""))
    for run_dir, reason in report.failed:
        print(f"failed    {run_dir}: {reason}", file=sys.stderr)
    left: dict[str, int] = {}
    for _, target in report.unreachable:
        left[target] = left.get(target, 0) + 1
    for target, count in left.items():
        waiting = f"{count} result{'s' if count > 1 else ''} left for the next sync"
        problem = report.down[target]
        if problem.startswith("server unreachable"):
            print(f"error: {problem}: {waiting} (start it, or pass --uri)", file=sys.stderr)
        else:
            print(f"error: {waiting}: {problem}", file=sys.stderr)
    if left and not (report.logged or report.present or report.failed or report.untracked):
        return 1
    print(
        f"{len(report.logged)} {verb}, {len(report.present)} already in MLflow, "
        f"{len(report.failed)} failed"
        + (
            f", {len(report.untracked)} made with tracking=none skipped (--include-untracked)"
            if report.untracked
            else ""
        )
    )
    return 1 if report.failed or report.unreachable else 0


if __name__ == "__main__":
    sys.exit(main())
