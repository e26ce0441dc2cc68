"""Portfolio engine benchmark: backtest's batched path vs vectorbt, ratios from one run.

1. The reference SMA grid (issue 3): fast in range(5, 105, 5) x slow in range(10, 310, 10)
   with fast < slow (500 sets), one asset of seeded GBM closes, 10 bp per unit traded, on
   2,520 and 25,200 bars; ours ``simulate_batch`` with the default engine options, vectorbt
   ``MA.run`` + ``Portfolio.from_signals`` (as ``benchmarks/search.py``). Sharpe ratios agree
   closely, not exactly (vectorbt buys ``cash / (price (1 + fee))``, we keep ``1 - c``).
2. A 500-set ``CrossSectionalMomentum`` grid (lookback x skip x top_n, long only) over 20
   assets, 2,520 bars, rebalanced monthly (``engine.rebalance=M``), 10 bp fees, gross capped at
   0.98 (``engine.max_gross_leverage``: a 2% cash buffer so no buy is ever short of cash, which
   vectorbt would partially fill); ours ``simulate_batch`` (the per-bar kernel for every set in
   a compiled parallel loop) vs vectorbt ``Portfolio.from_orders`` with the same target
   weights on each rebalance bar (NaN elsewhere), ``size_type="targetpercent"``,
   ``group_by`` per set, ``cash_sharing=True``, ``call_seq="auto"`` (sells first), every order
   sized from the group value before the bar's orders (vectorbt's ``update_value=False``,
   as ours). The equity curves of all 500 sets must agree to 1e-6.

Times: each side warmed up once (compilation excluded), then the best of ``--repeats``
calls; both run in this process, alternately, so a load spike on a shared machine hits both.

Run: python benchmarks/engine.py [--quick] [--repeats N] [--only sma|xs]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._measure import best_of, gbm  # noqa: E402

COST = 0.001  # 10 bp
GRID_500 = [(f, s) for f in range(5, 105, 5) for s in range(10, 310, 10) if f < s]
XS_GRID = [
    (lb, sk, tn)
    for lb in range(21, 421, 21)
    for sk in (0, 5, 10, 15, 21)
    for tn in (1, 2, 3, 4, 5)
]  # fmt: skip
GROSS = 0.98


def sma_case(n_bars: int, repeats: int) -> dict[str, float]:
    """Part 1 for one length: seconds of each side and the largest Sharpe difference."""
    import vectorbt as vbt

    from backtest.engine import simulate_batch
    from backtest.strategies import SmaCross

    close = gbm(n_bars, 1)
    sets = pd.DataFrame(GRID_500, columns=["fast", "slow"])

    def ours():  # type: ignore[no-untyped-def]
        return simulate_batch(close, SmaCross, sets, fee_bps=COST * 1e4).metrics

    def theirs():  # type: ignore[no-untyped-def]
        fast = vbt.MA.run(close, window=list(sets["fast"]), short_name="fast")
        slow = vbt.MA.run(close, window=list(sets["slow"]), short_name="slow")
        entries = fast.ma_above(slow)
        pf = vbt.Portfolio.from_signals(close, entries, ~entries, fees=COST, freq="1D")
        return pf.sharpe_ratio()

    ours()
    theirs()
    t_ours, t_vbt = float("inf"), float("inf")
    for _ in range(repeats):  # alternate, so a load spike hits both
        t, m = best_of(ours, 1)
        t_ours = min(t_ours, t)
        t, s = best_of(theirs, 1)
        t_vbt = min(t_vbt, t)
    diff = float(np.nanmax(np.abs(m["sharpe_ratio"].to_numpy() - np.asarray(s))))  # type: ignore[index,union-attr]
    return {"ours": t_ours, "vbt": t_vbt, "sharpe_diff": diff}


def xs_case(n_bars: int, n_assets: int, grid: list, repeats: int) -> dict[str, float]:  # type: ignore[type-arg]
    """Part 2: seconds of each side and the largest equity difference over all sets."""
    import vectorbt as vbt

    from backtest.engine import simulate_batch
    from backtest.engine._schedule import rebalance_flags
    from backtest.strategies import CrossSectionalMomentum

    close = gbm(n_bars, n_assets, seed=7)
    sets = pd.DataFrame(grid, columns=["lookback", "skip", "top_n"])
    k = len(sets)
    options = {"fee_bps": COST * 1e4, "rebalance": "M", "max_gross_leverage": GROSS,
               "periods_per_year": 252}  # fmt: skip

    def ours():  # type: ignore[no-untyped-def]
        return simulate_batch(close, CrossSectionalMomentum, sets, keep_returns=True, **options)

    flags = rebalance_flags(close.index, "M")
    params = {c: sets[c].to_numpy() for c in sets.columns}
    weights = CrossSectionalMomentum.batch_weights(close.to_numpy(), params) * GROSS  # (n, a, k)
    size = np.transpose(weights, (0, 2, 1)).reshape(n_bars, k * n_assets)  # set-major columns
    size[~flags] = np.nan
    wide = np.tile(close.to_numpy(), (1, k))
    columns = pd.MultiIndex.from_product([range(k), close.columns], names=["set", "asset"])
    price = pd.DataFrame(wide, index=close.index, columns=columns)
    size_frame = pd.DataFrame(size, index=close.index, columns=columns)

    def theirs():  # type: ignore[no-untyped-def]
        pf = vbt.Portfolio.from_orders(
            price,
            size_frame,
            size_type="targetpercent",
            fees=COST,
            group_by="set",
            cash_sharing=True,
            call_seq="auto",
            init_cash=1.0,
            freq="1D",
        )
        return pf.value()

    ours()
    theirs()
    t_ours, t_vbt = float("inf"), float("inf")
    for _ in range(repeats):
        t, res = best_of(ours, 1)
        t_ours = min(t_ours, t)
        t, value = best_of(theirs, 1)
        t_vbt = min(t_vbt, t)
    equity = np.cumprod(1.0 + res.returns, axis=0)  # type: ignore[union-attr]
    diff = float(np.max(np.abs(equity - np.asarray(value))))
    return {"ours": t_ours, "vbt": t_vbt, "equity_diff": diff}


def main() -> None:
    """Run both parts and print one table with the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer bars and sets (smoke test)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=("sma", "xs"), help="run one part only")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    try:
        import vectorbt as vbt
    except ImportError:
        sys.exit("vectorbt is not installed: pip install vectorbt (a benchmark extra only)")
    vbt.settings.returns["year_freq"] = "252 days"
    vbt.settings.caching["enabled"] = False
    lengths = (504,) if args.quick else (2_520, 25_200)
    print(f"vectorbt {vbt.__version__}; best of {args.repeats}, compilation excluded\n")
    print(f"{'case':<52} {'ours s':>9} {'vbt s':>9} {'ratio':>8}  check")
    for n in lengths if args.only != "xs" else ():
        r = sma_case(n, args.repeats)
        label = f"SMA grid 500 sets x {n:,} bars (defaults)"
        print(f"{label:<52} {r['ours']:9.4f} {r['vbt']:9.4f} {r['vbt'] / r['ours']:7.1f}x  "
              f"max |Sharpe diff| {r['sharpe_diff']:.2e}")  # fmt: skip
    grid = XS_GRID[::10] if args.quick else XS_GRID
    n_bars = 504 if args.quick else 2_520
    r = xs_case(n_bars, 20, grid, args.repeats)
    label = f"XS momentum {len(grid)} sets x 20 assets x {n_bars:,} bars, M"
    print(f"{label:<52} {r['ours']:9.4f} {r['vbt']:9.4f} {r['vbt'] / r['ours']:7.1f}x  "
          f"max |equity diff| {r['equity_diff']:.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
