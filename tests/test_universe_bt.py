"""The engine on a real universe against bt 1.4.1 (a peer, tests only).

A monthly top-10 cross-sectional momentum book on a 40-asset daily panel where 8 assets
list late and 2 delist early (one with a delisting return), costs off, fills at the
rebalance close, fractional units: the engine's equity equals bt's to 1e-9, on plain
prices and on unadjusted prices with splits and cash dividends (bt's
``CorporateActions``).

Conventions that differ, and how the test bridges them:

* bt raises on a NaN price of a held asset and its ``CloseDead`` sells only at prices
  <= 0 (at 0). The engine closes a delisting holding at its last close (times
  ``1 + delist_return`` when given) on its last listed bar. bt gets prices
  forward-filled after delisting (the last-bar price carrying the delisting return), so
  a delisted name sits at a constant price until bt's next rebalance drops it: the same
  equity, with the cash idle in both. Before listing, bt gets back-filled prices (never
  held there: the weight is NaN, which ``WeighTarget`` drops).
* The selection: bt is fed the weights of our book through ``WeighTarget`` (the
  strategy's weights on each rebalance bar, times the engine's tradable mask, which
  also zeroes a name on its last listed bar), rather than re-implementing the ranking
  with bt's algos.
* Dividends: bt pays them as cash on the ex-date and leaves it idle until the next
  rebalance; the engine's units accounting does the same (the book is rebalanced
  monthly, so the units accounting runs).
* bt prepends a day before the first bar holding the initial capital; it is dropped.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from backtest.data import Bars
from backtest.engine import simulate
from backtest.engine._schedule import rebalance_flags
from backtest.engine._universe import kernel_inputs, strategy_bars
from backtest.strategies import CrossSectionalMomentum

bt = pytest.importorskip("bt")

CAPITAL = 1_000_000.0


def panel(actions: bool, n: int = 520, a: int = 40, seed: int = 7) -> Bars:
    """40 assets; 8 list late, 2 delist early (one with a delisting return of -40%)."""
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range("2018-01-01", periods=n, name="date")
    cols = [f"S{j:02d}" for j in range(a)]
    drift = rng.normal(3e-4, 4e-4, a)
    close = 50 * np.exp(np.cumsum(rng.normal(drift, 0.015, (n, a)), axis=0))
    split = np.ones((n, a))
    div = np.zeros((n, a))
    if actions:  # unadjusted prices: the price drops by the split and the dividend
        for j in rng.choice(a, 12, replace=False):
            t = int(rng.integers(30, n - 10))
            k = float(rng.choice([2.0, 3.0, 0.5]))
            split[t, j] = k
            close[t:, j] /= k
        for j in rng.choice(a, 15, replace=False):
            for t in rng.choice(np.arange(20, n), 3, replace=False):
                d = float(0.02 * close[t - 1, j])
                div[t, j] = d
                close[t:, j] *= 1 - d / close[t, j]
    for j, first in zip(range(8), rng.integers(60, 300, 8), strict=True):
        close[:first, j] = np.nan
    close[301:, 8] = np.nan  # delists after bar 300 (with a delisting return)
    close[411:, 9] = np.nan  # delists after bar 410
    split[np.isnan(close)] = 1.0  # actions only while listed
    div[np.isnan(close)] = 0.0
    dr = np.full((n, a), np.nan)
    dr[300, 8] = -0.4
    frame = lambda v: pd.DataFrame(v, index=idx, columns=cols)  # noqa: E731
    extra = {"split": frame(split), "dividend": frame(div)} if actions else {}
    return Bars(close=frame(close), delist_return=frame(dr), **extra)


def book_weights(bars: Bars, strategy: CrossSectionalMomentum) -> pd.DataFrame:
    """The weights the engine trades on each rebalance bar (NaN: not held)."""
    view = strategy_bars(bars)
    w = strategy.positions(view.close).fillna(0.0).to_numpy()
    w = np.where(kernel_inputs(bars).hold, w, 0.0)
    rebal = rebalance_flags(bars.index, "M")
    frame = pd.DataFrame(np.where(w != 0.0, w, np.nan), bars.index, bars.close.columns)
    return frame[rebal]


def bt_equity(bars: Bars, weights: pd.DataFrame) -> pd.Series:
    ki = kernel_inputs(bars)  # forward-filled after delisting, the delisting return applied
    prices = pd.DataFrame(ki.close, bars.index, bars.close.columns)
    algos = []
    if bars.split is not None:
        assert bars.dividend is not None
        algos.append(bt.algos.CorporateActions(bars.dividend, bars.split))
    algos += [bt.algos.WeighTarget(weights), bt.algos.Rebalance()]
    test = bt.Backtest(
        bt.Strategy("book", algos), prices, initial_capital=CAPITAL, integer_positions=False,
        progress_bar=False,
    )  # fmt: skip
    with warnings.catch_warnings():  # ffn's statistics (pandas 3 deprecations)
        warnings.simplefilter("ignore")
        bt.run(test)
    values = test.strategy.values.loc[bars.index]  # noqa: PD011 - bt's equity series, not a frame's .values
    return values / CAPITAL


@pytest.mark.parametrize("actions", [False, True], ids=["prices", "unadjusted+actions"])
def test_monthly_top10_momentum_equals_bt(actions: bool) -> None:
    bars = panel(actions)
    strategy = CrossSectionalMomentum(lookback=63, top_n=10)
    ours = simulate(bars, strategy, rebalance="M", initial_capital=CAPITAL)
    theirs = bt_equity(bars, book_weights(bars, strategy))
    np.testing.assert_allclose(ours.equity.to_numpy(), theirs.to_numpy(), rtol=1e-9, atol=0)
    reasons = ours.trades["exit_reason"].value_counts()
    assert reasons.get("delisted", 0) >= 1  # the book held a name into its delisting
    assert np.isfinite(ours.equity).all()
