"""What ``engine.benchmark`` costs a backtest, and the rebalanced equal weight against bt.

Run from the repository root: ``python benchmarks/benchmark_kinds.py``. Prints, for a
2,520-bar x 40-asset panel with late listings, early delistings and an index exit, the
best-of-5 time of a single backtest (monthly top-10 momentum) without a benchmark and with
each kind (the ratio is the overhead), the time of the benchmark alone, and
``equal_weight_rebalanced`` (monthly) against bt 1.4.1's
``RunMonthly/SelectWhere/WeighEqually/Rebalance`` on the same panel (ratio and the largest
difference of the two equity curves). Timings, not assertions: the machine is shared.
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backtest.data import Bars, synthetic_prices
from backtest.engine import simulate
from backtest.engine._benchmark import benchmark_returns
from backtest.strategies import CrossSectionalMomentum


def best(fn, repeats: int = 5) -> float:  # type: ignore[no-untyped-def]
    """Best wall time of ``repeats`` calls, in seconds."""
    out = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - t)
    return out


def panel() -> Bars:
    """40 assets, 2,520 bars: 6 list late, 3 delist early, one leaves the index while priced."""
    close = synthetic_prices(2520, 40, seed=11)
    for j in range(6):
        close.iloc[: 100 + 150 * j, j] = np.nan
    for j in range(6, 9):
        close.iloc[1500 + 200 * (j - 6) :, j] = np.nan
    tradable = close.notna()
    tradable.iloc[2000:, 9] = False
    return Bars(close=close, tradable=tradable)


def bt_equal_weight(bars: Bars) -> pd.Series:
    """bt's monthly equal weight of the tradable names (a leaver frozen at its last close)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import bt

        tradable = bars.tradable if bars.tradable is not None else bars.close.notna()
        frozen = bars.close.where(tradable).ffill().bfill()
        algos = [bt.algos.RunMonthly(), bt.algos.SelectWhere(tradable),
                 bt.algos.WeighEqually(), bt.algos.Rebalance()]  # fmt: skip
        test = bt.Backtest(bt.Strategy("ew", algos), frozen, integer_positions=False,
                           initial_capital=1e6, progress_bar=False)  # fmt: skip
        return bt.run(test).prices.iloc[:, 0] / 100.0


def main() -> None:
    """Print the table."""
    bars = panel()
    strategy = CrossSectionalMomentum(lookback=126, skip=21, top_n=10)
    opts = {"rebalance": "M", "fee_bps": 5.0, "check_lookahead": False}
    with tempfile.TemporaryDirectory() as d:
        index_file = Path(d) / "index.csv"
        col = bars.close.iloc[:, 20]
        col.rename("close").to_csv(index_file, index_label="date")
        kinds = [None, str(bars.close.columns[20]), "equal_weight", "equal_weight_rebalanced",
                 str(index_file)]  # fmt: skip
        simulate(bars, strategy, **opts)  # compile
        base = best(lambda: simulate(bars, strategy, **opts))
        print(f"{'benchmark':<26}{'backtest s':>12}{'ratio':>8}{'benchmark alone s':>19}")
        for kind in kinds:
            if kind is None:
                print(f"{'none':<26}{base:>12.4f}{1.0:>8.2f}{'-':>19}")
                continue
            took = best(lambda k=kind: simulate(bars, strategy, benchmark=k, **opts))
            alone = best(lambda k=kind: benchmark_returns(bars, k, rebalance="M"))
            name = "file (date, close)" if kind.endswith(".csv") else kind
            print(f"{name:<26}{took:>12.4f}{took / base:>8.2f}{alone:>19.4f}")
    ours_s = best(lambda: benchmark_returns(bars, "equal_weight_rebalanced", rebalance="M"))
    theirs_s = best(lambda: bt_equal_weight(bars), repeats=1)
    ours = (1.0 + benchmark_returns(bars, "equal_weight_rebalanced", rebalance="M")).cumprod()
    diff = float(np.max(np.abs(ours.to_numpy() - bt_equal_weight(bars).reindex(ours.index))))
    print(
        f"\nequal_weight_rebalanced (M) vs bt 1.4.1: ours {ours_s:.4f} s, bt {theirs_s:.2f} s, "
        f"{theirs_s / ours_s:.0f}x; max |equity diff| {diff:.1e}"
    )


if __name__ == "__main__":
    main()
