"""Limit and stop entries with expiry, and risk sizing: the engine against a plain loop.

The reference is ``tests/reference_orders.py`` (written from ``engine/_orders.py``'s rules);
the engine must equal it to 1e-9, single and batched, long and short, with bars that gap
through the order level.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from backtest.data import Bars
from backtest.engine import simulate, simulate_batch
from backtest.errors import ConfigError, DataValidationError
from backtest.strategies import SmaCross
from tests.book_checks import assert_trades_equal_reference
from tests.engine_reference import schedule
from tests.reference_exits import Rules, atr_reference
from tests.reference_orders import Orders, units_with_orders
from tests.test_engine_stops import ohlc


def _bars(data: dict[str, pd.DataFrame]) -> Bars:
    return Bars(close=data["close"], open=data["open"], high=data["high"], low=data["low"])


def _reference(data, strategy, *, cost, rules, orders, execution, rebalance="bar", atr=None):
    signal = strategy.positions(data["close"]).to_numpy()
    n_assets = signal.shape[1]
    arrays = [data[k].to_numpy() for k in ("open", "high", "low", "close")]
    return units_with_orders(
        *arrays, signal / n_assets, signal, schedule(data["close"].index, rebalance), cost,
        rules, orders, execution == "next_open", atr,
    )  # fmt: skip


def _compare(res, returns, trades, index) -> None:
    np.testing.assert_allclose(res.returns.to_numpy(), returns, rtol=0, atol=1e-9)
    assert len(trades) > 0
    assert_trades_equal_reference(res, trades, index, "direction", "decision_time", "order_type")


CASES = {
    # kind, offset, valid, execution, sl, tp, rebalance
    "limit-close": ("limit", 0.01, 3, "close", 0.04, 0.06, "bar"),
    "limit-next_open-gtc": ("limit", 0.005, None, "next_open", 0.03, None, "bar"),
    "stop-close": ("stop", 0.01, 2, "close", 0.03, 0.08, "bar"),
    "stop-next_open": ("stop", 0.002, 5, "next_open", None, 0.05, "bar"),
    "stop-zero-offset-weekly": ("stop", 0.0, 4, "close", 0.05, None, "W"),
    "limit-every-3": ("limit", 0.01, 2, "next_open", 0.05, 0.05, 3),
}


@pytest.mark.parametrize("case", list(CASES))
def test_entry_orders_equal_reference_loop(case: str) -> None:
    """Long and short limit/stop entries with expiry, stops and both executions, to 1e-9."""
    kind, offset, valid, execution, sl, tp, rebalance = CASES[case]
    data = ohlc(400, 2, seed=11, gap=0.012)
    strategy = SmaCross(4, 15, long_short=True)
    res = simulate(
        _bars(data), strategy, fee_bps=6.0, slippage_bps=4.0, execution=execution,
        rebalance=rebalance, entry_order=kind, entry_offset=offset, entry_valid_bars=valid,
        stop_loss=sl, take_profit=tp,
    )  # fmt: skip
    returns, trades = _reference(
        data, strategy, cost=0.001, rules=Rules(sl, tp), execution=execution,
        orders=Orders(kind, offset, valid), rebalance=rebalance,
    )  # fmt: skip
    _compare(res, returns, trades, data["close"].index)
    kinds = set(res.trades["order_type"])
    assert kinds <= {kind} and kinds
    assert (res.trades["entry_time"] > res.trades["decision_time"]).all()
    assert set(res.trades["direction"]) == {-1, 1}


@pytest.mark.parametrize("execution", ["close", "next_open"])
@pytest.mark.parametrize("kind", ["market", "limit", "stop"])
def test_risk_sizing_and_atr_units_equal_reference_loop(kind: str, execution: str) -> None:
    """Risk sizing (capped by max_weight and the gross cap) with ATR offsets and ATR stops."""
    data = ohlc(350, 3, seed=23, gap=0.01)
    strategy = SmaCross(5, 20, long_short=True)
    orders = {} if kind == "market" else {"entry_offset": 0.5, "entry_valid_bars": 3}
    res = simulate(
        _bars(data), strategy, fee_bps=5.0, execution=execution, entry_order=kind,
        sizing="risk", risk_per_trade=0.02, stop_loss=2.0, trailing_stop=3.0,
        stop_unit="atr", atr_lookback=10, max_weight=0.6, max_gross_leverage=1.2, **orders,
    )  # fmt: skip
    atr = np.column_stack(
        [
            atr_reference(*(data[k].iloc[:, j].to_numpy() for k in ("high", "low", "close")), 10)
            for j in range(3)
        ]
    )
    returns, trades = _reference(
        data, strategy, cost=0.0005, execution=execution, atr=atr,
        rules=Rules(stop_loss=2.0, trailing_stop=3.0, use_atr=True),
        orders=Orders(kind, orders.get("entry_offset", 0.0), orders.get("entry_valid_bars"),
                      "risk", 0.02, 0.6, 1.2),
    )  # fmt: skip
    _compare(res, returns, trades, data["close"].index)


def test_batched_equals_single_per_set() -> None:
    """Order and sizing keys as engine.* columns: the batched pass equals simulate per set."""
    data = ohlc(300, 2, seed=5, gap=0.01)
    sets = pd.DataFrame(
        {
            "fast": [4, 5, 4, 6, 5],
            "slow": [15, 20, 15, 25, 20],
            "engine.entry_order": ["limit", "stop", "market", "stop", "limit"],
            "engine.entry_offset": [0.01, 0.005, 0.0, 0.0, 0.02],
            "engine.entry_valid_bars": [3, None, None, 2, 1],
            "engine.sizing": ["weight", "risk", "risk", "weight", "risk"],
            "engine.risk_per_trade": [None, 0.01, 0.02, None, 0.015],
            "engine.stop_loss": [0.05, 0.04, 0.03, None, 0.05],
        }
    )
    sets["long_short"] = True
    batch = simulate_batch(
        _bars(data), SmaCross, sets, fee_bps=3.0, keep_returns=True, execution="next_open"
    )
    assert batch.returns is not None
    for i, row in sets.iterrows():
        opts = {k.removeprefix("engine."): row[k] for k in sets.columns if k.startswith("engine.")}
        opts = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in opts.items()}
        if opts["entry_order"] == "market":
            opts.pop("entry_offset")
            opts.pop("entry_valid_bars")
        if opts["sizing"] == "weight":
            opts.pop("risk_per_trade")
        one = simulate(
            _bars(data), SmaCross(int(row["fast"]), int(row["slow"]), long_short=True),
            fee_bps=3.0, execution="next_open", **opts,
        )  # fmt: skip
        np.testing.assert_allclose(batch.returns[:, i], one.returns.to_numpy(), atol=1e-9, rtol=0)
        assert batch.metrics.loc[i, "n_trades"] == one.metrics["n_trades"]


def _one_asset(rows: list[tuple[float, float, float, float]]) -> Bars:
    index = pd.bdate_range("2020-01-01", periods=len(rows))
    frame = pd.DataFrame(rows, index=index, columns=["open", "high", "low", "close"])
    return Bars(**{k: frame[[k]].set_axis(["A"], axis=1) for k in frame.columns})


class _Fixed:
    """A strategy holding a given target per bar (one asset)."""

    param_names = ("t",)

    def __init__(self, target: list[float]) -> None:
        self.target = target

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"A": self.target[: len(prices)]}, index=prices.index, dtype=float)


GAPS = {
    # kind, side, bars after the decision bar (close 100), fill expected
    "limit-buy-gap-below": ("limit", 1, [(97.0, 99.0, 96.0, 98.0)], 97.0),
    "limit-buy-touch": ("limit", 1, [(100.0, 101.0, 98.5, 100.0)], 99.0),
    "limit-short-gap-above": ("limit", -1, [(103.0, 104.0, 102.0, 103.0)], 103.0),
    "stop-buy-gap-above": ("stop", 1, [(103.0, 104.0, 102.0, 103.0)], 103.0),
    "stop-buy-touch": ("stop", 1, [(100.0, 101.5, 99.0, 100.0)], 101.0),
    "stop-short-gap-below": ("stop", -1, [(97.0, 98.0, 96.0, 97.0)], 97.0),
    "stop-short-touch": ("stop", -1, [(100.0, 100.5, 98.0, 99.0)], 99.0),
}


@pytest.mark.parametrize("case", list(GAPS))
@pytest.mark.parametrize("execution", ["close", "next_open"])
def test_gaps_through_the_level_fill_at_the_open(case: str, execution: str) -> None:
    """A gap: a better price for a limit, a worse one for a stop; a touch fills at the level."""
    kind, side, after, fill = GAPS[case]
    rows = [(100.0, 100.5, 99.5, 100.0)] * 3 + after + [(fill, fill + 1, fill - 1, fill)] * 2
    target = [0.0, 0.0, float(side)] + [float(side)] * (len(rows) - 3)
    res = simulate(
        _one_asset(rows), _Fixed(target), entry_order=kind, entry_offset=0.01,
        execution=execution, check_lookahead=False,
    )  # fmt: skip
    first = res.trades.iloc[0]
    assert first["entry_price"] == pytest.approx(fill, abs=1e-12)
    assert first["entry_time"] == res.returns.index[3]
    assert first["decision_time"] == res.returns.index[2]
    assert first["direction"] == side


def test_expiry_cancels_and_waits_for_a_new_signal() -> None:
    """Unfilled after N bars: cancelled; no new order until the target changes."""
    flat = (100.0, 100.2, 99.8, 100.0)
    rows = [flat] * 8 + [(100.0, 100.0, 95.0, 96.0)] + [flat] * 3
    target = [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    kwargs = dict(entry_order="limit", entry_offset=0.02, check_lookahead=False)
    res = simulate(_one_asset(rows), _Fixed(target), entry_valid_bars=3, **kwargs)
    assert len(res.trades) == 0  # expired at bar 4; the dip at bar 8 finds no order
    gtc = simulate(_one_asset(rows), _Fixed(target), **kwargs)
    assert len(gtc.trades) == 1 and gtc.trades.iloc[0]["entry_price"] == 98.0
    long_enough = simulate(_one_asset(rows), _Fixed(target), entry_valid_bars=7, **kwargs)
    assert len(long_enough.trades) == 1


def test_exit_signal_cancels_a_pending_entry() -> None:
    flat = (100.0, 100.2, 99.8, 100.0)
    rows = [flat] * 5 + [(100.0, 100.0, 95.0, 96.0)] + [flat] * 2
    target = [0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    res = simulate(
        _one_asset(rows), _Fixed(target), entry_order="limit", entry_offset=0.02,
        check_lookahead=False,
    )  # fmt: skip
    assert len(res.trades) == 0


@pytest.mark.parametrize("kind", ["market", "limit", "stop"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_risk_sizing_loses_exactly_the_risk_at_the_stop(kind: str, seed: int) -> None:
    """Property: a trade stopped at its level (no gap) loses risk_per_trade x equity, costs off."""
    data = ohlc(500, 1, seed=seed, gap=0.004)
    orders = {} if kind == "market" else {"entry_offset": 0.003, "entry_valid_bars": 4}
    res = simulate(
        _bars(data), SmaCross(3, 12, long_short=True), entry_order=kind, sizing="risk",
        risk_per_trade=0.01, stop_loss=0.02, **orders,
    )  # fmt: skip
    growth = (1.0 + res.returns).cumprod()
    idx = res.returns.index
    stopped = res.trades[res.trades["exit_reason"] == "stop_loss"]
    level = stopped["entry_price"] * (1 - 0.02 * stopped["direction"])
    at_level = stopped[np.isclose(stopped["exit_price"], level, rtol=0, atol=1e-9)]
    assert len(at_level) >= 3
    for _, tr in at_level.iterrows():
        start = idx.get_loc(tr["entry_time"])
        end = idx.get_loc(tr["exit_time"])
        # equity the entry was sized from: the fill close (market) or the last close before
        before = growth.iloc[start] if kind == "market" else growth.iloc[start - 1]
        assert growth.iloc[end] / before == pytest.approx(1 - 0.01, abs=1e-12)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"entry_offset": 0.01}, "engine.entry_offset"),
        ({"entry_valid_bars": 3}, "engine.entry_valid_bars"),
        ({"entry_order": "iceberg"}, "engine.entry_order"),
        ({"entry_order": "limit", "entry_offset": -0.01}, "engine.entry_offset"),
        ({"entry_order": "limit", "entry_valid_bars": 0}, "engine.entry_valid_bars"),
        ({"entry_order": "limit", "entry_valid_bars": 1.5}, "engine.entry_valid_bars"),
        ({"risk_per_trade": 0.01}, "engine.risk_per_trade"),
        ({"sizing": "risk"}, "engine.risk_per_trade"),
        ({"sizing": "risk", "risk_per_trade": 1.5}, "engine.risk_per_trade"),
        ({"sizing": "risk", "risk_per_trade": 0.01}, "engine.sizing"),
        ({"sizing": "kelly"}, "engine.sizing"),
    ],
)
def test_bad_options_name_the_key(options: dict, key: str) -> None:
    data = ohlc(60, 1)
    with pytest.raises(ConfigError) as info:
        simulate(_bars(data), SmaCross(3, 10), check_lookahead=False, **options)
    assert info.value.key == key
    assert key in str(info.value)


def test_entry_orders_need_highs_and_lows() -> None:
    data = ohlc(60, 1)
    with pytest.raises(DataValidationError, match="entry_order=stop"):
        simulate(data["close"], SmaCross(3, 10), entry_order="stop", check_lookahead=False)


# ------------------------------------------------------------------ search, walk-forward, MC


def test_breakout_orders_experiment_runs_search_and_walk_forward(compose, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The shipped experiment, small, tracking off: its folds search engine.* order keys and
    the one-truth check holds each fold's choice against the single backtest."""
    from omegaconf import open_dict

    from backtest.app import run
    from backtest.results import load_result

    cfg = compose(
        "+experiment=breakout_orders", f"output_dir={tmp_path}", "tracking.enabled=false",
        "figures=false",
    )  # fmt: skip
    with open_dict(cfg):
        cfg.data.end = "2013-12-31"  # 6 years of the sample: 2 folds
        cfg.montecarlo.n_paths = 50
    run(cfg)
    stored = load_result(tmp_path)
    folds = stored.table("folds")
    assert stored.record["walkforward"]["n_folds"] == len(folds) >= 1
    assert {"engine.entry_offset", "engine.entry_valid_bars", "engine.risk_per_trade"} <= set(
        folds.columns
    )
    assert stored.record["montecarlo"]["n_paths"] == 50


def test_search_scores_of_order_keys_equal_single_backtests(compose, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from omegaconf import open_dict

    from backtest.app import run
    from backtest.results import load_result

    cfg = compose(
        "+experiment=breakout_orders", f"output_dir={tmp_path}", "tracking.enabled=false",
        "figures=false",
    )  # fmt: skip
    with open_dict(cfg):
        cfg.data.end = "2010-12-31"
        cfg.walkforward = None
        cfg.montecarlo = None
    run(cfg)
    record = load_result(tmp_path).record
    trials = pd.read_parquet(tmp_path / "trials.parquet")
    assert trials["engine.risk_per_trade"].nunique() == 3
    assert trials["n_trades"].gt(0).mean() > 0.9
    assert record["metrics"]["sharpe_ratio"] == pytest.approx(record["objective"], rel=1e-9)


def test_parameter_jitter_draws_order_levels_and_runs_them() -> None:
    """Monte Carlo parameter_jitter of engine.entry_offset and engine.risk_per_trade: each
    path equals simulate() with its drawn levels."""
    from backtest.config import EngineConfig, EntryOrder, MonteCarloConfig, MonteCarloMethod, Sizing
    from backtest.montecarlo import MonteCarloSimulator

    data = ohlc(400, 2, seed=8)
    engine = EngineConfig(
        fee_bps=5.0, stop_loss=0.04, entry_order=EntryOrder.stop, entry_offset=0.01,
        sizing=Sizing.risk, risk_per_trade=0.01,
    )  # fmt: skip
    cfg = MonteCarloConfig(
        method=MonteCarloMethod.parameter_jitter, n_paths=10, seed=3,
        jitter={"engine.entry_offset": 0.5, "engine.risk_per_trade": 0.5},
    )  # fmt: skip
    report = MonteCarloSimulator(cfg, progress=False).run(
        None, prices=_bars(data), strategy=SmaCross(5, 30), engine=engine
    )
    paths = report.paths
    offsets = paths["engine.entry_offset"].to_numpy()
    risks = paths["engine.risk_per_trade"].to_numpy()
    assert len(set(offsets)) > 5 and ((offsets >= 0.005 - 1e-12) & (offsets <= 0.015 + 1e-12)).all()
    for i in (0, 7):
        res = simulate(
            _bars(data), SmaCross(5, 30), fee_bps=5.0, stop_loss=0.04, entry_order="stop",
            entry_offset=float(offsets[i]), sizing="risk", risk_per_trade=float(risks[i]),
        )  # fmt: skip
        np.testing.assert_allclose(
            paths["sharpe_ratio"].iloc[i], res.metrics["sharpe_ratio"], rtol=1e-9
        )


def test_batch_base_completed_by_the_sets_own_columns() -> None:
    """sizing=risk for the batch, risk_per_trade only per set: each set equals simulate()."""
    data = ohlc(250, 1, seed=21)
    sets = pd.DataFrame({"fast": [4, 5], "slow": [15, 20],
                         "engine.risk_per_trade": [0.01, 0.02]})  # fmt: skip
    batch = simulate_batch(_bars(data), SmaCross, sets, sizing="risk", stop_loss=0.05,
                           keep_returns=True)  # fmt: skip
    assert batch.returns is not None
    for i, row in sets.iterrows():
        risk = float(row["engine.risk_per_trade"])
        one = simulate(_bars(data), SmaCross(int(row["fast"]), int(row["slow"])), sizing="risk",
                       stop_loss=0.05, risk_per_trade=risk)  # fmt: skip
        np.testing.assert_allclose(batch.returns[:, i], one.returns.to_numpy(), atol=1e-9, rtol=0)
    with pytest.raises(ConfigError, match="risk_per_trade"):  # no column completes it
        simulate_batch(_bars(data), SmaCross, sets[["fast", "slow"]], sizing="risk",
                       stop_loss=0.05)  # fmt: skip


def test_entry_orders_on_a_real_universe_fill_only_where_tradable() -> None:
    """The shipped universe panel (late listings, early delistings): stop entries never
    fill where an asset is not tradable, and the batched pass equals simulate per set."""
    import dataclasses

    from backtest.config import DataConfig
    from backtest.data import load_bars

    panel = load_bars(DataConfig(source="universe_sample"))  # closes only: OHLC around them
    close = panel.close
    open_ = close.shift(1).where(close.shift(1).notna(), close).where(close.notna())
    wiggle = 1 + 0.01 * np.abs(np.sin(np.arange(len(close))))[:, None]
    bars = dataclasses.replace(
        panel, open=open_, high=np.maximum(open_, close) * wiggle,
        low=np.minimum(open_, close) / wiggle,
    )  # fmt: skip
    opts = dict(entry_order="stop", entry_offset=0.005, entry_valid_bars=3, stop_loss=0.08,
                execution="next_open", fee_bps=2.0)  # fmt: skip
    res = simulate(bars, SmaCross(10, 40), **opts)
    assert len(res.trades) > 20 and set(res.trades["order_type"]) == {"stop"}
    listed = bars.close.notna()
    for _, tr in res.trades.iterrows():
        assert listed.loc[tr["entry_time"], tr["asset"]]
    sets = pd.DataFrame({"fast": [10, 20], "slow": [40, 60]})
    batch = simulate_batch(bars, SmaCross, sets, keep_returns=True, **opts)
    assert batch.returns is not None
    for i, row in sets.iterrows():
        one = simulate(bars, SmaCross(int(row["fast"]), int(row["slow"])), **opts)
        np.testing.assert_allclose(batch.returns[:, i], one.returns.to_numpy(), atol=1e-9, rtol=0)
