"""Walk-forward benchmark: our WalkForwardOptimizer against vectorbt doing the same work.

Workload (issue 4): SMA crossover, fast in range(5, 105, 5) x slow in range(10, 310, 10)
with fast < slow (500 combinations); rolling windows of 756 train / 252 test / 252 step
bars; the best Sharpe on each train window is traded on its test window; seeded GBM
daily closes (seed 42, drift 0.0002, volatility 0.01 per bar, start 100), one asset,
10 bps per unit traded; N = 2,520 bars (7 windows) and 25,200 bars (97 windows).

vectorbt (when installed) does it the vectorbt way: the whole grid over the whole
series once (``MA.run`` + ``Portfolio.from_signals``, long while fast > slow, fees
0.1%), then for each window the Sharpe of every column on the train slice, the best
column's returns on the test slice. Ours runs the full walk-forward: per-fold search
through the engine's batched path, a run over the prices up to each test window's end
for the chosen parameters, stitched out-of-sample returns with switching costs, fold
table, DSR per fold and parameter stability, and the one-truth check (the folds'
chosen sets re-run through ``simulate``, each once over the whole history: the first
and last folds' always, others within 5% of the run's time; every fold's traded run
compared with the searched returns bar for bar; ``reran``: the folds whose chosen set
was re-run, in the last timed run). Timed separately, because vectorbt
computes nothing like them: the per-fold CSCV PBO (16 blocks, ``ours_with_pbo_s``) and
the per-fold snooping statistics, opt-in since issue 22 (SPA / Reality Check with 1000
bootstrap draws and Li & Ji's effective trials, ``ours_with_snooping_s``).

Timings are the median (``*_s``) and the best (``*_best_s``) of ``--repeat`` runs after
one untimed warm-up run (numba compilation), ours and vectorbt's interleaved in one
process so that the load of a shared machine weighs on both alike; ``speedup`` is the
ratio of medians, ``speedup_best`` of bests. Compare ratios, not seconds.

Run: python benchmarks/walkforward.py [--repeat 3] [--bars 2520 25200] [--no-vectorbt]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from backtest.config import SearchConfig, SearchMethod, WalkForwardConfig
from backtest.data import synthetic_prices
from backtest.strategies import SmaCross
from backtest.walkforward import StrategyReturnsEvaluator, WalkForwardOptimizer, grid_frame

TRAIN, TEST, STEP = 756, 252, 252
FEE_BPS = 10.0
SPACE = {"fast": list(range(5, 105, 5)), "slow": list(range(10, 310, 10))}


def prices_for(n_bars: int) -> pd.DataFrame:
    return synthetic_prices(
        n_bars=n_bars,
        n_assets=1,
        drift=0.0002,
        volatility=0.01,
        start_price=100.0,
        regimes=False,
        seed=42,
    )


def interleaved(
    fns: dict[str, Callable[[], Any]], repeat: int
) -> dict[str, tuple[float, float, Any]]:
    """Median and best wall time of each function, and its last output.

    Runs are interleaved (a, b, a, b, ...) after one untimed warm-up of each, so the
    load of a shared machine weighs on all of them alike.
    """
    outs = {name: fn() for name, fn in fns.items()}  # warm-up: numba compilation, caches
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(times[name]), min(times[name]), outs[name]) for name in fns}


def ours(prices: pd.DataFrame, pbo_blocks: int, snooping: bool = False) -> Any:
    search = SearchConfig(method=SearchMethod.grid, metric="sharpe_ratio", constraint="fast < slow")
    wf = WalkForwardOptimizer(
        WalkForwardConfig(train_bars=TRAIN, test_bars=TEST, step_bars=STEP),
        search,
        pbo_blocks=pbo_blocks,
        spa_bootstrap=1000 if snooping else 0,
        effective_trials=snooping,
    )
    return wf.run(StrategyReturnsEvaluator(prices, SmaCross, fee_bps=FEE_BPS), SPACE)


def vectorbt_walkforward(prices: pd.DataFrame) -> list[tuple[int, int]]:
    """The whole grid over the whole series with vectorbt, then slicing per window."""
    import vectorbt as vbt

    grid = grid_frame(SPACE, "fast < slow")
    close = prices.iloc[:, 0]
    fast = vbt.MA.run(close, window=grid["fast"].tolist(), short_name="fast")
    slow = vbt.MA.run(close, window=grid["slow"].tolist(), short_name="slow")
    above = fast.ma.to_numpy() > slow.ma.to_numpy()
    entries = pd.DataFrame(above, index=close.index)
    pf = vbt.Portfolio.from_signals(close, entries, ~entries, fees=FEE_BPS / 1e4, freq="1D")
    rets = pf.returns()
    chosen = []
    for start in range(0, len(close) - TRAIN - TEST + 1, STEP):
        train = rets.iloc[start : start + TRAIN]
        sharpe = train.vbt.returns(freq="1D", year_freq="252D").sharpe_ratio()
        best = int(np.nanargmax(sharpe.to_numpy()))
        test = rets.iloc[start + TRAIN : start + TRAIN + TEST, best]
        test.vbt.returns(freq="1D", year_freq="252D").sharpe_ratio()
        chosen.append((int(grid["fast"].iloc[best]), int(grid["slow"].iloc[best])))
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, nargs="+", default=[2520, 25_200])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-vectorbt", action="store_true")
    args = parser.parse_args()
    try:
        if args.no_vectorbt:
            raise ImportError
        import vectorbt as vbt

        vbt_version: str | None = vbt.__version__
    except ImportError:
        vbt_version = None
    rows = []
    for n in args.bars:
        prices = prices_for(n)
        fns: dict[str, Callable[[], Any]] = {"ours": lambda p=prices: ours(p, 0)}
        if vbt_version:
            fns["vectorbt"] = lambda p=prices: vectorbt_walkforward(p)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            timing = interleaved(fns, args.repeat)
        t_ours, best_ours, res = timing["ours"]
        t_pbo, _, _ = interleaved({"pbo": lambda p=prices: ours(p, 16)}, 1)["pbo"]
        t_snoop, _, _ = interleaved({"snoop": lambda p=prices: ours(p, 0, True)}, 1)["snoop"]
        row: dict[str, Any] = {
            "bars": n,
            "windows": len(res.folds),
            "combos": int(res.folds["n_trials"].iloc[0]),
            "ours_s": t_ours,
            "ours_best_s": best_ours,
            "ours_with_pbo_s": t_pbo,
            "ours_with_snooping_s": t_snoop,
            "reran": f"{len(res.verified_folds)}/{len(res.folds)}",
        }
        if vbt_version:
            t_vbt, best_vbt, chosen = timing["vectorbt"]
            ours_chosen = list(zip(res.folds["fast"], res.folds["slow"], strict=True))
            same = sum(a == b for a, b in zip(ours_chosen, chosen, strict=True))
            row["vectorbt_s"] = t_vbt
            row["vectorbt_best_s"] = best_vbt
            row["speedup"] = t_vbt / t_ours
            row["speedup_best"] = best_vbt / best_ours
            row["same_choice"] = f"{same}/{len(chosen)}"
        rows.append(row)
    table = pd.DataFrame(rows)
    print(
        f"walk-forward benchmark: SMA grid of 500, train {TRAIN} / test {TEST} / step {STEP}, "
        f"{FEE_BPS:g} bps, vectorbt {vbt_version or 'not installed'}"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
