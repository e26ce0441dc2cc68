"""The ``report`` command: (re)build the report of run directories, or compare them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backtest import results
from backtest.errors import BacktestError

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


def main(argv: list[str] | None = None) -> int:
    """Command line: ``report PATH...``; prints the path of each page written.

    One run directory: (re)build its ``report.html``. One sweep directory (job folders
    with results, no result of its own): its comparison of jobs. Several run
    directories: a comparison page (``--out``, default ``./comparison.html``).

    Returns:
        0 on success, 2 when a path is not a complete run or sweep directory.
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
    try:
        if len(args.paths) == 1:
            path = args.paths[0]
            written = build_sweep_report(path) if _is_sweep(path) else build_report(path)
        else:
            written = build_comparison(args.paths, args.out or Path(COMPARISON_FILE))
    except BacktestError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    print(written)
    return 0
