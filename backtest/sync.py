"""Log every result on disk that is not yet in MLflow, exactly once.

Run directories are the record; MLflow is their mirror. When the tracking server
was down, the results are complete on disk, and::

    python -m backtest.sync outputs/
    python -m backtest.sync outputs/ --uri http://127.0.0.1:5000

Results of runs made with ``tracking=none`` are skipped (their owner chose not to
track them) unless ``--include-untracked`` asks for them too.

logs each of them to the tracking URI of its own config (``--uri`` overrides). Each
MLflow run carries the ``backtest.run_key`` tag of the result it mirrors, so running
the sync again, or after the live run did log, adds nothing. A mirror that was left
half-written (not ``FINISHED``) is deleted and logged again.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backtest import results
from backtest.errors import BacktestError, ResultPathMissing
from backtest.masking import reveal

log = logging.getLogger("backtest.sync")

# Folders where MLflow keeps artifact copies (result.json included) of logged runs.
_ARTIFACT_STORES = frozenset({"mlartifacts", "mlruns"})


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What a sync did.

    Attributes:
        logged: Run directories logged now, with their new MLflow run ids.
        present: Run directories already mirrored by a finished run.
        failed: Run directories that could not be logged, with the reason.
        untracked: Run directories made with ``tracking=none``, skipped.
    """

    logged: list[tuple[Path, str]] = field(default_factory=list)
    present: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    untracked: list[Path] = field(default_factory=list)


def _mirrors(client: Any, experiment: str) -> dict[str, list[tuple[str, str]]]:
    """Run key -> ``(run id, status)`` of the runs that carry it, in one query."""
    from backtest.tracking._client import search_all
    from backtest.tracking._flatten import RUN_KEY_TAG

    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    found: dict[str, list[tuple[str, str]]] = {}
    for run in search_all(client, [exp.experiment_id], f"tags.`{RUN_KEY_TAG}` LIKE '%'"):
        found.setdefault(run.data.tags[RUN_KEY_TAG], []).append((run.info.run_id, run.info.status))
    return found


def sync(
    paths: str | Path | Sequence[str | Path],
    *,
    uri: str | None = None,
    dry_run: bool = False,
    include_untracked: bool = False,
) -> SyncReport:
    """Log every complete result under ``paths`` that MLflow does not hold yet.

    Args:
        paths: Run directories or folders containing them (searched recursively).
        uri: Tracking URI for every result; each result's own ``tracking.uri`` when unset.
        dry_run: Only report what would be logged.
        include_untracked: Also log results of runs made with ``tracking=none``.

    Returns:
        The run directories logged, already present and failed.

    Raises:
        ResultPathMissing: a path does not exist.
    """
    from backtest.tracking import _client
    from backtest.tracking._flatten import run_key
    from backtest.tracking._log import (
        DEFAULT_EXPERIMENT,
        log_result,
        read_config,
        tracking_config,
    )

    roots = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    report = SyncReport()
    mirrors: dict[tuple[str, str], dict[str, list[tuple[str, str]]]] = {}
    for root in roots:
        if not root.exists():
            raise ResultPathMissing(root)
        for run_dir in results.find_results(root):
            if _ARTIFACT_STORES & set(run_dir.parts):
                continue  # a copy inside MLflow's own artifact store, not a result
            config = read_config(run_dir)
            cfg = tracking_config(config)
            if not cfg.enabled and not include_untracked:
                report.untracked.append(run_dir)
                continue
            record = results.load_result(run_dir).record
            target = _client.resolve_uri(reveal(uri or cfg.uri))
            experiment = cfg.experiment_name or str(record.get("name") or DEFAULT_EXPERIMENT)
            key = run_key(record)
            try:
                with _client.bounded_http(cfg.timeout_s):
                    _client.check_reachable(target, cfg.timeout_s)
                    client = _client.client_for(target)
                    known = mirrors.setdefault((target, experiment), _mirrors(client, experiment))
                    runs = known.get(key, [])
                    if any(status == "FINISHED" for _, status in runs):
                        report.present.append(run_dir)
                        continue
                    if dry_run:
                        report.logged.append((run_dir, ""))
                        continue
                    for stale_id, _ in runs:
                        log.info("deleting half-logged MLflow run %s of %s", stale_id, run_dir)
                        client.delete_run(stale_id)
                logged = log_result(run_dir, cfg, uri=target, infer_git=False)
            except BacktestError as exc:
                report.failed.append((run_dir, str(exc)))
                continue
            except Exception as exc:  # an MLflow error on one result must not stop the rest
                report.failed.append((run_dir, f"{type(exc).__name__}: {exc}"))
                continue
            known[key] = [(logged.run_id, "FINISHED")]
            report.logged.append((run_dir, logged.run_id))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m backtest.sync PATH... [--uri URI] [--dry-run]``; exit 1 if any failed."""
    parser = argparse.ArgumentParser(
        prog="python -m backtest.sync",
        description="Log every result under PATH that is not yet in MLflow (exactly once).",
    )
    parser.add_argument("paths", nargs="+", help="run directories or folders such as outputs/")
    parser.add_argument("--uri", help="tracking URI (default: each result's tracking.uri)")
    parser.add_argument("--dry-run", action="store_true", help="only list what would be logged")
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
    print(
        f"{len(report.logged)} {verb}, {len(report.present)} already in MLflow, "
        f"{len(report.failed)} failed"
        + (
            f", {len(report.untracked)} made with tracking=none skipped (--include-untracked)"
            if report.untracked
            else ""
        )
    )
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
