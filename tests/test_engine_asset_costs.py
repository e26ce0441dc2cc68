"""Per-asset fees and slippage (``engine.fee_bps: {default: 5, AAPL: 2}``) on every path.

The engine equals the plain per-bar loops of ``tests/engine_reference.py`` (sleeves and
cash/units accounting, every execution and schedule) and ``tests/reference_orders.py``
(entry orders and stops) given one cost per asset, to 1e-9; the batched pass equals the
single backtest per set; vectorbt's per-column ``fees`` give the same book; a mapping that
prices every asset alike is its number; bad mappings fail naming the symbol.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.config import DataConfig
from backtest.data import Bars, load_bars
from backtest.engine import simulate, simulate_batch
from backtest.errors import ConfigError
from backtest.strategies import SmaCross
from tests.engine_reference import COSTS, Options, reference_backtest, schedule
from tests.reference_exits import Rules
from tests.reference_orders import Orders, units_with_orders
from tests.test_engine_kernel import BlockWeights
from tests.test_engine_stops import ohlc

FEES = {"default": 5.0, "SYN0": 1.0, "SYN2": 20.0}
SLIPPAGE = {"default": 2.0, "SYN1": 9.0}


def _bars(n_assets: int = 3, n_bars: int = 300) -> Bars:
    return load_bars(DataConfig(n_bars=n_bars, n_assets=n_assets, seed=3))


def _per_asset(mapping: dict[str, float], symbols: list[str]) -> list[float]:
    """The mapping resolved by hand: the symbol's own bps, else the default."""
    return [mapping.get(s, mapping["default"]) for s in symbols]


CASES = {
    "sleeves": {},
    "units-weekly": {"rebalance": "W"},
    "units-next_open": {"execution": "next_open"},
    "units-every-5-full": {
        "rebalance": 5,
        "initial_capital": 100_000.0,
        "fixed_cost": 1.0,
        "min_commission": 2.5,
        "borrow_rate": 0.03,
    },
}


@pytest.mark.parametrize("case", list(CASES))
def test_per_asset_costs_equal_reference_loop(case: str) -> None:
    """Long, short and levered weights: returns, cost table, trades and turnover to 1e-9."""
    bars = _bars()
    strategy = BlockWeights(seed=11, scale=0.9)
    options = CASES[case]
    result = simulate(
        bars, strategy, periods_per_year=252, fee_bps=FEES, slippage_bps=SLIPPAGE, **options
    )
    ref_opts = Options(
        fee_bps=_per_asset(FEES, bars.symbols),
        slippage_bps=_per_asset(SLIPPAGE, bars.symbols),
        **options,
    )
    out = strategy.positions(bars.close).to_numpy()
    ref = reference_backtest(bars, out, out, [1.0] * out.shape[1], ref_opts)
    np.testing.assert_allclose(result.returns.to_numpy(), ref.returns, rtol=0, atol=1e-9)
    assert result.costs is not None
    for name in COSTS:
        np.testing.assert_allclose(
            result.costs[name].to_numpy(), [c[name] for c in ref.costs], rtol=1e-9, atol=1e-9
        )
    assert result.metrics["turnover"] == pytest.approx(ref.turnover, rel=1e-9)
    expected = sorted(ref.trades, key=lambda d: (d["entry_bar"], d["asset"]))
    assert len(result.trades) == len(expected) > 0
    np.testing.assert_allclose(
        result.trades["return"].to_numpy(), [tr["ret"] for tr in expected], rtol=1e-9, atol=1e-12
    )
    # the per-asset rates matter: one blended rate gives another book
    blended = simulate(bars, strategy, periods_per_year=252, fee_bps=5.0, slippage_bps=2.0,
                       **options)  # fmt: skip
    assert np.abs(blended.returns.to_numpy() - result.returns.to_numpy()).max() > 1e-6


@pytest.mark.parametrize("execution", ["close", "next_open"])
@pytest.mark.parametrize("kind", ["limit", "stop"])
def test_entry_orders_and_stops_with_per_asset_costs_equal_reference(
    kind: str, execution: str
) -> None:
    """Limit/stop entries, stops and take-profits, each fill charged its asset's rate."""
    data = ohlc(300, 2, seed=11, gap=0.012)
    bars = Bars(close=data["close"], open=data["open"], high=data["high"], low=data["low"])
    strategy = SmaCross(4, 15, long_short=True)
    fees, slip = {"default": 6.0, "S1": 25.0}, {"S0": 1.0, "S1": 3.0}
    res = simulate(
        bars, strategy, fee_bps=fees, slippage_bps=slip, execution=execution, entry_order=kind,
        entry_offset=0.01, entry_valid_bars=3, stop_loss=0.04, take_profit=0.06,
    )  # fmt: skip
    signal = strategy.positions(data["close"]).to_numpy()
    arrays = [data[k].to_numpy() for k in ("open", "high", "low", "close")]
    returns, trades = units_with_orders(
        *arrays, signal / 2, signal, schedule(data["close"].index, "bar"),
        [(6.0 + 1.0) / 1e4, (25.0 + 3.0) / 1e4], Rules(0.04, 0.06), Orders(kind, 0.01, 3),
        execution == "next_open",
    )  # fmt: skip
    np.testing.assert_allclose(res.returns.to_numpy(), returns, rtol=0, atol=1e-9)
    got = res.trades.sort_values(["entry_time", "asset"], kind="stable")
    want = sorted(trades, key=lambda d: (d["entry_bar"], d["asset"]))
    assert len(got) == len(want) > 0
    np.testing.assert_allclose(
        got["return"].to_numpy(), [tr["return"] for tr in want], rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize(
    "options", [{}, {"rebalance": "W", "execution": "next_open"}], ids=["sleeves", "units"]
)
def test_batched_per_asset_costs_equal_single_per_set(options: dict) -> None:
    """The batched pass with a cost mapping equals simulate per set; scalar searches still work."""
    bars = _bars(n_bars=250)
    sets = pd.DataFrame({"fast": [4, 5, 6, 5], "slow": [15, 20, 25, 30], "long_short": True})
    batch = simulate_batch(
        bars, SmaCross, sets, fee_bps=FEES, slippage_bps=SLIPPAGE, keep_returns=True, **options
    )
    assert batch.returns is not None
    for i, row in sets.iterrows():
        one = simulate(
            bars, SmaCross(int(row["fast"]), int(row["slow"]), long_short=True),
            fee_bps=FEES, slippage_bps=SLIPPAGE, **options,
        )  # fmt: skip
        np.testing.assert_allclose(batch.returns[:, i], one.returns.to_numpy(), atol=1e-9, rtol=0)
        assert batch.metrics.loc[i, "cost_fees"] == pytest.approx(one.metrics["cost_fees"])
    # a searched number of bps replaces the fee mapping (the slippage mapping stays)
    searched = sets.assign(**{"engine.fee_bps": [3.0, 3.0, 0.0, 0.0]})
    mixed = simulate_batch(
        bars, SmaCross, searched, fee_bps=FEES, slippage_bps=SLIPPAGE, keep_returns=True,
        **options,
    )  # fmt: skip
    assert mixed.returns is not None
    one = simulate(bars, SmaCross(5, 20, long_short=True), fee_bps=3.0, slippage_bps=SLIPPAGE,
                   **options)  # fmt: skip
    np.testing.assert_allclose(mixed.returns[:, 1], one.returns.to_numpy(), atol=1e-9, rtol=0)
    assert np.abs(mixed.returns[:, 1] - batch.returns[:, 1]).max() > 1e-6


def test_a_mapping_pricing_every_asset_alike_is_its_number() -> None:
    """One asset (or equal values): the same result as the number, on the fused kernels too."""
    one = _bars(n_assets=1)
    sets = pd.DataFrame({"fast": [5, 8], "slow": [20, 30]})
    as_map = simulate_batch(one, SmaCross, sets, fee_bps={"default": 9.0, "SYN0": 4.0})
    as_num = simulate_batch(one, SmaCross, sets, fee_bps=4.0)
    pd.testing.assert_frame_equal(as_map.metrics, as_num.metrics)
    a = simulate(one, SmaCross(5, 20), fee_bps={"SYN0": 4.0}).returns
    b = simulate(one, SmaCross(5, 20), fee_bps=4.0).returns
    pd.testing.assert_series_equal(a, b)
    three = _bars()
    same = simulate_batch(three, SmaCross, sets, slippage_bps={"default": 3.0, "SYN1": 3.0})
    pd.testing.assert_frame_equal(
        same.metrics, simulate_batch(three, SmaCross, sets, slippage_bps=3.0).metrics
    )


@pytest.mark.parametrize(
    ("fees", "message"),
    [
        (
            {"default": 5.0, "AAPL": 2.0},
            r"prices symbol 'AAPL', which is not in the data "
            r"\(symbols: SYN0, SYN1, SYN2\)",
        ),
        ({"SYN0": 2.0}, r"no entry for symbol 'SYN1' and no 'default'"),
        ({"default": 5.0, "SYN0": -1.0}, r"engine.fee_bps.SYN0 must be a finite number >= 0"),
        ({}, r"engine.fee_bps is an empty mapping"),
        ({"default": "cheap"}, r"engine.fee_bps.default must be a number"),
    ],
    ids=["unknown-symbol", "no-default", "negative", "empty", "not-a-number"],
)
def test_bad_mappings_are_refused_naming_the_symbol(fees: dict, message: str) -> None:
    bars = _bars(n_bars=120)
    with pytest.raises(ConfigError, match=message):
        simulate(bars, SmaCross(5, 20), fee_bps=fees)
    with pytest.raises(ConfigError, match=message):
        simulate_batch(bars, SmaCross, {"fast": [5], "slow": [20]}, fee_bps=fees)


def test_a_mapping_is_not_searchable() -> None:
    bars = _bars(n_bars=120)
    sets = pd.DataFrame({"fast": [5, 6], "slow": [20, 20]})
    sets["engine.fee_bps"] = [{"default": 1.0}, {"default": 2.0}]
    with pytest.raises(ConfigError, match=r"engine.fee_bps per asset .* cannot be searched"):
        simulate_batch(bars, SmaCross, sets)


def test_search_walkforward_and_montecarlo_price_each_asset() -> None:
    """The search and walk-forward evaluators and the Monte Carlo book equal simulate."""
    from backtest.config import EngineConfig
    from backtest.montecarlo._strategy import portfolio_returns
    from backtest.search import StrategyEvaluator
    from backtest.walkforward import StrategyReturnsEvaluator

    bars = _bars(n_bars=250)
    n = len(bars.index)
    sets = pd.DataFrame({"fast": [5, 6], "slow": [20, 30]})
    one = simulate(bars, SmaCross(5, 20), fee_bps=FEES, slippage_bps=SLIPPAGE)
    costs = {"fee_bps": FEES, "slippage_bps": SLIPPAGE}
    searched = StrategyEvaluator(bars, SmaCross, **costs).evaluate_batch(sets)  # type: ignore[arg-type]
    assert searched.metrics.loc[0, "sharpe_ratio"] == pytest.approx(
        one.metrics["sharpe_ratio"], rel=1e-9
    )
    wf = StrategyReturnsEvaluator(bars, SmaCross, **costs)  # type: ignore[arg-type]
    np.testing.assert_allclose(wf.returns(sets, n)[:, 0], one.returns.to_numpy(), atol=1e-12)
    np.testing.assert_allclose(wf.trade({"fast": 5, "slow": 20}, n)[0], one.returns, atol=1e-12)
    pos = SmaCross(5, 20).positions(bars.close).fillna(0.0).to_numpy()
    mc = portfolio_returns(
        bars.close.to_numpy(),
        pos,
        EngineConfig(**costs),
        bars.close.columns,  # type: ignore[arg-type]
    )
    np.testing.assert_allclose(mc, one.returns.to_numpy(), atol=1e-12)


@pytest.mark.slow
def test_per_asset_fees_equal_vectorbt_per_column_fees() -> None:
    """vectorbt's targetpercent orders with one fee per column give our book's equity.

    As ``test_engine_xs``'s monthly cross-check: one book with cash sharing, sells first,
    filled at the close; our fee + slippage of an asset is vectorbt's fee of its column.
    """
    vbt = pytest.importorskip("vectorbt")
    from backtest.engine._schedule import rebalance_flags

    bars = load_bars(DataConfig(source="sample"))
    close = bars.close
    strategy = BlockWeights(seed=4, block=21, scale=0.49)  # gross <= 0.98: no borrowing
    raw = strategy.positions(close).abs()
    fees, slip = {"NASDAQ": 25.0, "SP500": 2.0}, {"default": 1.0, "SP500": 0.5}
    ours = simulate(
        close, _Fixed(raw), fee_bps=fees, slippage_bps=slip, rebalance="M", periods_per_year=252
    )
    size = raw.to_numpy().copy()
    size[~rebalance_flags(close.index, "M")] = np.nan
    pf = vbt.Portfolio.from_orders(
        close, pd.DataFrame(size, index=close.index, columns=close.columns),
        size_type="targetpercent", fees=np.array([[26.0e-4, 2.5e-4]]), group_by=True,
        cash_sharing=True, call_seq="auto", init_cash=1.0, freq="1D",
    )  # fmt: skip
    np.testing.assert_allclose(ours.equity.to_numpy(), pf.value().to_numpy(), rtol=1e-6)
    assert len(pf.orders.records) > 50
    # and the fees charged per column are ours per asset
    records = pf.orders.records
    paid = [records["fees"][records["col"] == j].sum() for j in range(2)]
    assert paid[0] > 5 * paid[1] > 0
    assert ours.metrics["cost_fees"] + ours.metrics["cost_slippage"] == pytest.approx(sum(paid))


class _Fixed:
    """Given target weights (a weights strategy)."""

    output = "weights"

    def __init__(self, weights: pd.DataFrame) -> None:
        self.weights = weights

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        return self.weights.loc[prices.index]


def test_the_config_takes_a_mapping_and_refuses_an_unknown_symbol(compose, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``engine.fee_bps={default:5,SYN1:1}`` as the command line composes it: run_backtest
    prices each asset as simulate does; a symbol not in the data fails before the run."""
    from backtest.tasks import run_backtest

    base = ("tracking=none", "figures=false", "data.n_bars=300", "data.n_assets=2")
    cfg = compose(*base, "engine.fee_bps={default:5,SYN1:1}", f"output_dir={tmp_path / 'a'}")
    result = run_backtest(cfg)
    bars = load_bars(DataConfig(n_bars=300, n_assets=2, seed=cfg.seed))
    one = simulate(bars, SmaCross(10, 50), fee_bps={"default": 5.0, "SYN1": 1.0},
                   slippage_bps=cfg.engine.slippage_bps)  # fmt: skip
    assert result.metrics["sharpe_ratio"] == pytest.approx(one.metrics["sharpe_ratio"], rel=1e-9)
    bad = compose(*base, "engine.fee_bps={default:5,AAPL:1}", f"output_dir={tmp_path / 'b'}")
    with pytest.raises(ConfigError, match=r"'AAPL', which is not in the data"):
        run_backtest(bad)
    assert not (tmp_path / "b").exists()
