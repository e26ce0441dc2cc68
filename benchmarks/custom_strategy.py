"""A user's own strategy against the built-ins and vectorbt, same grid, one run (issue 12).

Workload: 500 parameter sets per strategy on geometric Brownian motion closes (seed 42,
drift 0.0002 and volatility 0.01 per bar in log terms), 2,520 and 25,200 bars, 1 and 20
assets (an equally weighted, daily rebalanced portfolio of the per-asset strategies),
10 bp costs per unit traded. Each strategy runs as a search does: ``grid_search`` over
a :class:`~backtest.search.StrategyEvaluator` (every metric of every set, the trials
table, the best set), timed as the best of several repeats taken in turns (the machine
may be shared).

* custom: the example ``examples/rsi/rsi_strategy.py`` (RsiReversion: period 5..29 x
  lower 20..40 x upper 55..70 = 500 sets) on the generic batched path (its own
  ``batch_positions``, metrics in compiled kernels);
* built-in: SmaCross (fast 5..100 x slow 10..300, fast < slow = 500 sets) and
  MeanReversion (lookback x entry_z x exit_z = 500) on their fused kernels, Breakout
  (lookback 5..254 x long_short = 500) on the generic path;
* vectorbt: the same RSI rule through ``IndicatorFactory`` (the same RSI function) and
  ``Portfolio.from_signals`` (fees 10 bp), computing every column's Sharpe ratio; on 20
  assets or 25,200 bars a share of the sets (its arrays grow with sets x assets x bars)
  and its rate is per set all the same.

Also: the work of a search outside the kernels (trial table, seeds, constraint, best
set), per trial, on a 9,400-set SmaCross grid: ``grid_search`` time minus the time of
the evaluator's kernels on the same sets.

Run: python benchmarks/custom_strategy.py [--quick] [--no-vectorbt]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "rsi"))

from benchmarks._measure import best_in_turns, best_of, gbm  # noqa: E402

FEE_BPS = 10.0
RSI_SPACE = {
    "period": list(range(5, 30)),
    "lower": [20.0, 25.0, 30.0, 35.0, 40.0],
    "upper": [55.0, 60.0, 65.0, 70.0],
}
SMA_SPACE = {"fast": list(range(5, 105, 5)), "slow": list(range(10, 310, 10))}
MR_SPACE = {
    "lookback": list(range(10, 110, 10)),
    "entry_z": [1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0, 3.25, 3.5],
    "exit_z": [0.0, 0.25, 0.5, 0.75, 1.0],
}
BREAKOUT_SPACE = {"lookback": list(range(5, 255)), "long_short": [False, True]}
CASES = [(2520, 1), (25200, 1), (2520, 20), (25200, 20)]


def warm_best_of(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm up (numba load / compile, caches)
    return best_of(fn, repeats)[0]


def ours(prices: pd.DataFrame, strategies: dict, repeats: int) -> dict[str, float]:  # type: ignore[type-arg]
    """Sets per second of a grid search (all metrics, trials table, best set) per strategy.

    The strategies take turns, repeat after repeat, and each keeps its best time, so a
    burst of load on a shared machine hits them alike.
    """
    from backtest.search import StrategyEvaluator, grid_search

    runs = {}
    for name, (cls, space) in strategies.items():
        ev = StrategyEvaluator(prices, cls, fee_bps=FEE_BPS)
        constraint = "fast < slow" if "fast" in space else None

        def run(ev=ev, space=space, constraint=constraint):  # type: ignore[no-untyped-def]
            return grid_search(space, ev, constraint=constraint, progress=False, keep_returns=0)

        res = run()  # warm up (numba load / compile, caches) and check
        assert res.n_trials == 500, (name, res.n_trials)  # a set never trading: NaN Sharpe
        runs[name] = run
    best = best_in_turns(runs, repeats)
    return {name: 500 / seconds for name, seconds in best.items()}


def vectorbt_rate(prices: pd.DataFrame, share: float) -> float:
    """Sets per second of vectorbt on the RSI rule (a share of the 500 sets)."""
    import vectorbt as vbt
    from rsi_strategy import rsi

    def apply(close, period, lower, upper):  # type: ignore[no-untyped-def]
        values = np.column_stack(
            [rsi(np.ascontiguousarray(close[:, j]), int(period)) for j in range(close.shape[1])]
        )
        return values < lower, values > upper

    factory = vbt.IndicatorFactory(
        input_names=["close"],
        param_names=["period", "lower", "upper"],
        output_names=["entries", "exits"],
    ).from_apply_func(apply)
    grid = [
        (p, lo, up)
        for p in RSI_SPACE["period"]
        for lo in RSI_SPACE["lower"]
        for up in RSI_SPACE["upper"]
    ]
    n_sets = max(1, int(len(grid) * share))
    sub = grid[:: max(1, len(grid) // n_sets)][:n_sets]
    period, lower, upper = (list(x) for x in zip(*sub, strict=True))

    def work() -> None:
        sig = factory.run(prices, period=period, lower=lower, upper=upper, param_product=False)
        pf = vbt.Portfolio.from_signals(
            sig.close, sig.entries, sig.exits, fees=FEE_BPS / 1e4, freq="1D"
        )
        pf.sharpe_ratio()

    return len(sub) / warm_best_of(work, 1)


def outside_kernels_us(repeats: int) -> tuple[float, float, float]:
    """Per-trial search work outside the kernels on the 9,400-set SmaCross grid (us).

    The evaluator times its own calls (the kernels and their inputs); the rest of
    ``grid_search`` (grid, constraint, seeds, trials table, best set) is the overhead.
    """
    from backtest.search import StrategyEvaluator, grid_search
    from backtest.strategies import SmaCross

    class Timed(StrategyEvaluator):
        spent = 0.0

        def evaluate_columns(self, params, *, keep=None):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return super().evaluate_columns(params, keep=keep)
            finally:
                Timed.spent += time.perf_counter() - t0

    ev = Timed(gbm(2520, 1), SmaCross, fee_bps=FEE_BPS)
    fast, slow = list(range(2, 96)), list(range(100, 300, 2))
    best = (float("inf"), 0.0, 0.0)
    for _ in range(repeats + 1):
        Timed.spent = 0.0
        t0 = time.perf_counter()
        res = grid_search(
            {"fast": fast, "slow": slow}, ev, constraint="fast < slow", progress=False
        )
        total = time.perf_counter() - t0
        assert res.n_trials == 9400
        best = min(best, (total - Timed.spent, total, Timed.spent))
    return 1e6 * best[0] / 9400, best[1], best[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,520 bars only, fewer repeats")
    parser.add_argument("--no-vectorbt", action="store_true")
    args = parser.parse_args()
    import numba
    from rsi_strategy import RsiReversion

    from backtest.strategies import Breakout, MeanReversion, SmaCross

    print(f"numba threads: {numba.get_num_threads()}; 500 sets per strategy; fees {FEE_BPS} bp")
    header = (
        f"{'case':<22}{'SmaCross':>11}{'RSI (own)':>11}{'RSI/SMA':>9}{'MeanRev':>10}"
        f"{'MR/SMA':>8}{'Breakout':>10}{'BO/SMA':>8}{'vectorbt':>10}{'RSI/vbt':>9}"
    )
    print(header)
    print("-" * len(header))
    for n_bars, n_assets in CASES:
        if args.quick and n_bars > 2520:
            continue
        prices = gbm(n_bars, n_assets)
        size = n_bars * n_assets
        repeats = 3 if args.quick else (9 if size <= 2520 else 5 if size <= 50_400 else 3)
        rates = ours(
            prices,
            {
                "sma": (SmaCross, SMA_SPACE),
                "own": (RsiReversion, RSI_SPACE),
                "mr": (MeanReversion, MR_SPACE),
                "bo": (Breakout, BREAKOUT_SPACE),
            },
            repeats,
        )
        sma, own, mr, bo = rates["sma"], rates["own"], rates["mr"], rates["bo"]
        if args.no_vectorbt:
            vbt, ratio = float("nan"), float("nan")
        else:
            share = min(1.0, 2_000_000 / (500 * n_bars * n_assets))
            vbt = vectorbt_rate(prices, share)
            ratio = own / vbt
        print(
            f"{f'{n_bars:,} bars x {n_assets}':<22}{sma:>11,.0f}{own:>11,.0f}{own / sma:>9.0%}"
            f"{mr:>10,.0f}{mr / sma:>8.0%}{bo:>10,.0f}{bo / sma:>8.0%}{vbt:>10,.0f}"
            f"{ratio:>8.1f}x",
            flush=True,
        )
    us, search, kernels = outside_kernels_us(3 if args.quick else 7)
    print(
        f"\nsearch work outside the kernels, 9,400-set SmaCross grid at 2,520 bars: "
        f"{us:.2f} us per trial (search {search * 1e3:.1f} ms, kernels {kernels * 1e3:.1f} ms)"
    )


if __name__ == "__main__":
    main()
