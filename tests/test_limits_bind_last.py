"""Limits bind last: no target weight ever exceeds ``max_weight``, ``max_gross_leverage`` or
``long_only``, whatever the volatility overlay asks for, in every path of the engine.

The limits and the overlay are compared with the plain loop of ``tests/engine_reference.py``
(written from the rule in ``backtest/engine/_limits.py``'s docstring), then checked as a
property over random books, prices, overlays and limits: the target weights of
:func:`~backtest.engine.target_weights` (what the single backtest trades), the weights the
single backtest holds after a rebalance fill, and the batched per-bar kernel (each set's
metrics equal to the single backtest's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backtest.data import Bars
from backtest.engine import simulate, simulate_batch, target_weights
from backtest.engine._limits import limit_targets
from tests.engine_reference import Options
from tests.engine_reference import limits as reference_limits


@dataclass(frozen=True)
class RandomBook:
    """Seeded target weights (long, short, levered, some NaN), the same bar by bar on any prefix."""

    seed: int = 0
    scale: float = 2.0
    output: ClassVar[str] = "weights"
    param_names: ClassVar[tuple[str, ...]] = ("seed", "scale")

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        n, a = prices.shape
        rows = []
        for t in range(n):  # one generator per bar: a prefix sees the same rows
            rng = np.random.default_rng([self.seed, t])
            row = rng.uniform(-self.scale, self.scale, a)
            row[rng.random(a) < 0.1] = np.nan
            rows.append(row)
        return pd.DataFrame(rows, index=prices.index, columns=prices.columns)


def _bars(seed: int, n: int, a: int, vol: float) -> Bars:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0.0, vol, (n, a)), axis=0))
    idx = pd.bdate_range("2021-01-04", periods=n)
    frame = pd.DataFrame(close, index=idx, columns=[f"S{j}" for j in range(a)])
    opens = frame.shift(1).fillna(frame)
    return Bars(frame, opens, np.maximum(frame, opens) * 1.002, np.minimum(frame, opens) * 0.998)


_limits = st.fixed_dictionaries(
    {
        "max_weight": st.one_of(st.none(), st.floats(0.05, 1.5)),
        "max_gross_leverage": st.one_of(st.none(), st.floats(0.2, 4.0)),
        "long_only": st.booleans(),
        "target_volatility": st.one_of(st.none(), st.floats(0.02, 2.0)),
        "vol_lookback": st.integers(2, 30),
    }
)


def _within(weights: np.ndarray, opts: dict) -> None:
    tol = 1e-12  # (a gross cap of g leaves a sum of g within rounding)
    if opts["max_weight"] is not None:
        assert np.abs(weights).max(initial=0.0) <= opts["max_weight"] * (1 + tol)
    if opts["max_gross_leverage"] is not None:
        assert np.abs(weights).sum(axis=1).max(initial=0.0) <= opts["max_gross_leverage"] * (
            1 + tol
        )
    if opts["long_only"]:
        assert (weights >= -1e-15).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(20, 90),
    a=st.integers(1, 5),
    vol=st.floats(0.001, 0.05),
    opts=_limits,
)
def test_limits_hold_after_the_overlay_and_equal_the_reference(
    seed: int, n: int, a: int, vol: float, opts: dict
) -> None:
    bars = _bars(seed, n, a, vol)
    book = RandomBook(seed).positions(bars.close).to_numpy()
    close = bars.close.to_numpy()
    out, flags = limit_targets(book, close, periods_per_year=252.0, **opts)
    _within(out, opts)
    ref_out, ref_flags = reference_limits(
        book.tolist(), close.tolist(), Options(periods_per_year=252.0, **opts)
    )
    np.testing.assert_allclose(out, np.array(ref_out), rtol=1e-12, atol=1e-15)
    assert flags.tolist() == ref_flags
    # what the single backtest trades, and what it holds after a rebalance fill (no costs:
    # the fill is the target exactly)
    engine = {**opts, "periods_per_year": 252}
    _within(target_weights(RandomBook(seed), bars, engine).to_numpy(), opts)
    result = simulate(bars, RandomBook(seed), rebalance="D", **engine)
    assert result.weights is not None
    if (result.equity > 0).all():  # (a levered book can lose everything: weights then flip)
        held = {k: _loose(v) if k in ("max_weight", "max_gross_leverage") else v
                for k, v in opts.items()}  # fmt: skip
        _within(result.weights.to_numpy(), held)


def _loose(limit: float | None) -> float | None:
    return None if limit is None else limit * (1 + 1e-9)


def test_the_issue_case_four_assets_vol_target_above_the_weight_cap() -> None:
    """``max_weight=0.3`` with ``target_volatility=0.3`` on four assets: no weight above 0.3.

    Before, the overlay scaled the clipped book up to 1.37 per asset (gross 5.5).
    """
    bars = _bars(7, 400, 4, 0.002)  # a quiet book: the overlay wants to lever it up

    @dataclass(frozen=True)
    class Equal:
        output: ClassVar[str] = "weights"

        def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
            return pd.DataFrame(0.25, index=prices.index, columns=prices.columns)

    opts = {"max_weight": 0.3, "target_volatility": 0.3, "vol_lookback": 20}
    tw = target_weights(Equal(), bars, opts).to_numpy()
    assert tw.max() == pytest.approx(0.3, rel=1e-12)
    assert (tw <= 0.3).all()
    result = simulate(bars, Equal(), **opts)
    # the overlay's clipping is a limit binding: every bar from the lookback on counts
    assert result.metrics["limit_scaled_fraction"] == pytest.approx((400 - 20) / 400)


def test_overlay_clipping_alone_is_counted() -> None:
    """A book within ``max_weight`` that the overlay lifts past it: those bars are limited."""
    bars = _bars(3, 200, 2, 0.004)
    book = np.full((200, 2), 0.2)
    close = bars.close.to_numpy()
    _, unscaled = limit_targets(book, close, max_weight=0.5)
    assert not unscaled.any()  # the book never reaches the cap by itself
    out, flags = limit_targets(book, close, max_weight=0.5, target_volatility=0.5, vol_lookback=10)
    assert flags[10:].all() and not flags[:10].any()
    assert np.allclose(out[10:], 0.5)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), opts=_limits, next_open=st.booleans())
def test_batched_kernel_applies_the_same_limits_per_set(
    seed: int, opts: dict, next_open: bool
) -> None:
    """Limits and overlay as per-set ``engine.<key>`` columns: each set equals ``simulate``."""
    bars = _bars(seed, 120, 3, 0.01)
    sets = pd.DataFrame(
        {
            "seed": [seed, seed + 1, seed + 2],
            "scale": [2.0, 0.5, 1.0],
            "engine.max_weight": [opts["max_weight"], 0.4, None],
            "engine.target_volatility": [opts["target_volatility"], None, 0.3],
        }
    )
    fixed = {
        "max_gross_leverage": opts["max_gross_leverage"],
        "long_only": opts["long_only"],
        "vol_lookback": opts["vol_lookback"],
        "execution": "next_open" if next_open else "close",
        "fee_bps": 2.0,
        "periods_per_year": 252,
    }
    batch = simulate_batch(bars, RandomBook, sets, **fixed).metrics
    for i, row in sets.iterrows():
        single = simulate(
            bars,
            RandomBook(int(row["seed"]), float(row["scale"])),
            **fixed,
            max_weight=_none(row["engine.max_weight"]),
            target_volatility=_none(row["engine.target_volatility"]),
        ).metrics
        for name in ("sharpe_ratio", "total_return", "n_trades", "limit_scaled_fraction"):
            assert batch.loc[i, name] == pytest.approx(single[name], rel=1e-9, abs=1e-12), name


def _none(value: object) -> object:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else value
