"""The ``report`` command: (re)build the report of run directories, or compare them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backtest import results
from backtest.errors import BacktestError, ResultCorrupt

COMPARISON_FILE = "comparison.html"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="report",
        description=(
            "Build the HTML report of a run directory (report.html in it), of a sweep "
            "directory (report.html comparing its jobs), or with several run directories "
            "a comparison page (metrics side by side, equity overlaid)."
        ),
    )
    parser.add_argument("paths", nargs="+", type=Path, help="run or sweep directories")
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        default=None,
        help=f"comparison page to write (default: ./{COMPARISON_FILE})",
    )
    return parser


def _is_sweep(path: Path) -> bool:
    return not results.has_result(path) and any(
        results.has_result(p) for p in path.iterdir() if p.is_dir()
    )


def _skip(error: ResultCorrupt) -> None:
    print(f"report: skipped: {error}", file=sys.stderr)


def _corrupt_jobs(sweep_dir: Path) -> list[ResultCorrupt]:
    """The jobs of a sweep whose results cannot be read (the sweep page lists them too)."""
    found: list[ResultCorrupt] = []
    for run_dir in results.find_results(sweep_dir):
        try:
            results.load_result(run_dir)
        except ResultCorrupt as exc:
            found.append(exc)
        except BacktestError:
            pass  # incomplete: the sweep page lists it as failed
    return found


def main(argv: list[str] | None = None) -> int:
    """Command line: ``report PATH...``; prints the path of each page written.

    One run directory: (re)build its ``report.html``. One sweep directory (job folders
    with results, no result of its own): its comparison of jobs; a job whose result is
    corrupt (:class:`~backtest.errors.ResultCorrupt`) is named on stderr and in the
    page's jobs table, and the page shows the others. Several run directories: a
    comparison page (``--out``, default ``./comparison.html``) of those that can be
    read, each other one named on stderr.

    Returns:
        0 on success; 1 when a page was written but runs were skipped as corrupt; 2 when
        a path is not a complete run or sweep directory, or nothing could be read.
    """
    from backtest.report._build import build_report
    from backtest.report._compare import build_comparison, build_sweep_report

    args = _parser().parse_args(argv)
    for path in args.paths:
        if not path.is_dir() or not (results.has_result(path) or _is_sweep(path)):
            print(
                f"report: {str(path)!r} is not a run directory (no {results.RESULT_FILE}) "
                "nor a sweep directory; pass the folder a run or a multirun wrote",
                file=sys.stderr,
            )
            return 2
    skipped: list[ResultCorrupt] = []
    try:
        if len(args.paths) == 1:
            path = args.paths[0]
            if _is_sweep(path):
                written = build_sweep_report(path)
                skipped = _corrupt_jobs(path)
            else:
                written = build_report(path)
        else:
            good = []
            for path in args.paths:
                try:
                    results.load_result(path)
                    good.append(path)
                except ResultCorrupt as exc:
                    skipped.append(exc)
            if not good:
                for exc in skipped:
                    _skip(exc)
                print("report: no run could be read; nothing written", file=sys.stderr)
                return 2
            written = build_comparison(good, args.out or Path(COMPARISON_FILE))
    except BacktestError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    for exc in skipped:
        _skip(exc)
    print(written)
    return 1 if skipped else 0
