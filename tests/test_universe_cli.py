"""Universes on the command line (issue 25): the loaders, the one summary line, the errors.

The command line and the Python API load a panel with listings the same way (``load_bars``)
and give the same result; a NaN inside a listing, a bad membership table or a bad actions
file is one line naming the key and the fix, before anything runs; the shipped experiment
``xs_universe`` runs through search, walk-forward and Monte Carlo.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest import simulate
from backtest.config import DataConfig
from backtest.data import load_bars
from backtest.strategies import BuyAndHold, CrossSectionalMomentum
from tests.cli_run import backtest_command

pytestmark = pytest.mark.slow  # each test starts the command (2-10 s)

LINE = "3 assets list late, 2 delist early; trading only while listed"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return backtest_command(*args, "tracking=none", cwd=cwd)


def _record(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


def test_the_shipped_panel_runs_logs_its_universe_and_equals_the_python_api(tmp_path) -> None:
    out = tmp_path / "run"
    args = ["strategy.lookback=63", "strategy.skip=5", "strategy.top_n=4"]
    proc = cli("data=universe_sample", "strategy=xs_momentum", *args, "engine.rebalance=M",
               "engine.fee_bps=5", f"output_dir={out}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert LINE in proc.stdout + proc.stderr
    cli_metrics = _record(out)["metrics"]
    bars = load_bars(DataConfig(source="universe_sample"))
    api = simulate(  # the command line's engine defaults: 1 bp slippage
        bars, CrossSectionalMomentum(63, 5, 4), rebalance="M", fee_bps=5.0, slippage_bps=1.0
    )
    for name in ("total_return", "sharpe_ratio", "max_drawdown", "n_trades"):
        assert cli_metrics[name] == pytest.approx(api.metrics[name], rel=1e-9), name
    trades = pd.read_parquet(out / "trades.parquet")
    _never_held_while_untradable(trades, bars)


def _never_held_while_untradable(trades: pd.DataFrame, bars) -> None:
    """Every trade's bars (entry close to exit close) are tradable bars of its asset."""
    mask = pd.DataFrame(bars.tradable_mask(), index=bars.index, columns=bars.symbols)
    assert len(trades)
    for trade in trades.itertuples():
        held = mask.loc[trade.entry_time : trade.exit_time, trade.asset]
        assert held.all(), (trade.asset, trade.entry_time, trade.exit_time)


def test_a_delisted_holding_is_closed_and_a_membership_table_narrows_the_book(
    tmp_path,
) -> None:
    members = tmp_path / "members.csv"
    # ARGO leaves the index for 2017 although it keeps trading; everyone else is a member
    others = [s for s in load_bars(DataConfig(source="universe_sample")).symbols if s != "ARGO"]
    rows = [("ARGO", "2016-01-01", "2016-12-31"), ("ARGO", "2018-01-01", "")]
    rows += [(s, "2016-01-01", "") for s in others]
    pd.DataFrame(rows, columns=["symbol", "start", "end"]).to_csv(members, index=False)
    out = tmp_path / "run"
    proc = cli("data=universe_sample", f"data.universe={members}", "strategy=buy_and_hold",
               f"output_dir={out}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "the membership table excludes 1 asset(s)" in proc.stdout + proc.stderr
    trades = pd.read_parquet(out / "trades.parquet")
    closed = trades.loc[trades["exit_reason"] == "delisted", "asset"].tolist()
    assert sorted(closed) == ["HALO", "KILO"]
    argo = trades.loc[trades["asset"] == "ARGO"]
    assert argo["exit_reason"].tolist() == ["untradable", "end"]
    assert argo["exit_time"].iloc[0] == pd.Timestamp("2016-12-30")
    assert argo["entry_time"].iloc[1] == pd.Timestamp("2018-01-01")
    bars = load_bars(DataConfig(source="universe_sample", universe=str(members)))
    _never_held_while_untradable(trades, bars)


def _prices_with_a_gap(tmp_path: Path) -> Path:
    days = pd.bdate_range("2021-01-01", periods=200)
    rng = np.random.default_rng(5)
    rows = []
    for j, symbol in enumerate(["AAA", "BBB", "CCC"]):
        close = 40.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 200)))
        for t, day in enumerate(days):
            if (symbol == "BBB" and t < 30) or (symbol == "CCC" and t > 150):
                continue  # BBB lists late, CCC delists early: rows simply absent
            value = np.nan if (symbol == "AAA" and t in (60, 61)) else close[t]
            rows.append((day.date().isoformat(), symbol, value))
        del j
    path = tmp_path / "prices.csv"
    pd.DataFrame(rows, columns=["date", "symbol", "close"]).to_csv(path, index=False)
    return path


def test_a_nan_inside_a_listing_is_one_line_with_each_repair_in_bars(tmp_path) -> None:
    path = _prices_with_a_gap(tmp_path)
    proc = cli("data=csv", f"data.path={path}", "strategy.fast=5", "strategy.slow=20",
               cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1, proc.stderr
    assert "column 'AAA': 2 NaN price(s)" in error[0] and "inside its listing" in error[0]
    assert "data.repair=ffill carries the previous close over these 2 bar(s)" in error[0]
    assert "data.repair=drop drops the 2 of 200 bars" in error[0]
    assert not (tmp_path / "outputs").exists()
    out = tmp_path / "repaired"
    proc = cli("data=csv", f"data.path={path}", "data.repair=ffill", "strategy.fast=5",
               "strategy.slow=20", f"output_dir={out}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _record(out)["n_bars"] == 200  # nothing truncated
    assert "1 asset lists late, 1 delists early" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("key", "table", "message"),
    [
        ("data.universe", "symbol,start,end\nZZZ,2021-01-01,\n", "not in the data"),
        ("data.actions", "date,symbol,split,dividend\n2021-02-01,AAA,1,-0.5\n",
         "dividend must be a finite number >= 0"),
        ("data.actions", "date,symbol,split,dividend\n2021-02-01,AAA,0,0\n",
         "split must be a positive number"),
    ],
    ids=["unknown-member", "negative-dividend", "zero-split"],
)  # fmt: skip
def test_a_bad_universe_or_actions_file_fails_before_anything_runs(
    tmp_path, key, table, message
) -> None:
    prices = _prices_with_a_gap(tmp_path)
    frame = pd.read_csv(prices)
    frame.loc[frame["close"].isna(), "close"] = 40.0
    frame.to_csv(prices, index=False)
    bad = tmp_path / "table.csv"
    bad.write_text(table)
    proc = cli("data=csv", f"data.path={prices}", f"{key}={bad}", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert key in proc.stderr and message in proc.stderr
    assert not (tmp_path / "outputs").exists()


def test_xs_universe_runs_search_walk_forward_and_monte_carlo(tmp_path) -> None:
    out = tmp_path / "xs"
    proc = cli("+experiment=xs_universe", "montecarlo.n_paths=100",
               "search.space.lookback=[42,63]", "search.space.top_n=[3,4]", "report=false",
               f"output_dir={out}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = _record(out)
    assert record["task"] == "walkforward" and record["name"] == "xs_universe"
    folds = pd.read_parquet(out / "folds.parquet")
    assert len(folds) == 3
    assert (out / "trials.parquet").is_file() and (out / "montecarlo_paths.parquet").is_file()
    assert LINE in proc.stdout + proc.stderr
    _never_held_while_untradable(pd.read_parquet(out / "trades.parquet"), load_bars(
        DataConfig(source="universe_sample")))  # fmt: skip


def test_buy_and_hold_python_api_on_the_panel_with_actions_is_flat_where_unlisted() -> None:
    bars = load_bars(DataConfig(source="universe_sample"))
    result = simulate(bars, BuyAndHold())
    assert np.isfinite(result.equity.to_numpy()).all()
    _never_held_while_untradable(result.trades, bars)
    assert sorted(result.trades.loc[result.trades["exit_reason"] == "delisted", "asset"]) == [
        "HALO",
        "KILO",
    ]


@pytest.mark.parametrize("method", ["synthetic_prices", "random_entries"])
def test_monte_carlo_methods_that_need_a_full_panel_say_so_before_anything_runs(
    tmp_path, method
) -> None:
    proc = cli("data=universe_sample", "strategy=xs_momentum", f"montecarlo={method}",
               "montecarlo.n_paths=20", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"montecarlo.method={method} simulates every asset on every bar" in proc.stderr
    assert "montecarlo=stationary_bootstrap" in proc.stderr
    assert not (tmp_path / "outputs").exists()
