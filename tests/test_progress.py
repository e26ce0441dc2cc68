"""Progress bars on a terminal only; one final line in a log (never a redrawn bar)."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
from backtest.data import synthetic_prices
from backtest.search import StrategyEvaluator, grid_search
from backtest.strategies import SmaCross
prices = synthetic_prices(n_bars=300, n_assets=1, seed=1)
grid_search({"fast": [2, 3, 4, 5], "slow": [20, 30]}, StrategyEvaluator(prices, SmaCross),
            progress=True)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "100", "PYTHONUNBUFFERED": "1"}


def test_off_a_terminal_the_work_is_one_log_line_and_no_bar(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, env=_env()
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "\r" not in proc.stderr and "%|" not in proc.stderr  # no bar redrawn into the log
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("backtest.progress ")]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert " 8 trials in " in lines[0]


def test_on_a_terminal_a_bar_is_drawn(tmp_path: Path) -> None:
    parent, child = pty.openpty()
    # a terminal 100 columns wide (a new pty is 0 x 0, where a bar has no room to draw)
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdin=child, stdout=child, stderr=child, env=_env()
    )
    os.close(child)
    out = b""
    while True:
        try:
            chunk = os.read(parent, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(300) == 0, out[-3000:]
    os.close(parent)
    text = out.decode(errors="replace")
    assert "%|" in text  # tqdm's bar
    assert "backtest.progress" not in text  # the bar replaces the log line
