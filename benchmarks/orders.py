"""Entry orders at search speed: SMA x stop-entry offset x expiry x risk, vs backtesting.py.

Workload (issue 26): 250 SMA pairs (fast in range(5, 55, 5) x slow in range(20, 560, 20),
fast < slow; the first 250), long only, each decision to enter a **stop order** above the
deciding close (offsets 0.25%..1.25%), **cancelled after N bars** (2, 3, 5, 10) and **sized
from the risk** to a 5% stop-loss (risk 0.25%..1.25% of equity); exits at the next open on
the crossover down, or at the stop. 250 x 5 x 4 x 5 = 25,000 sets on 2,520 daily OHLC bars
(GBM closes, seed 42, gapping opens), no costs.

Ours: one ``simulate_batch`` call with the offset, expiry and risk as ``engine.*`` columns
(the batched per-bar kernel, ``run_books``: compiled, no Python call per set).
backtesting.py 0.6.6: runs one set at a time, so a share of the sets is run (``--bt-sets``,
default 12, drawn evenly over the grid) and its time per set scaled to the 25,000; its
strategy places ``buy(stop=...)`` on the crossover, cancels the order after N bars or when
the averages cross back, sets the stop-loss from the fill (``trade.sl``), and buys whole
shares (``size`` = the risk-sized units, rounded down), so its returns are not compared;
the trade counts of the sets it ran are (ours against its closed and open trades).
vectorbt 1.2.0 ``from_signals`` cannot express a stop or limit entry (vectorbt PRO only,
polakowo/vectorbt #659): it is timed on the nearest it can express, the same grid with
market entries at the next open sized to the same risk (``size_type="percent"``,
``sl_stop``), for scale only.

Run: python benchmarks/orders.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._measure import measure, ohlc, run_side  # noqa: E402

PAIRS = [(f, s) for f in range(5, 55, 5) for s in range(20, 560, 20) if f < s][:250]
OFFSETS = [0.0025, 0.005, 0.0075, 0.01, 0.0125]
EXPIRIES = [2, 3, 5, 10]
RISKS = [0.0025, 0.005, 0.0075, 0.01, 0.0125]
STOP_LOSS = 0.05
N_BARS = 2520


def grid(n_pairs: int) -> list[tuple[int, int, float, int, float]]:
    """(fast, slow, offset, expiry, risk), pair-major."""
    return [
        (f, s, off, exp, risk)
        for f, s in PAIRS[:n_pairs]
        for off in OFFSETS
        for exp in EXPIRIES
        for risk in RISKS
    ]


def _bars():  # type: ignore[no-untyped-def]
    import pandas as pd

    from backtest.data import Bars

    data = ohlc(N_BARS)
    index = pd.bdate_range("2000-01-03", periods=N_BARS)
    return Bars(**{k: pd.DataFrame({"X": v}, index=index) for k, v in data.items()})


def run_ours(n_pairs: int, repeats: int, picks: list[int]) -> dict:  # type: ignore[type-arg]
    import pandas as pd

    from backtest.engine import simulate_batch
    from backtest.strategies import SmaCross

    bars = _bars()
    frame = pd.DataFrame(
        grid(n_pairs),
        columns=["fast", "slow", "engine.entry_offset", "engine.entry_valid_bars",
                 "engine.risk_per_trade"],
    )  # fmt: skip
    options = dict(
        entry_order="stop", sizing="risk", stop_loss=STOP_LOSS, max_weight=1.0,
        execution="next_open", check_lookahead=False,
    )  # fmt: skip

    def work(f: pd.DataFrame = frame):  # type: ignore[no-untyped-def]
        return simulate_batch(bars, SmaCross, f, **options).metrics  # type: ignore[arg-type]

    work(frame.iloc[:64])  # load the compiled kernels
    seconds, peak, out = measure(work, repeats)
    return {
        "seconds": seconds,
        "peak": peak,
        "n": len(frame),
        "n_trades": out["n_trades"].to_numpy()[picks].tolist(),
    }


def run_backtesting(n_pairs: int, picks: list[int]) -> dict:  # type: ignore[type-arg]
    import warnings

    warnings.filterwarnings("ignore")
    import backtesting as bt
    import pandas as pd
    from backtesting.lib import crossover
    from backtesting.test import SMA

    data = ohlc(N_BARS)
    frame = pd.DataFrame(
        {k.capitalize(): v for k, v in data.items()},
        index=pd.bdate_range("2000-01-03", periods=N_BARS),
    )
    sets = grid(n_pairs)

    class StopEntry(bt.Strategy):  # type: ignore[misc]
        fast = 10
        slow = 40
        offset = 0.005
        expiry = 5
        risk = 0.01

        def init(self) -> None:
            self.f = self.I(SMA, self.data.Close, self.fast)
            self.s = self.I(SMA, self.data.Close, self.slow)
            self.working = None

        def next(self) -> None:
            i = len(self.data) - 1
            if self.working is not None:
                order, dec = self.working
                if order not in self.orders:
                    self.trades[-1].sl = self.trades[-1].entry_price * (1 - STOP_LOSS)
                    self.working = None
                elif i - dec >= self.expiry:
                    order.cancel()
                    self.working = None
            if crossover(self.s, self.f):
                if self.working is not None:
                    self.working[0].cancel()
                    self.working = None
                for trade in self.trades:
                    trade.sl = None
                self.position.close()
            elif crossover(self.f, self.s) and not self.position and self.working is None:
                stop = self.data.Close[-1] * (1 + self.offset)
                units = int(self.risk * self.equity / (stop * STOP_LOSS))
                if units >= 1:
                    self.working = (self.buy(stop=stop, size=units), i)

    counts, elapsed = [], 0.0
    for i in picks:
        f, s, off, exp, risk = sets[i]
        t0 = time.perf_counter()
        stats = bt.Backtest(frame, StopEntry, cash=1_000_000, commission=0.0).run(
            fast=f, slow=s, offset=off, expiry=exp, risk=risk
        )
        elapsed += time.perf_counter() - t0
        counts.append(len(stats["_trades"]))
    return {
        "seconds_per_set": elapsed / len(picks),
        "n_trades": counts,
        "version": bt.__version__,
    }


def run_vectorbt(n_pairs: int, repeats: int) -> dict:  # type: ignore[type-arg]
    import warnings

    warnings.filterwarnings("ignore")
    import pandas as pd
    import vectorbt as vbt

    vbt.settings.caching["enabled"] = False
    data = ohlc(N_BARS)
    close = pd.Series(data["close"], index=pd.bdate_range("2000-01-03", periods=N_BARS))
    sets = grid(n_pairs)

    def backtest(sets: list = sets):  # type: ignore[no-untyped-def,type-arg]
        pairs = list(dict.fromkeys((f, s) for f, s, *_ in sets))
        fast = vbt.MA.run(close, window=[f for f, _ in pairs]).ma.to_numpy().reshape(N_BARS, -1)
        slow = vbt.MA.run(close, window=[s for _, s in pairs]).ma.to_numpy().reshape(N_BARS, -1)
        per_pair = len(sets) // len(pairs)
        above = np.repeat(fast > slow, per_pair, axis=1)
        prev = np.vstack([np.zeros((1, above.shape[1]), bool), above[:-1]])
        entries, exits = above & ~prev, ~above & prev
        size = np.minimum(np.array([x[4] for x in sets]) / STOP_LOSS, 1.0)
        pf = vbt.Portfolio.from_signals(
            close, entries, exits, price=data["open"][:, None], open=data["open"][:, None],
            high=data["high"][:, None], low=data["low"][:, None], size=size[None, :],
            size_type="percent", sl_stop=STOP_LOSS, freq="1D",
        )  # fmt: skip
        return pf.trades.count().to_numpy()

    backtest(sets[:40])  # compile
    seconds, peak, _ = measure(backtest, repeats)
    return {"seconds": seconds, "peak": peak, "n": len(sets), "version": vbt.__version__}


def spawn(side: str, n_pairs: int, repeats: int, picks: list[int]) -> dict:  # type: ignore[type-arg]
    picked = ",".join(map(str, picks))
    return run_side(
        __file__, side, "--pairs", str(n_pairs), "--repeats", str(repeats), "--picks", picked
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="25 pairs (2,500 sets)")
    parser.add_argument("--bt-sets", type=int, default=12, help="sets backtesting.py runs")
    parser.add_argument("--no-vectorbt", action="store_true")
    parser.add_argument("--worker", choices=["ours", "backtesting", "vectorbt"])
    parser.add_argument("--pairs", type=int, default=len(PAIRS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--picks", default="0")
    args = parser.parse_args()
    picks = [int(x) for x in args.picks.split(",")]
    if args.worker == "ours":
        print(json.dumps(run_ours(args.pairs, args.repeats, picks)))
        return
    if args.worker == "backtesting":
        print(json.dumps(run_backtesting(args.pairs, picks)))
        return
    if args.worker == "vectorbt":
        print(json.dumps(run_vectorbt(args.pairs, args.repeats)))
        return
    n_pairs = 25 if args.quick else len(PAIRS)
    k = n_pairs * len(OFFSETS) * len(EXPIRIES) * len(RISKS)
    picks = np.linspace(0, k - 1, args.bt_sets).round().astype(int).tolist()
    ours = spawn("ours", n_pairs, 2, picks)
    theirs = spawn("backtesting", n_pairs, 1, picks)
    per_set = ours["seconds"] / ours["n"]
    print(f"SMA cross x stop-entry offset x expiry x risk: {ours['n']:,} sets x {N_BARS:,} bars")
    print(
        f"  ours            {ours['seconds']:8.3f} s   {per_set * 1e6:8.1f} us/set   "
        f"peak +{ours['peak'] / 2**20:.1f} MiB"
    )
    bt_total = theirs["seconds_per_set"] * ours["n"]
    print(
        f"  backtesting.py  {bt_total:8.1f} s   {theirs['seconds_per_set'] * 1e6:8.1f} us/set"
        f"   (ran {len(picks)} sets, scaled; backtesting.py {theirs['version']})"
    )
    print(f"  speed-up per set vs backtesting.py  {theirs['seconds_per_set'] / per_set:,.0f}x")
    print(f"  trade counts, ours / backtesting.py (sets it ran): {ours['n_trades']} / "
          f"{theirs['n_trades']}")  # fmt: skip
    if not args.no_vectorbt:
        vbt = spawn("vectorbt", n_pairs, 1, picks)
        print(
            f"  vectorbt (market entries, the nearest it expresses) {vbt['seconds']:8.3f} s   "
            f"ratio {vbt['seconds'] / ours['seconds']:.1f}x   (vectorbt {vbt['version']})"
        )


if __name__ == "__main__":
    main()
