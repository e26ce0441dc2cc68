"""Stops at search speed: SMA cross x stop-loss x trailing stop, ours against vectorbt.

Workload (issue 11): the reference 500 SMA pairs (fast in range(5, 105, 5) x slow in
range(10, 310, 10), fast < slow), long only, x 10 stop-loss levels (1%..10%) x 5 trailing
stop levels (2%..10%) = 25,000 parameter sets on 2,520 daily OHLC bars (GBM closes, seed
42; opens gap from the previous close; highs and lows around them); no costs, so both
libraries' equity agrees exactly.

Ours: one call of the fused kernels (``backtest.engine._fused.fused_batch``) with the stop
levels as per-set columns, every metric of every set, no ``(n_bars, k)`` matrix.
vectorbt: ``Portfolio.from_signals`` over the 25,000 broadcast columns with ``open``,
``high``, ``low``, ``sl_stop`` and ``sl_trail``. This vectorbt has one stop-loss per
column, fixed or trailing (no separate ``tsl_stop``), so the pair is expressed with
``adjust_sl_func_nb``: a trailing stop whose distance is reset every bar so that its
level is ``max(entry * (1 - sl), peak * (1 - tsl))``, the binding one of the two, as
ours. Conventions aligned: fills at the close, stops checked from the bar after entry,
the trailing peak from earlier bars only, gap fills at the open, re-entry from the next
bar (``stop_reentry = next_bar``; vectorbt's stop exit replaces that bar's signals).
The run checks that the trade counts and total returns of every set agree.

Each side runs in its own subprocess: warm-up (compilation excluded), then the best of a
few timed calls, and the peak resident memory above the level before the call (Linux
VmHWM after clearing it).

Run: python benchmarks/stops.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._measure import measure, ohlc, run_side  # noqa: E402

PAIRS = [(f, s) for f in range(5, 105, 5) for s in range(10, 310, 10) if f < s]
SL_LEVELS = [round(0.01 * i, 2) for i in range(1, 11)]
TSL_LEVELS = [0.02, 0.04, 0.06, 0.08, 0.10]
N_BARS = 2520


def grid(n_pairs: int) -> list[tuple[int, int, float, float]]:
    """(fast, slow, stop_loss, trailing_stop), pair-major."""
    return [(f, s, sl, tsl) for f, s in PAIRS[:n_pairs] for sl in SL_LEVELS for tsl in TSL_LEVELS]


def run_ours(n_pairs: int, repeats: int) -> dict:  # type: ignore[type-arg]
    sys.path.insert(0, str(ROOT))
    import pandas as pd

    from backtest.engine import _fused
    from backtest.engine._exits import validate_stop_rules
    from backtest.metrics import METRIC_NAMES
    from backtest.strategies import SmaCross

    data = ohlc(N_BARS)
    sets = grid(n_pairs)
    frame = pd.DataFrame(sets, columns=["fast", "slow", "stop_loss", "trailing_stop"])
    rules = validate_stop_rules(stop_reentry="next_bar")
    col = {k: v[:, None] for k, v in data.items()}

    def work(f: pd.DataFrame = frame, c: dict = col):  # type: ignore[no-untyped-def,type-arg]
        return _fused.fused_batch(
            c["close"],
            SmaCross,
            f,
            cost=0.0,
            weights=np.ones(1),
            periods_per_year=252,
            ohlc=(c["open"], c["high"], c["low"]),
            rules=rules,
        )

    work(frame.iloc[:64])  # load the compiled kernels
    seconds, peak, out = measure(work, repeats)
    values = out[0]
    names = list(METRIC_NAMES)
    return {
        "seconds": seconds,
        "peak": peak,
        "n": len(sets),
        "total_return": values[:, names.index("total_return")].tolist(),
        "n_trades": values[:, names.index("n_trades")].tolist(),
    }


def run_vectorbt(n_pairs: int, repeats: int) -> dict:  # type: ignore[type-arg]
    import warnings

    warnings.filterwarnings("ignore")
    import pandas as pd
    import vectorbt as vbt
    from numba import njit

    vbt.settings.caching["enabled"] = False

    @njit
    def stop_and_trail(c, sl, tsl):  # type: ignore[no-untyped-def]
        # the binding level of a fixed stop-loss and a trailing stop, as one trailing stop
        col = c.col
        level = max(c.init_price * (1.0 - sl[col]), c.curr_price * (1.0 - tsl[col]))
        return 1.0 - level / c.curr_price, True

    data = ohlc(N_BARS)
    index = pd.bdate_range("2000-01-03", periods=N_BARS)
    close = pd.Series(data["close"], index=index)
    sets = grid(n_pairs)
    k = len(sets)

    def backtest(sets: list = sets):  # type: ignore[no-untyped-def,type-arg]
        pairs = sorted({(f, s) for f, s, _, _ in sets}, key=[(f, s) for f, s, _, _ in sets].index)
        fast = vbt.MA.run(close, window=[f for f, _ in pairs]).ma.to_numpy().reshape(N_BARS, -1)
        slow = vbt.MA.run(close, window=[s for _, s in pairs]).ma.to_numpy().reshape(N_BARS, -1)
        per_pair = len(sets) // len(pairs)
        entries = np.repeat(fast > slow, per_pair, axis=1)  # long while fast > slow
        sl = np.array([x[2] for x in sets])
        tsl = np.array([x[3] for x in sets])
        pf = vbt.Portfolio.from_signals(
            close,
            entries,
            ~entries,
            open=data["open"][:, None],
            high=data["high"][:, None],
            low=data["low"][:, None],
            sl_stop=np.minimum(sl, tsl)[None, :],  # replaced every bar by stop_and_trail
            sl_trail=True,
            adjust_sl_func_nb=stop_and_trail,
            adjust_sl_args=(sl, tsl),
            freq="1D",
        )
        return pf.total_return().to_numpy(), pf.trades.count().to_numpy()

    backtest(sets[:50])  # compile
    seconds, peak, out = measure(backtest, repeats)
    return {
        "seconds": seconds,
        "peak": peak,
        "n": k,
        "total_return": out[0].tolist(),
        "n_trades": out[1].tolist(),
        "version": vbt.__version__,
    }


def spawn(side: str, n_pairs: int, repeats: int) -> dict:  # type: ignore[type-arg]
    return run_side(__file__, side, "--pairs", str(n_pairs), "--repeats", str(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 pairs (2,500 sets)")
    parser.add_argument("--worker", choices=["ours", "vectorbt"])
    parser.add_argument("--pairs", type=int, default=len(PAIRS))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.worker:
        run = run_ours if args.worker == "ours" else run_vectorbt
        print(json.dumps(run(args.pairs, args.repeats)))
        return
    n_pairs = 50 if args.quick else len(PAIRS)
    ours = spawn("ours", n_pairs, 5)
    vbt = spawn("vectorbt", n_pairs, 1 if not args.quick else 2)
    ret_ours, ret_vbt = np.array(ours["total_return"]), np.array(vbt["total_return"])
    same_trades = np.array_equal(np.array(ours["n_trades"]), np.array(vbt["n_trades"]))
    max_diff = float(np.max(np.abs(ret_ours - ret_vbt)))
    print(f"SMA cross x stop-loss x trailing stop: {ours['n']:,} sets x {N_BARS:,} bars")
    print(f"  ours      {ours['seconds']:8.3f} s   peak +{ours['peak'] / 2**20:8.1f} MiB")
    print(
        f"  vectorbt  {vbt['seconds']:8.3f} s   peak +{vbt['peak'] / 2**20:8.1f} MiB"
        f"   (vectorbt {vbt['version']})"
    )
    print(
        f"  speed-up {vbt['seconds'] / ours['seconds']:.1f}x   "
        f"memory ratio {ours['peak'] / max(vbt['peak'], 1):.4f} (ours / vectorbt)"
    )
    print(
        f"  same trade counts in every set: {same_trades};   "
        f"max |total return difference| {max_diff:.2e}"
    )


if __name__ == "__main__":
    main()
