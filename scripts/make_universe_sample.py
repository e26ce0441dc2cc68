"""Regenerate ``backtest/data/universe_sample.csv`` and ``universe_actions.csv``.

A small **synthetic** daily panel (seeded, no real company) for the README section
"Universes and corporate actions" and ``conf/experiment/xs_universe.yaml``: 16 stocks
over 756 business days from 2016-01-04, on **unadjusted** prices, whose universe
changes as a real one does:

* ``NOVA``, ``ONYX`` and ``PIKE`` list late (no rows before their first price);
* ``HALO`` delists early with a delisting return of -35% on its last row, ``KILO``
  delists early without one (taken over at its last price);
* ``CRUX`` splits 2-for-1 (its raw price halves on the ex-date);
* ``BOLT`` and ``DYNA`` pay quarterly cash dividends (their raw price drops by the
  dividend on each ex-date).

Each stock's total-return path is a geometric random walk with a common market factor
and a slowly wandering drift of its own (so cross-sectional momentum has something to
find); the raw prices are derived from it through the actions, rounded to the cent. The
long file holds ``date, symbol, close, delist_return`` with rows only while a stock is
listed; the actions file ``date, symbol, split, dividend``.

Usage::

    python scripts/make_universe_sample.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "backtest" / "data"
SYMBOLS = ["ARGO", "BOLT", "CRUX", "DYNA", "EPIC", "FLUX", "GRID", "HALO",
           "IRIS", "JADE", "KILO", "LUMA", "MESA", "NOVA", "ONYX", "PIKE"]  # fmt: skip
N_BARS = 756
LISTS = {"NOVA": 190, "ONYX": 300, "PIKE": 450}  # first listed bar
DELISTS = {"HALO": 375, "KILO": 600}  # last listed bar
DELIST_RETURN = {"HALO": -0.35}
SPLITS = {"CRUX": (320, 2.0)}  # (ex-date bar, new shares per old share)
PAYERS = {"BOLT": 0.008, "DYNA": 0.006}  # quarterly dividend, fraction of the price


def build(seed: int = 2025) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The long price table and the actions table."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2016-01-04", periods=N_BARS)
    a = len(SYMBOLS)
    market = rng.normal(0.0003, 0.009, N_BARS)
    drift = np.zeros((N_BARS, a))
    drift[0] = rng.normal(0.0, 0.0008, a)
    for t in range(1, N_BARS):
        drift[t] = 0.995 * drift[t - 1] + rng.normal(0.0, 0.00008, a)
    beta = rng.uniform(0.6, 1.4, a)
    vol = rng.uniform(0.008, 0.018, a)
    r = drift + beta * market[:, None] + rng.normal(0.0, 1.0, (N_BARS, a)) * vol
    total = rng.uniform(20.0, 150.0, a) * np.exp(np.cumsum(r, axis=0))  # total-return paths
    actions = []
    raw = total.copy()
    for j, s in enumerate(SYMBOLS):
        ex = {}
        if s in SPLITS:
            bar, ratio = SPLITS[s]
            ex[bar] = (ratio, 0.0)
        if s in PAYERS:
            for bar in range(40, N_BARS, 63):
                ex[bar] = (ex.get(bar, (1.0, 0.0))[0], -1.0)  # dividend sized below
        c = np.empty(N_BARS)
        c[0] = round(total[0, j], 2)
        for t in range(1, N_BARS):
            gross = total[t, j] / total[t - 1, j]
            if t in ex:
                ratio, div = ex[t]
                if div < 0:
                    div = round(PAYERS[s] * c[t - 1], 2)
                # a holder's total return: ratio * (close + dividend) / previous close
                c[t] = round(gross * c[t - 1] / ratio - div, 2)
                actions.append((dates[t], s, ratio, div))
            else:
                c[t] = round(gross * c[t - 1], 2)
        raw[:, j] = c
    rows = []
    for j, s in enumerate(SYMBOLS):
        first, last = LISTS.get(s, 0), DELISTS.get(s, N_BARS - 1)
        for t in range(first, last + 1):
            dr = DELIST_RETURN.get(s) if t == last and s in DELISTS else None
            rows.append((dates[t].strftime("%Y-%m-%d"), s, f"{raw[t, j]:.2f}", dr))
    prices = pd.DataFrame(rows, columns=["date", "symbol", "close", "delist_return"])
    acts = pd.DataFrame(actions, columns=["date", "symbol", "split", "dividend"])
    acts["date"] = pd.to_datetime(acts["date"]).dt.strftime("%Y-%m-%d")
    listed = {s: (dates[LISTS.get(s, 0)], dates[DELISTS.get(s, N_BARS - 1)]) for s in SYMBOLS}
    keep = [
        listed[s][0] <= pd.Timestamp(d) <= listed[s][1]
        for d, s in acts[["date", "symbol"]].to_numpy()
    ]
    return prices, acts.loc[keep].sort_values(["date", "symbol"]).reset_index(drop=True)


def main() -> None:
    """Write both files."""
    prices, actions = build()
    prices.to_csv(OUT / "universe_sample.csv", index=False)
    actions.to_csv(OUT / "universe_actions.csv", index=False)
    print(f"wrote {len(prices)} price rows and {len(actions)} actions to {OUT}")


if __name__ == "__main__":
    main()
