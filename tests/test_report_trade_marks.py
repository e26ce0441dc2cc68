"""The report's trade marks say how each trade was entered and left (issue 26, item 5).

A real run with stop entry orders writes its report; the marks' hover texts are read back
from the page's figure JSON and compared, trade by trade, with ``trades.parquet``: the
order type, the date of the bar that decided the order, the date of the bar it filled in,
and the exit reason with its date. Exits by a session end are rule exits (crosses).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from backtest import results
from backtest.report import build_report
from tests.test_report import _run, figures, read_page

ENTRY = {"entry", "entries"}  # the price panel's and the equity curve's entry traces
EXIT = {"exit", "stop exit", "exits", "rule exits"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(
        tmp_path_factory.mktemp("orders") / "run",
        "data=sample",
        "engine.execution=next_open",
        "engine.entry_order=stop",
        "engine.entry_offset=0.005",
        "engine.entry_valid_bars=5",
        "engine.stop_loss=0.05",
    )


def _day(value: Any) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%d")


def _expected(row: pd.Series, what: str) -> list[str]:
    """The three hover lines of one trade's mark, from its row of ``trades.parquet``."""
    side = "long" if row["direction"] > 0 else "short"
    exit_line = (
        "open at the end"
        if row["is_open"]
        else f"exit {row['exit_reason']} {_day(row['exit_time'])}"
    )
    return [
        f"{row['asset']} {side} {what}",
        f"{row['order_type']} order decided {_day(row['decision_time'])}, "
        f"filled {_day(row['entry_time'])}",
        exit_line,
    ]


def _marks(page_path: Path, names: set[str]) -> list[dict[str, Any]]:
    return [t for f in figures(read_page(page_path)) for t in f["data"] if t.get("name") in names]


def test_each_mark_shows_its_order_type_decision_and_fill_dates_and_exit_reason(
    run_dir: Path,
) -> None:
    trades = pd.read_parquet(run_dir / "trades.parquet")
    assert set(trades["order_type"]) == {"stop"}
    later = trades["entry_time"] > trades["decision_time"]  # a stop order fills on a later bar
    assert bool(later.all()) and len(trades) > 5
    page = run_dir / results.REPORT_FILE
    expected: dict[tuple[str, str], list[list[str]]] = {}
    for _, row in trades.iterrows():  # plain loop over the table the run wrote
        expected.setdefault(("entry", _day(row["entry_time"])), []).append(_expected(row, "entry"))
        if not row["is_open"]:
            expected.setdefault(("exit", _day(row["exit_time"])), []).append(_expected(row, "exit"))
    seen = {"entry": 0, "exit": 0}
    for names, what in ((ENTRY, "entry"), (EXIT, "exit")):
        for trace in _marks(page, names):
            assert trace["hovertemplate"].startswith("%{text}")
            for x, text in zip(trace["x"], trace["text"], strict=True):
                lines = text.split("<br>")
                assert lines in expected[(what, x[:10])], (x, text)
                seen[what] += 1
    closed = int((~trades["is_open"]).sum())
    # every trade on the equity curve and again on its asset's price panel (<= 6 assets)
    panel = trades["asset"].isin(trades["asset"].value_counts().index[:6])
    assert seen["entry"] == len(trades) + int(panel.sum())
    assert seen["exit"] == closed + int((panel & ~trades["is_open"]).sum())


def test_a_session_end_exit_is_marked_as_a_rule_exit(run_dir: Path, tmp_path: Path) -> None:
    dst = tmp_path / "copy"
    shutil.copytree(run_dir, dst)
    (dst / results.REPORT_FILE).unlink()
    trades = pd.read_parquet(dst / "trades.parquet")
    closed = trades.index[~trades["is_open"]]
    trades.loc[closed[::2], "exit_reason"] = "session_end"
    trades.loc[closed[1::2], "exit_reason"] = "signal"
    results.write_table(dst, "trades", trades)
    page = build_report(dst)
    crosses = [text for t in _marks(page, {"stop exit", "rule exits"}) for text in t["text"]]
    triangles = [text for t in _marks(page, {"exit", "exits"}) for text in t["text"]]
    assert crosses and all(" session_end " in text for text in crosses)
    assert triangles and all(" signal " in text for text in triangles)
