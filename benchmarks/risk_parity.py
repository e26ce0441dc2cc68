"""The example weights strategy's fast path against its plain positions path, one run.

Workload: ``examples/risk_parity`` (InverseVolatility: inverse-volatility risk parity,
``inputs = "bars"``, ``output = "weights"``, a compiled ``batch_weights``) on geometric
Brownian motion closes (seed 42, volatility 0.01 per bar), 2,520 bars x 6 and 20 assets,
1 bp fees and slippage, monthly rebalanced; grids of 9 or 81 lookbacks (10..250) x 4
powers (36 and 324 sets; the volatilities are shared by the sets of one lookback).

* fast path: a grid search over a :class:`~backtest.search.StrategyEvaluator` (what
  the command line runs: ``batch_weights`` once, then the engine's per-bar kernel per
  set);
* plain path: the same grid search of a subclass that only redefines ``positions``
  (so it has no fast path of its own): one ``positions`` call and backtest per set.

Both searches include the same checks (look-ahead, the fast path against ``positions``
on 8 sets, the best set against ``simulate``); each is timed after one warm-up search.
Prints sets per second of each and their ratio, and the line the search logs on its
first batch (the batch alone against ``positions`` per set, measured by the search).

Run: python benchmarks/risk_parity.py
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "risk_parity"))

from risk_parity_strategy import InverseVolatility  # noqa: E402

from backtest.data import Bars  # noqa: E402
from backtest.search import StrategyEvaluator, grid_search  # noqa: E402

ENGINE = {"fee_bps": 1.0, "slippage_bps": 1.0, "rebalance": "M"}
POWERS = [0.5, 1.0, 1.5, 2.0]
GRIDS = {  # 36 and 324 sets
    "small": {"lookback": list(range(10, 251, 30)), "power": POWERS},
    "large": {"lookback": list(range(10, 251, 3)), "power": POWERS},
}


def bars(n_bars: int, n_assets: int) -> Bars:
    rng = np.random.default_rng(42)
    close = 100 * np.exp(np.cumsum(rng.normal(0.0002, 0.01, (n_bars, n_assets)), axis=0))
    index = pd.bdate_range("2010-01-04", periods=n_bars)
    return Bars.from_close(
        pd.DataFrame(close, index=index, columns=[f"A{j}" for j in range(n_assets)])
    )


class PositionsOnly(InverseVolatility):
    """The same strategy without a fast path of its own (``positions`` redefined here)."""

    def positions(self, bars: Bars) -> pd.DataFrame:
        return super().positions(bars)


def rate(data: Bars, strategy_cls: type, grid: dict[str, list[float]]) -> float:
    """Sets per second of a grid search, after one warm-up search."""
    n_sets = len(grid["lookback"]) * len(grid["power"])

    def once() -> float:
        evaluator = StrategyEvaluator(data, strategy_cls, **ENGINE)
        start = time.perf_counter()
        grid_search(grid, evaluator, metric="sharpe_ratio", progress=False)
        return time.perf_counter() - start

    once()  # warm-up: compiling, numba's cache, the checks' first calls
    return n_sets / once()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="    search logged: %(message)s")
    logging.getLogger("backtest.search").setLevel(logging.INFO)
    header = f"{'bars x assets':>14} {'sets':>5} {'fast (sets/s)':>14} {'plain (sets/s)':>15}"
    print(f"{header} {'fast/plain':>11}")
    for n_bars, n_assets in ((2520, 6), (2520, 20)):
        data = bars(n_bars, n_assets)
        for grid in GRIDS.values():
            n_sets = len(grid["lookback"]) * len(grid["power"])
            fast = rate(data, InverseVolatility, grid)
            plain = rate(data, PositionsOnly, grid)
            print(
                f"{n_bars:>7,} x {n_assets:<4} {n_sets:>5} {fast:>14,.0f} {plain:>15,.0f} "
                f"{fast / plain:>10.1f}x"
            )


if __name__ == "__main__":
    main()
