"""Real-universe benchmark: the engine on listings, delistings and corporate actions.

1. A 500-set ``CrossSectionalMomentum`` grid (lookback x skip x top_n, long only, monthly,
   10 bp) on a 40-asset, 2,520-bar panel where 8 assets list late, 3 delist early (one
   with a delisting return) and 12 split / 15 pay dividends on unadjusted prices, against
   the same grid on the full panel (same closes, no NaN, no actions). Goal (issue 25):
   the universe grid at >= 80% of the full panel's speed (``speed`` = full s / universe s).
2. The same book (lookback 63, top 10, monthly, costs off, fractional units) against
   peers, on the universe panel:
   * bt 1.4.1: our weights fed through ``WeighTarget`` + ``Rebalance``, with
     ``CorporateActions`` (prices forward-filled after delisting, as
     ``tests/test_universe_bt.py``); single run, and a 200-set grid (bt runs one set at
     a time: ``--bt-sets`` of them are timed and scaled to 200);
   * vectorbt 1.2.0 ``Portfolio.from_orders`` (``targetpercent`` on each rebalance bar,
     cash shared per set): it has no corporate actions, so it runs the panel without
     splits and dividends (listings and delistings kept); single run and the 200 sets in
     one call.
   Equity differences are printed beside the times. Peers missing from the environment
   are skipped with a line.
3. For information: a 100-set ``SmaCross`` grid on the same two panels. On a full panel
   it runs on the fused kernels; on a real universe the fused kernels (which know no
   tradable mask) hand it to the generic sleeve path with the mask and total returns
   (``engine/_universe_batch.py``), which is slower: the price of that gap is printed.

Times: each side warmed up once (compilation excluded), then the best of ``--repeats``.

Run: python benchmarks/universe.py [--quick] [--repeats N] [--bt-sets N]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backtest.data import Bars  # noqa: E402
from benchmarks._measure import best_of  # noqa: E402
from benchmarks.engine import XS_GRID  # noqa: E402  (the engine benchmark's 500 sets)

PEER_GRID = [(lb, 0, tn) for lb in range(21, 421, 21) for tn in range(1, 11)]  # 200 sets


def panels(n: int, a: int = 40, seed: int = 7) -> tuple[Bars, Bars, Bars]:
    """``(full, universe with actions, universe without actions)`` on the same draws."""
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range("2000-01-03", periods=n, name="date")
    cols = [f"A{j:03d}" for j in range(a)]
    close = 100 * np.exp(np.cumsum(rng.normal(2e-4, 0.012, (n, a)), axis=0))
    full = pd.DataFrame(close, idx, cols)
    raw = close.copy()
    split = np.ones((n, a))
    div = np.zeros((n, a))
    for j in rng.choice(a, 12, replace=False):
        t = int(rng.integers(30, n - 10))
        split[t, j] = float(rng.choice([2.0, 3.0, 0.5]))
        raw[t:, j] /= split[t, j]
    for j in rng.choice(a, 15, replace=False):
        for t in rng.choice(np.arange(20, n), 8, replace=False):
            div[t, j] = 0.01 * raw[t - 1, j]
            raw[t:, j] *= 1 - div[t, j] / raw[t, j]
    missing = np.zeros((n, a), bool)
    for j in range(8):
        missing[: int(rng.integers(n // 10, n // 2)), j] = True
    for j, last in zip((8, 9, 10), (n // 3, n // 2, 2 * n // 3), strict=True):
        missing[last + 1 :, j] = True
    dr = np.full((n, a), np.nan)
    dr[n // 3, 8] = -0.5
    split[missing] = 1.0
    div[missing] = 0.0

    def frame(v: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(v, idx, cols)

    uni = Bars(close=frame(np.where(missing, np.nan, raw)), split=frame(split),
               dividend=frame(div), delist_return=frame(dr))  # fmt: skip
    plain = Bars(close=frame(np.where(missing, np.nan, close)), delist_return=frame(dr))
    return Bars.from_close(full), uni, plain


def grid_case(full: Bars, uni: Bars, grid: list, repeats: int) -> tuple[float, float]:  # type: ignore[type-arg]
    from backtest.engine import simulate_batch
    from backtest.strategies import CrossSectionalMomentum

    sets = pd.DataFrame(grid, columns=["lookback", "skip", "top_n"])
    options = {"fee_bps": 10.0, "rebalance": "M", "periods_per_year": 252,
               "check_lookahead": False}  # fmt: skip

    def run(bars: Bars) -> Any:
        return simulate_batch(bars, CrossSectionalMomentum, sets, **options)

    run(full), run(uni)  # compile
    t_full = t_uni = float("inf")
    for _ in range(repeats):  # alternately: a load spike hits both
        t_full = min(t_full, best_of(lambda: run(full), 1)[0])
        t_uni = min(t_uni, best_of(lambda: run(uni), 1)[0])
    return t_full, t_uni


def sma_case(full: Bars, uni: Bars, repeats: int) -> tuple[float, float]:
    from backtest.engine import simulate_batch
    from backtest.strategies import SmaCross

    sets = pd.DataFrame([(f, s) for f in (5, 10, 15, 20, 30) for s in range(40, 240, 10)],
                        columns=["fast", "slow"])  # fmt: skip

    def run(bars: Bars) -> Any:
        return simulate_batch(bars, SmaCross, sets, fee_bps=10.0, periods_per_year=252,
                              check_lookahead=False)  # fmt: skip

    run(full), run(uni)
    return best_of(lambda: run(full), repeats)[0], best_of(lambda: run(uni), repeats)[0]


def book_weights(bars: Bars, grid: list) -> np.ndarray:  # type: ignore[type-arg]
    """``(n, a, k)`` weights the engine trades (the strategy's, 0 where not held)."""
    from backtest.engine._universe import kernel_inputs, strategy_bars
    from backtest.strategies import CrossSectionalMomentum

    sets = pd.DataFrame(grid, columns=["lookback", "skip", "top_n"])
    params = {c: sets[c].to_numpy() for c in sets.columns}
    view = strategy_bars(bars).close.to_numpy()
    w = np.nan_to_num(np.asarray(CrossSectionalMomentum.batch_weights(view, params)))
    return np.where(kernel_inputs(bars).hold[:, :, None], w, 0.0)


def ours_case(bars: Bars, grid: list, repeats: int) -> tuple[float, np.ndarray]:  # type: ignore[type-arg]
    from backtest.engine import simulate_batch
    from backtest.strategies import CrossSectionalMomentum

    sets = pd.DataFrame(grid, columns=["lookback", "skip", "top_n"])

    def run() -> Any:
        return simulate_batch(bars, CrossSectionalMomentum, sets, keep_returns=True,
                              rebalance="M", initial_capital=1.0, periods_per_year=252,
                              check_lookahead=False)  # fmt: skip

    run()
    t, res = best_of(run, repeats)
    return t, np.cumprod(1.0 + res.returns, axis=0)


def bt_case(bars: Bars, grid: list, n_sets: int, repeats: int) -> tuple[float, np.ndarray]:  # type: ignore[type-arg]
    """Seconds per set (best of ``repeats`` over the first ``n_sets``) and their equity."""
    import bt

    from backtest.engine._schedule import rebalance_flags
    from backtest.engine._universe import kernel_inputs

    weights = book_weights(bars, grid[:n_sets])
    prices = pd.DataFrame(kernel_inputs(bars).close, bars.index, bars.close.columns)
    flags = rebalance_flags(bars.index, "M")
    equity = np.empty((len(bars), n_sets))

    def run(i: int) -> pd.Series:
        w = pd.DataFrame(weights[:, :, i], bars.index, bars.close.columns)
        w = w.where(w != 0.0)[flags]
        algos = [bt.algos.WeighTarget(w), bt.algos.Rebalance()]
        if bars.split is not None:
            algos.insert(0, bt.algos.CorporateActions(bars.dividend, bars.split))
        test = bt.Backtest(bt.Strategy("s", algos), prices, initial_capital=1e6,
                           integer_positions=False, progress_bar=False)  # fmt: skip
        bt.run(test)
        return test.strategy.values.loc[bars.index] / 1e6  # noqa: PD011 - bt's attribute

    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(n_sets):
            equity[:, i] = run(i).to_numpy()
        best = min(best, (time.perf_counter() - t0) / n_sets)
    return best, equity


def vbt_case(bars: Bars, grid: list, repeats: int) -> tuple[float, np.ndarray]:  # type: ignore[type-arg]
    import vectorbt as vbt

    from backtest.engine._schedule import rebalance_flags
    from backtest.engine._universe import kernel_inputs

    k = len(grid)
    n, a = bars.close.shape
    weights = book_weights(bars, grid)
    flags = rebalance_flags(bars.index, "M")
    size = np.transpose(weights, (0, 2, 1)).reshape(n, k * a)
    size[~flags] = np.nan
    columns = pd.MultiIndex.from_product([range(k), bars.close.columns], names=["set", "asset"])
    price = pd.DataFrame(np.tile(kernel_inputs(bars).close, (1, k)), bars.index, columns)
    size_frame = pd.DataFrame(size, bars.index, columns)

    def run() -> Any:
        pf = vbt.Portfolio.from_orders(price, size_frame, size_type="targetpercent",
                                       group_by="set", cash_sharing=True, call_seq="auto",
                                       init_cash=1.0, freq="1D")  # fmt: skip
        return pf.value()

    run()
    t, value = best_of(run, repeats)
    return t, np.asarray(value).reshape(len(bars), k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="504 bars, a tenth of the grids")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bt-sets", type=int, default=5, help="bt sets timed (scaled to 200)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    n = 504 if args.quick else 2_520
    full, uni, plain = panels(n)
    grid = XS_GRID[::10] if args.quick else XS_GRID
    peers = PEER_GRID[::10] if args.quick else PEER_GRID
    print(f"40 assets x {n:,} bars: 8 list late, 3 delist early (1 with a delisting return), "
          f"12 splits, 15 dividend payers; best of {args.repeats}, "
          "compilation excluded\n")  # fmt: skip
    t_full, t_uni = grid_case(full, uni, grid, args.repeats)
    print(f"1. xs_momentum grid, {len(grid)} sets, monthly, 10 bp")
    print(f"   full panel {t_full:8.3f} s   universe + actions {t_uni:8.3f} s   "
          f"speed {t_full / t_uni:.2f} (goal >= 0.80)\n")  # fmt: skip
    print("2. lookback 63, top 10, monthly, costs off: ours vs peers")
    one = [(63, 0, 10)]
    t1, eq1 = ours_case(uni, one, args.repeats)
    tk, eqk = ours_case(uni, peers, args.repeats)
    try:
        import bt  # noqa: F401
    except ImportError:
        print("   bt: not installed, skipped")
    else:
        s1, b1 = bt_case(uni, one, 1, args.repeats)
        m = min(args.bt_sets, len(peers))
        sk, bk = bt_case(uni, peers, m, 1)
        d1 = float(np.max(np.abs(b1[:, 0] / eq1[:, 0] - 1)))
        dk = float(np.max(np.abs(bk / eqk[:, :m] - 1)))
        print(f"   bt single    ours {t1:8.4f} s  bt {s1:8.3f} s  {s1 / t1:8.1f}x  "
              f"max rel equity diff {d1:.1e}")  # fmt: skip
        print(f"   bt {len(peers)} sets  ours {tk:8.4f} s  bt {sk * len(peers):8.2f} s "
              f"({m} timed, scaled)  {sk * len(peers) / tk:8.1f}x  "
              f"max rel equity diff {dk:.1e}")  # fmt: skip
    try:
        import vectorbt  # noqa: F401
    except ImportError:
        print("   vectorbt: not installed, skipped")
    else:
        p1, pe1 = ours_case(plain, one, args.repeats)
        pk, pek = ours_case(plain, peers, args.repeats)
        v1, w1 = vbt_case(plain, one, args.repeats)
        vk, wk = vbt_case(plain, peers, args.repeats)
        d1 = float(np.max(np.abs(w1[:, 0] - pe1[:, 0])))
        dk = float(np.max(np.abs(wk - pek)))
        print(f"   vbt single   ours {p1:8.4f} s  vbt {v1:7.3f} s  {v1 / p1:8.1f}x  "
              f"max equity diff {d1:.1e} (no actions: vectorbt has none)")  # fmt: skip
        print(f"   vbt {len(peers)} sets ours {pk:8.4f} s  vbt {vk:7.3f} s  {vk / pk:8.1f}x  "
              f"max equity diff {dk:.1e}")  # fmt: skip

    sma_full, sma_uni = sma_case(full, uni, args.repeats)
    print("\n3. SmaCross grid, 100 sets, defaults (10 bp): fused kernels vs the generic path")
    print(f"   full panel {sma_full:8.3f} s   universe + actions {sma_uni:8.3f} s   "
          f"speed {sma_full / sma_uni:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
