"""The tradable mask reaches every built-in strategy (issue 25 item 2, strategy side).

On a panel where assets list late and delist early (NaN closes outside each listing):

* ``SmaCross``, ``Momentum``, ``MeanReversion``, ``Breakout`` and ``BuyAndHold`` are flat
  where an asset has no price, never return NaN, and run on each listing as on a panel
  that starts there (their warm-up counts from the listing): checked against the same
  strategy run on the listed rows alone;
* their batched form (``batch_positions``) equals the single form per set;
* ``CrossSectionalMomentum`` ranks only tradable assets (listed and members) with a full
  lookback: checked against a plain per-bar loop written here, single and batched;
* the engine's single and batched paths agree on such a panel (``simulate`` per set
  against ``simulate_batch``, which takes the fused, generic or kernel path).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.data import Bars
from backtest.strategies import (
    Breakout,
    BuyAndHold,
    CrossSectionalMomentum,
    MeanReversion,
    Momentum,
    SmaCross,
)
from backtest.strategies._checks import batch_column

N, A = 260, 6


def _panel(seed: int = 3) -> pd.DataFrame:
    """Six assets: two list late, two delist early, one both; one full."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0003, 0.015, (N, A)) + np.sin(np.arange(N) / 15.0)[:, None] * 0.004
    close = 50.0 * np.exp(np.cumsum(steps, axis=0))
    close[:40, 1] = np.nan  # lists late
    close[:120, 2] = np.nan  # lists late, late in the panel
    close[200:, 3] = np.nan  # delists early
    close[150:, 4] = np.nan  # delists early
    close[:30, 5] = np.nan  # lists late and delists early
    close[230:, 5] = np.nan
    index = pd.bdate_range("2020-01-01", periods=N, name="date")
    return pd.DataFrame(close, index=index, columns=[f"S{j}" for j in range(A)])


PER_ASSET = [
    (SmaCross, [{"fast": 5, "slow": 20}, {"fast": 10, "slow": 40, "long_short": True}]),
    (Momentum, [{"lookback": 20, "skip": 2}, {"lookback": 60, "long_short": True}]),
    (MeanReversion, [{"lookback": 10, "entry_z": 1.5, "exit_z": 0.2}, {"lookback": 30}]),
    (Breakout, [{"lookback": 10}, {"lookback": 25, "long_short": True}]),
    (BuyAndHold, [{}]),
]


@pytest.mark.parametrize(("cls", "sets"), PER_ASSET, ids=[c.__name__ for c, _ in PER_ASSET])
def test_per_asset_strategies_trade_each_listing_as_its_own_panel(cls, sets) -> None:
    close = _panel()
    for params in sets:
        out = cls(**params).positions(close)
        values = out.to_numpy()
        assert not np.isnan(values).any()
        assert (values[close.isna().to_numpy()] == 0.0).all()  # flat where no price
        for j, symbol in enumerate(close.columns):
            rows = np.flatnonzero(close[symbol].notna().to_numpy())
            alone = close[[symbol]].iloc[rows[0] : rows[-1] + 1]  # the listing as a panel
            want = np.nan_to_num(cls(**params).positions(alone).to_numpy()[:, 0])
            np.testing.assert_array_equal(values[rows[0] : rows[-1] + 1, j], want)
        batched = batch_column(cls, close, params)  # batch_positions, asset by asset
        np.testing.assert_array_equal(np.nan_to_num(batched), values)


@pytest.mark.parametrize(("cls", "sets"), PER_ASSET, ids=[c.__name__ for c, _ in PER_ASSET])
def test_batch_positions_of_many_sets_equal_the_single_form(cls, sets) -> None:
    close = _panel(seed=11)
    names = sorted({k for s in sets for k in s})
    defaults = {f: getattr(cls(), f) for f in names}
    full = [{**defaults, **s} for s in sets]
    arrays = {k: np.array([s[k] for s in full]) for k in names}
    for j, symbol in enumerate(close.columns):
        column = close[symbol].to_numpy()
        got = cls.batch_positions(column, arrays) if names else cls.batch_positions(column, {})
        for i, params in enumerate(full):
            want = cls(**params).positions(close).to_numpy()[:, j]
            np.testing.assert_array_equal(np.nan_to_num(got[:, i]), want, err_msg=f"{symbol} {i}")


def test_a_panel_without_nans_is_unchanged_by_the_listing_rule() -> None:
    """A full column goes to the strategy's own rule as it is: the same bits as before."""
    close = _panel().ffill().bfill()
    for cls, sets in PER_ASSET:
        for params in sets:
            arrays = {k: np.array([v]) for k, v in params.items()}
            columns = [  # the rule itself (what listed_batch wraps), on the full column
                cls.batch_positions.__wrapped__(cls, close[c].to_numpy(), arrays)[:, 0]
                if params
                else np.ones(N)
                for c in close.columns
            ]
            np.testing.assert_array_equal(
                cls(**params).positions(close).to_numpy(), np.column_stack(columns)
            )


# --- cross-sectional momentum: tradable assets with a full lookback only -------------------


def _xs_reference(
    close: np.ndarray, tradable: np.ndarray, lookback: int, skip: int, top_n: int, ls: bool
) -> np.ndarray:
    """A plain per-bar loop: rank the tradable assets with prices at both window ends."""
    n, a = close.shape
    out = np.zeros((n, a))
    need = 2 * top_n if ls else top_n
    for t in range(n):
        lo, hi = t - skip - lookback, t - skip
        scored = []
        for j in range(a):
            if lo < 0 or not tradable[t, j]:
                continue
            if not (np.isfinite(close[lo, j]) and np.isfinite(close[hi, j])):
                continue
            scored.append((close[hi, j] / close[lo, j] - 1.0, j))
        if len(scored) < need:
            continue
        best = sorted(scored, key=lambda sj: (-sj[0], sj[1]))[:top_n]
        size = 0.5 / top_n if ls else 1.0 / top_n
        for _, j in best:
            out[t, j] = size
        if ls:
            for _, j in sorted(scored, key=lambda sj: (sj[0], sj[1]))[:top_n]:
                out[t, j] = -size
    return out


XS_SETS = [(20, 0, 2, False), (40, 5, 1, True), (10, 3, 3, False)]


def _members(close: pd.DataFrame) -> pd.DataFrame:
    """A membership that drops S0 for bars 100-179 although it keeps its prices."""
    tradable = close.notna()
    tradable.iloc[100:180, 0] = False
    return tradable


@pytest.mark.parametrize("members", [False, True], ids=["listings", "listings+membership"])
def test_xs_momentum_ranks_only_tradable_assets_with_a_full_lookback(members) -> None:
    close = _panel()
    tradable = _members(close) if members else close.notna()
    bars = Bars(close, tradable=tradable if members else None)
    mask = tradable.to_numpy()
    arrays = {
        "lookback": np.array([s[0] for s in XS_SETS]),
        "skip": np.array([s[1] for s in XS_SETS]),
        "top_n": np.array([s[2] for s in XS_SETS]),
        "long_short": np.array([s[3] for s in XS_SETS]),
    }
    batched = CrossSectionalMomentum.batch_weights(bars, arrays)
    for i, (lb, sk, top, ls) in enumerate(XS_SETS):
        want = _xs_reference(close.to_numpy(), mask, lb, sk, top, ls)
        single = CrossSectionalMomentum(lb, sk, top, ls).positions(bars).to_numpy()
        np.testing.assert_array_equal(single, want)
        np.testing.assert_array_equal(batched[:, :, i], want)
        assert (single[~mask] == 0.0).all()
    if members:  # S0 still has prices while excluded, and would be ranked without the table
        plain = CrossSectionalMomentum(20, 0, 2).positions(close).to_numpy()
        assert (plain[100:180, 0] != 0).any()


def test_xs_momentum_on_closes_ranks_assets_with_prices() -> None:
    close = _panel()
    got = CrossSectionalMomentum(20, 0, 2).positions(close).to_numpy()
    want = _xs_reference(close.to_numpy(), close.notna().to_numpy(), 20, 0, 2, False)
    np.testing.assert_array_equal(got, want)
    arrays = {"lookback": np.array([20]), "skip": np.array([0]), "top_n": np.array([2])}
    arr = CrossSectionalMomentum.batch_weights(close.to_numpy(), arrays)
    np.testing.assert_array_equal(arr[:, :, 0], want)


def test_the_adjusted_view_is_what_xs_momentum_ranks() -> None:
    """A 2-for-1 split halves the raw price: on raw prices it looks like a -50% return."""
    close = _panel().iloc[:, :3].ffill().bfill()
    raw = close.copy()
    raw.iloc[150:, 0] /= 2.0
    split = pd.DataFrame(1.0, index=close.index, columns=close.columns)
    split.iloc[150, 0] = 2.0
    bars = Bars(raw, split=split)
    strategy = CrossSectionalMomentum(20, 0, 1)
    on_adjusted = strategy.positions(bars.adjusted()).to_numpy()
    np.testing.assert_allclose(on_adjusted, strategy.positions(close).to_numpy())
    assert not np.array_equal(strategy.positions(bars).to_numpy(), on_adjusted)


# --- the engine's single and batched paths agree on a panel with listings ------------------


ENGINE_CASES = [
    (SmaCross, {"fast": [5, 10], "slow": [20, 40]}, {}),
    (Momentum, {"lookback": [20, 60], "skip": [0, 2]}, {}),
    (MeanReversion, {"lookback": [10, 30]}, {}),
    (Breakout, {"lookback": [10, 25]}, {}),
    (BuyAndHold, {}, {}),
    (SmaCross, {"fast": [5, 10], "slow": [20, 40]}, {"rebalance": "W", "fee_bps": 5.0}),
    (CrossSectionalMomentum, {"lookback": [20, 40], "top_n": [2, 1], "skip": [0, 5]},
     {"rebalance": "M", "fee_bps": 5.0}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("cls", "space", "options"),
    ENGINE_CASES,
    ids=[f"{c.__name__}-{'opts' if o else 'plain'}" for c, _, o in ENGINE_CASES],
)
def test_single_and_batched_backtests_agree_on_a_panel_with_listings(cls, space, options) -> None:
    from backtest import simulate, simulate_batch

    bars = Bars(_panel())
    sets = pd.DataFrame(space) if space else pd.DataFrame(index=range(1))
    batch = simulate_batch(bars, cls, sets, **options)
    for i in range(len(sets)):
        params = {k: v.item() if hasattr(v, "item") else v for k, v in sets.iloc[i].items()}
        single = simulate(bars, cls(**params), **options)
        for metric in ("total_return", "sharpe_ratio", "max_drawdown"):
            got, want = batch.metrics[metric].iloc[i], single.metrics[metric]
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12), (metric, params)
        assert np.isfinite(single.equity.to_numpy()).all()
