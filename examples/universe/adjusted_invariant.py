"""Unadjusted prices + corporate actions = total-return-adjusted prices (README "Universes").

The shipped panel (``data=universe_sample``) holds traded, unadjusted prices and its
actions file: CRUX splits 2-for-1 (its price halves), BOLT and DYNA pay quarterly cash
dividends (their price drops by the dividend), and stocks list late and delist early. The
engine fills and values the book at the traded prices, scales units at a split and pays a
dividend in cash on its ex-date; strategies rank ``bars.adjusted()``. With costs off and
the book rebalanced in units at every bar (``rebalance=1``: each dividend reinvested at
once), that book's equity equals the same book's on the total-return-adjusted prices with
no actions, to 1e-9. Run: ``python examples/universe/adjusted_invariant.py``.
"""

from __future__ import annotations

from backtest import simulate
from backtest.config import DataConfig
from backtest.data import load_bars
from backtest.strategies import CrossSectionalMomentum


def main() -> None:
    """Run the two books and print how far apart their equity curves are."""
    bars = load_bars(DataConfig(source="universe_sample"))  # unadjusted prices + actions
    adjusted = bars.adjusted()  # total-return prices, no split or dividend left
    strategy = CrossSectionalMomentum(lookback=63, skip=5, top_n=4)
    options = {"rebalance": 1, "fee_bps": 0.0, "slippage_bps": 0.0}
    on_raw = simulate(bars, strategy, **options)
    on_adjusted = simulate(adjusted, strategy, **options)
    gap = float((on_raw.equity - on_adjusted.equity).abs().max())
    print(f"splits: {int((bars.split.to_numpy() != 1).sum())}, "
          f"dividends: {int((bars.dividend.to_numpy() > 0).sum())}")  # fmt: skip
    print(f"final equity: {on_raw.equity.iloc[-1]:.6f} (unadjusted + actions), "
          f"{on_adjusted.equity.iloc[-1]:.6f} (adjusted); largest gap {gap:.1e}")  # fmt: skip
    if gap > 1e-9:
        raise SystemExit(f"the invariant does not hold: gap {gap:.3e}")


if __name__ == "__main__":
    main()
