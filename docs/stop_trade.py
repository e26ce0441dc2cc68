"""Draw docs/stop_trade.png: one SMA-cross trade on the sample data closed by its trailing stop.

Run: python docs/stop_trade.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backtest.config import DataConfig, DataSource  # noqa: E402
from backtest.data import Bars, load_bars  # noqa: E402
from backtest.engine import simulate  # noqa: E402
from backtest.strategies import SmaCross  # noqa: E402

TRAIL = 0.04


def main(out: Path = ROOT / "docs" / "stop_trade.png") -> Path:
    """Backtest, pick the first trailing-stop exit held 12+ bars, draw it; return the path."""
    sample = load_bars(DataConfig(source=DataSource.sample))
    sym = "NASDAQ"
    bars = Bars(
        close=sample.close[[sym]],
        open=sample.open[[sym]],
        high=sample.high[[sym]],
        low=sample.low[[sym]],
    )
    res = simulate(bars, SmaCross(10, 40), stop_loss=0.03, trailing_stop=TRAIL)
    trades = res.trades
    trade = trades[(trades["exit_reason"] == "trailing_stop") & (trades["bars_held"] >= 12)].iloc[0]
    index = bars.index
    t0, t1 = index.get_loc(trade["entry_time"]), index.get_loc(trade["exit_time"])
    lo, hi = max(t0 - 8, 0), min(t1 + 8, len(index) - 1)
    x = np.arange(lo, hi + 1)
    h = bars.high[sym].to_numpy()
    low = bars.low[sym].to_numpy()
    c = bars.close[sym].to_numpy()
    # the trailing level in force on each held bar: highest high of the bars before it
    peak = trade["entry_price"]
    level_x, level_y = [], []
    for t in range(t0 + 1, t1 + 1):
        level_x.append(t)
        level_y.append(max(peak * (1 - TRAIL), trade["entry_price"] * (1 - 0.03)))
        peak = max(peak, h[t])
    fig, ax = plt.subplots(figsize=(6.4, 3.4), dpi=90)
    ax.vlines(x, low[lo : hi + 1], h[lo : hi + 1], color="0.6", lw=1.2, label="high-low")
    ax.plot(x, c[lo : hi + 1], color="0.2", lw=1.0, label="close")
    ax.step(level_x, level_y, where="mid", color="tab:red", lw=1.2, label="stop level")
    ax.scatter([t0], [trade["entry_price"]], marker="^", color="tab:green", zorder=3,
               label="entry (close)")  # fmt: skip
    ax.scatter([t1], [trade["exit_price"]], marker="v", color="tab:red", zorder=3,
               label=f"exit: trailing_stop @ {trade['exit_price']:.0f}")  # fmt: skip
    ticks = x[:: max(1, len(x) // 6)]
    ax.set_xticks(ticks, [index[t].strftime("%Y-%m-%d") for t in ticks], fontsize=7)
    ax.set_ylabel(f"{sym} (index points)")
    ax.set_title(
        f"SMA(10/40) long, stop_loss 3%, trailing_stop {TRAIL:.0%}: return {trade['return']:+.1%}",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(main())
