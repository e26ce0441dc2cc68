"""Benchmarks a PM asks for (issue 25 item 4): a symbol, equal weight (held or rebalanced), a file.

References: bt 1.4.1 (an equal-weight book rebalanced monthly, with listings, delistings and a
membership exit), a plain per-bar loop of units and cash written here (corporate actions and
delisting returns), empyrical-reloaded for alpha, beta, information ratio and tracking error.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from backtest import metrics as m
from backtest.data import Bars, synthetic_prices
from backtest.engine import simulate
from backtest.engine._benchmark import benchmark_returns, check_benchmark
from backtest.engine._schedule import rebalance_flags
from backtest.errors import DataValidationError
from backtest.strategies import BuyAndHold, SmaCross
from tests.cli_run import run_cli

ROOT = Path(__file__).resolve().parent.parent


def _panel(n: int = 400, a: int = 6, seed: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Closes with a late listing, an early delisting and an index exit while still priced."""
    close = synthetic_prices(n, a, seed=seed)
    close.iloc[:50, 1] = np.nan  # lists late
    close.iloc[300:, 2] = np.nan  # delists early
    close.iloc[:120, 4] = np.nan  # lists later still
    tradable = close.notna()
    tradable.iloc[200:, 5] = False  # leaves the index while it still has prices
    return close, tradable


def _bt_equal_weight(prices: pd.DataFrame, select: pd.DataFrame | None, run: str) -> pd.Series:
    """bt's equal-weight book, rebalanced on ``run`` (RunMonthly / RunWeekly), growth of 1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import bt

        timing = {"M": bt.algos.RunMonthly(), "W": bt.algos.RunWeekly()}[run]
        chosen = bt.algos.SelectAll() if select is None else bt.algos.SelectWhere(select)
        strategy = bt.Strategy(
            "ew", [timing, chosen, bt.algos.WeighEqually(), bt.algos.Rebalance()]
        )
        test = bt.Backtest(
            strategy, prices, integer_positions=False, initial_capital=1e6, progress_bar=False
        )
        res = bt.run(test)
    return res.prices.iloc[:, 0].reindex(prices.index) / 100.0


@pytest.mark.parametrize("schedule", ["M", "W"], ids=["monthly", "weekly"])
def test_equal_weight_rebalanced_equals_bt_on_a_full_panel(schedule: str) -> None:
    close = synthetic_prices(300, 5, seed=3)
    result = simulate(close, BuyAndHold(), benchmark="equal_weight_rebalanced", rebalance=schedule)
    assert result.benchmark is not None
    expected = _bt_equal_weight(close, None, schedule)
    np.testing.assert_allclose(result.benchmark.to_numpy(), expected.to_numpy(), rtol=1e-12)
    # the benchmark's own metrics are those of its curve
    own = m.return_metrics(result.benchmark.pct_change().fillna(0.0).to_numpy())
    assert result.benchmark_metrics["sharpe_ratio"] == pytest.approx(own["sharpe_ratio"], 1e-9)


def test_equal_weight_rebalanced_equals_bt_with_listings_delistings_and_an_index_exit() -> None:
    """bt values a name that stopped being tradable at its last tradable close (frozen there)
    until its next rebalance sells it: the same as holding that value in cash."""
    close, tradable = _panel()
    bars = Bars(close=close, tradable=tradable)
    ours = (1.0 + benchmark_returns(bars, "equal_weight_rebalanced", rebalance="M")).cumprod()
    frozen = close.where(tradable).ffill().bfill()  # bt raises on a NaN price it holds
    expected = _bt_equal_weight(frozen, tradable, "M")
    np.testing.assert_allclose(ours.to_numpy(), expected.to_numpy(), rtol=1e-12)


def _loop_equal_weight(  # the reference: units and cash, one bar at a time
    close: np.ndarray,
    tradable: np.ndarray,
    flags: np.ndarray,
    split: np.ndarray,
    dividend: np.ndarray,
    delist: np.ndarray,
) -> np.ndarray:
    n, a = close.shape
    units = np.zeros(a)
    last = np.full(a, np.nan)  # the price a holding is valued at
    cash = 1.0
    out = np.empty(n)
    for t in range(n):
        for j in range(a):
            if units[j] == 0.0:
                continue
            if not tradable[t, j]:  # sold at its last tradable value
                cash += units[j] * last[j]
                units[j] = 0.0
                continue
            units[j] *= split[t, j]
            price = close[t, j] * (1.0 + (delist[t, j] if math.isfinite(delist[t, j]) else 0.0))
            units[j] += units[j] * dividend[t, j] / price  # reinvested at the ex-date close
            last[j] = price
        for j in range(a):
            if tradable[t, j]:
                last[j] = close[t, j] if units[j] == 0.0 else last[j]
        value = cash + sum(units[j] * last[j] for j in range(a) if units[j] != 0.0)
        out[t] = value
        if t == 0 or flags[t]:
            live = [j for j in range(a) if tradable[t, j]]
            units[:] = 0.0
            cash = value if not live else 0.0
            for j in live:
                last[j] = close[t, j]
                units[j] = value / len(live) / close[t, j]
    return out


@pytest.mark.parametrize(
    "kind", ["equal_weight", "equal_weight_rebalanced"], ids=["buy-and-hold", "rebalanced"]
)
def test_equal_weight_with_actions_and_a_delisting_return_equals_a_plain_loop(kind: str) -> None:
    close, tradable = _panel(seed=9)
    rng = np.random.default_rng(0)
    split = pd.DataFrame(1.0, index=close.index, columns=close.columns)
    dividend = pd.DataFrame(0.0, index=close.index, columns=close.columns)
    delist = pd.DataFrame(np.nan, index=close.index, columns=close.columns)
    split.iloc[150, 0] = 2.0
    close.iloc[150:, 0] /= 2.0  # unadjusted: the price halves on the ex-date
    split.iloc[260, 3] = 0.5
    close.iloc[260:, 3] *= 2.0
    for t in rng.choice(np.arange(1, 400), 12, replace=False):
        dividend.iloc[t, int(rng.integers(0, 6))] = 0.8
    dividend = dividend.where(close.notna(), 0.0)
    dividend.iloc[299, 2] = 0.0  # (the loop takes a dividend and a delisting apart)
    delist.iloc[299, 2] = -0.3  # a delisting return on the last listed bar
    bars = Bars(
        close=close, tradable=tradable, split=split, dividend=dividend, delist_return=delist
    )
    ours = benchmark_returns(bars, kind, rebalance="M")
    flags = rebalance_flags(close.index, "M") if kind.endswith("rebalanced") else np.zeros(400)
    mask = tradable.to_numpy() & np.isfinite(close.to_numpy())
    value = _loop_equal_weight(
        close.to_numpy(), mask, flags.astype(bool), split.to_numpy(), dividend.to_numpy(),
        delist.to_numpy(),
    )  # fmt: skip
    np.testing.assert_allclose((1.0 + ours).cumprod().to_numpy(), value, rtol=1e-12)
    if kind == "equal_weight":  # buy and hold: the names listed later never enter
        assert not np.allclose(ours.to_numpy(), benchmark_returns(close, kind).to_numpy())


def test_a_symbol_on_unadjusted_prices_earns_its_total_return() -> None:
    close = synthetic_prices(60, 2, seed=2)
    adjusted = close.copy()
    split = pd.DataFrame(1.0, index=close.index, columns=close.columns)
    dividend = pd.DataFrame(0.0, index=close.index, columns=close.columns)
    split.iloc[30, 0] = 4.0
    close.iloc[30:, 0] /= 4.0
    dividend.iloc[40, 0] = 0.5
    bars = Bars(close=close, split=split, dividend=dividend)
    ours = benchmark_returns(bars, "SYN0").to_numpy()
    expected = adjusted["SYN0"].pct_change().fillna(0.0).to_numpy().copy()
    expected[40] = (close.iloc[40, 0] + 0.5) / close.iloc[39, 0] - 1.0
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-15)


def _write_index(path: Path, closes: pd.Series, *, drop: int | None = None) -> Path:
    frame = pd.DataFrame({"date": closes.index.strftime("%Y-%m-%d"), "close": closes.to_numpy()})
    extra = pd.DataFrame({"date": ["1990-01-02"], "close": [99.0]})  # dates the data lacks
    frame = pd.concat([frame, extra]).sample(frac=1.0, random_state=1)  # any order
    if drop is not None:
        frame = frame[frame["date"] != closes.index[drop].strftime("%Y-%m-%d")]
    frame.to_csv(path, index=False)
    return path


def test_a_file_benchmark_equals_the_same_closes_as_a_symbol(tmp_path: Path) -> None:
    close = synthetic_prices(250, 3, seed=4)
    path = _write_index(tmp_path / "index.csv", close["SYN2"])
    strategy = SmaCross(5, 20)
    by_file = simulate(close, strategy, benchmark=str(path), fee_bps=2.0)
    by_symbol = simulate(close, strategy, benchmark="SYN2", fee_bps=2.0)
    assert by_file.benchmark is not None and by_symbol.benchmark is not None
    np.testing.assert_allclose(by_file.benchmark.to_numpy(), by_symbol.benchmark.to_numpy())
    for key in ("alpha", "beta", "information_ratio", "tracking_error", "excess_return"):
        assert by_file.metrics[key] == pytest.approx(by_symbol.metrics[key], rel=1e-12)
    assert by_file.benchmark_metrics == pytest.approx(by_symbol.benchmark_metrics, rel=1e-12)
    # the Python API takes a Path as well
    assert simulate(close, strategy, benchmark=path, fee_bps=2.0).metrics == by_file.metrics


class _NeverCalled:
    """A strategy that fails if anything runs: a bad benchmark must be refused first."""

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        raise AssertionError("the strategy ran before the benchmark was checked")


def test_bad_benchmarks_are_refused_before_anything_runs(tmp_path: Path) -> None:
    close = synthetic_prices(80, 2, seed=1)
    never = _NeverCalled()
    with pytest.raises(DataValidationError, match=r"'SPX' is not a symbol of the data") as e:
        simulate(close, never, benchmark="SPX")
    assert "equal_weight_rebalanced" in str(e.value) and "date, close" in str(e.value)
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataValidationError, match="not found") as e:
        simulate(close, never, benchmark=str(missing))
    assert str(missing) in str(e.value)
    gap = _write_index(tmp_path / "gap.csv", close["SYN0"], drop=17)
    with pytest.raises(DataValidationError, match="no positive close for 1 bar") as e:
        simulate(close, never, benchmark=str(gap))
    assert e.value.timestamp == close.index[17]
    assert str(close.index[17]) in str(e.value)
    cols = tmp_path / "cols.csv"
    pd.DataFrame({"day": ["2010-01-04"], "price": [1.0]}).to_csv(cols, index=False)
    with pytest.raises(DataValidationError, match="needs columns date, close"):
        simulate(close, never, benchmark=str(cols))
    listed = close.copy()
    listed.iloc[:10, 1] = np.nan
    bars = Bars(close=listed)
    with pytest.raises(DataValidationError, match="'SYN1' has no close on 10 bar"):
        check_benchmark("SYN1", bars)


def test_relative_metrics_equal_empyrical() -> None:
    """empyrical compounds alpha ((1 + daily alpha)^252 - 1); ours is daily alpha x 252."""
    import empyrical

    rng = np.random.default_rng(11)
    b = rng.normal(0.0004, 0.01, 500)
    r = 0.0002 + 0.7 * b + rng.normal(0.0, 0.006, 500)
    ours = m.relative_metrics(r, b, periods_per_year=252)
    assert ours["beta"] == pytest.approx(empyrical.beta(r, b), rel=1e-12)
    alpha_daily = (1.0 + empyrical.alpha(r, b, annualization=252)) ** (1 / 252) - 1.0
    assert ours["alpha"] == pytest.approx(alpha_daily * 252, rel=1e-9)
    te = empyrical.annual_volatility(r - b, annualization=252)
    assert ours["tracking_error"] == pytest.approx(te, rel=1e-12)
    ir = empyrical.excess_sharpe(r, b) * math.sqrt(252)
    assert ours["information_ratio"] == pytest.approx(ir, rel=1e-12)


_cli = run_cli


def _ran(tmp_path: Path, out: str, *args: str) -> tuple[Any, dict[str, Any]]:
    """The command with ``output_dir=out`` in ``tmp_path``: it succeeded; and its record."""
    proc = run_cli(tmp_path, *args, f"output_dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads((tmp_path / out / "result.json").read_text())


def _sample_index(tmp_path: Path) -> Path:
    from backtest.config import DataConfig
    from backtest.data import load_bars

    close = load_bars(DataConfig(source="sample")).close
    return _write_index(tmp_path / "spx.csv", close["SP500"])


@pytest.mark.parametrize(
    ("benchmark", "extra"),
    [
        ("SP500", ["data=sample"]),
        ("equal_weight", ["data.n_bars=300"]),
        ("equal_weight_rebalanced", ["data.n_bars=300", "engine.rebalance=W"]),
        ("spx.csv", ["data=sample"]),
    ],
    ids=["symbol", "equal-weight", "equal-weight-rebalanced", "file"],
)
def test_each_benchmark_kind_from_the_command_line(
    tmp_path: Path, benchmark: str, extra: list[str]
) -> None:
    if benchmark.endswith(".csv"):
        _sample_index(tmp_path)
    proc, record = _ran(
        tmp_path, "run", "+experiment=sma_cross", "report=false", "strategy.slow=50",
        f"engine.benchmark={benchmark}", *extra,
    )  # fmt: skip
    assert record["benchmark_name"] == benchmark
    bench = record["benchmark_metrics"]
    assert {"total_return", "cagr", "sharpe_ratio", "max_drawdown", "annual_volatility"} <= set(
        bench
    )
    equity = pd.read_parquet(tmp_path / "run" / "equity.parquet")
    own = m.return_metrics(equity["benchmark"].pct_change().fillna(0.0).to_numpy())
    assert bench["total_return"] == pytest.approx(own["total_return"], rel=1e-9)
    lines = proc.stdout.splitlines()
    (head,) = [ln for ln in lines if ln.split()[:2] == ["metric", "book"]]
    assert head.rstrip().endswith(f"benchmark ({benchmark})")
    (row,) = [ln for ln in lines if ln.split()[:1] == ["total_return"]]
    assert row.split()[1:] == [
        f"{record['metrics']['total_return']:.2%}",
        f"{bench['total_return']:.2%}",
    ]
    for key in ("alpha", "tracking_error"):
        (row,) = [ln for ln in lines if ln.split()[:1] == [key]]
        assert row.split()[1] == f"{record['metrics'][key]:.2%}"


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("SPX", "'SPX' is not a symbol of the data"),
        ("missing.csv", "'missing.csv' not found"),
        ("gap.csv", "no positive close for 1 bar(s) of the data, first at 2010-01-08"),
    ],
    ids=["unknown-symbol", "missing-file", "gap"],
)
def test_a_bad_benchmark_fails_on_the_command_line_in_one_line(
    tmp_path: Path, value: str, needle: str
) -> None:
    closes = synthetic_prices(300, 4, seed=42)
    _write_index(tmp_path / "gap.csv", closes["SYN0"], drop=4)
    proc = _cli(
        tmp_path, "+experiment=sma_cross", "data.n_bars=300", f"engine.benchmark={value}",
        "output_dir=run",
    )  # fmt: skip
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()  # nothing ran, nothing written


def test_walk_forward_and_search_headlines_carry_alpha_beta_ir_and_te(tmp_path: Path) -> None:
    """Walk-forward: against the benchmark on the stitched out-of-sample returns."""
    import empyrical

    proc, record = _ran(
        tmp_path, "wf", "+experiment=xs_momentum", "data.n_bars=1300", "~montecarlo",
        "report=true", "engine.benchmark=equal_weight_rebalanced",
    )  # fmt: skip
    equity = pd.read_parquet(tmp_path / "wf" / "equity.parquet")
    r = equity["returns"].to_numpy()
    # the benchmark, independently: the plain loop over the out-of-sample closes, rebalanced
    # monthly (the configured schedule), bought at the first out-of-sample close
    prices = pd.read_parquet(tmp_path / "wf" / "prices.parquet")
    oos = prices.loc[equity.index[0] : equity.index[-1]]
    flags = rebalance_flags(pd.DatetimeIndex(oos.index), "M")
    ones = np.ones(oos.shape)
    value = _loop_equal_weight(
        oos.to_numpy(dtype=np.float64), np.isfinite(oos.to_numpy(dtype=np.float64)), flags,
        ones, np.zeros(oos.shape), np.full(oos.shape, np.nan),
    )  # fmt: skip
    np.testing.assert_allclose(equity["benchmark"].to_numpy(), value, rtol=1e-9)
    b = np.concatenate(([0.0], value[1:] / value[:-1] - 1.0))
    metrics = record["metrics"]
    assert metrics["beta"] == pytest.approx(empyrical.beta(r, b), rel=1e-9)
    te = empyrical.annual_volatility(r - b, annualization=252)
    assert metrics["tracking_error"] == pytest.approx(te, rel=1e-9)
    ir = empyrical.excess_sharpe(r, b) * math.sqrt(252)
    assert metrics["information_ratio"] == pytest.approx(ir, rel=1e-9)
    daily = (1.0 + empyrical.alpha(r, b, annualization=252)) ** (1 / 252) - 1.0
    assert metrics["alpha"] == pytest.approx(daily * 252, rel=1e-9)
    assert "alpha" in proc.stdout and "benchmark (equal_weight_rebalanced)" in proc.stdout
    # the report's equity chart draws the benchmark line
    page = (tmp_path / "wf" / "report.html").read_text()
    assert re.search(r'"name": ?"benchmark"', page)
    assert "<th>benchmark (equal_weight_rebalanced)</th>" in page  # its metrics' column
    # the search task's headline (the best set re-run alone) carries them too
    proc, record = _ran(
        tmp_path, "search", "+experiment=xs_momentum", "data.n_bars=600", "~montecarlo",
        "~walkforward", "report=false", "engine.benchmark=equal_weight_rebalanced",
    )  # fmt: skip
    equity = pd.read_parquet(tmp_path / "search" / "equity.parquet")
    b = equity["benchmark"].pct_change().fillna(0.0).to_numpy()
    rel = m.relative_metrics(equity["returns"].to_numpy(), b, periods_per_year=252)
    for key, value in rel.items():
        assert record["metrics"][key] == pytest.approx(value, rel=1e-9), key


def test_a_worker_reads_a_benchmark_file_only_under_its_data_roots_and_quotes_none_of_it(
    tmp_path: Path,
) -> None:
    """As ``data.path`` on a queue worker: outside ``--data-root`` refused before the file is
    looked at; inside, an error names the file but never its content."""
    from backtest.data._reading import confine_reads

    close = synthetic_prices(40, 2, seed=1)
    root = tmp_path / "data"
    root.mkdir()
    secret = tmp_path / "secret.csv"
    secret.write_text("token,hunter2\n1,2\n")
    inside = root / "bad.csv"
    inside.write_text("token,hunter2\n1,2\n")
    previous = confine_reads([root])
    try:
        with pytest.raises(DataValidationError, match="outside the folders this worker") as e:
            simulate(close, _NeverCalled(), benchmark=str(secret))
        assert "hunter2" not in str(e.value)
        with pytest.raises(DataValidationError, match="needs columns date, close") as e:
            simulate(close, _NeverCalled(), benchmark=str(inside))
        assert "hunter2" not in str(e.value) and "token" not in str(e.value)
        with pytest.raises(DataValidationError, match="not a symbol of the data") as e:
            simulate(close, _NeverCalled(), benchmark="SPX")  # the data's symbols kept back
        assert "SYN0" not in str(e.value)
    finally:
        confine_reads(previous)
    with pytest.raises(DataValidationError, match="hunter2"):  # off a worker: the header shown
        simulate(close, _NeverCalled(), benchmark=str(secret))


def test_a_relative_benchmark_file_means_the_folder_the_user_ran_in(tmp_path: Path) -> None:
    """Also with ``hydra.job.chdir=true``, which moves the run into its output folder."""
    _sample_index(tmp_path)
    _, record = _ran(
        tmp_path, "run", "+experiment=sma_cross", "report=false", "data=sample",
        "strategy.slow=50", "engine.benchmark=spx.csv", "hydra.job.chdir=true",
    )  # fmt: skip
    assert Path(record["benchmark_name"]) == tmp_path / "spx.csv"
    assert record["benchmark_metrics"]["total_return"] > -1.0


def test_the_python_walk_forward_carries_the_benchmark_and_its_relative_metrics() -> None:
    """Python API = CLI: ``StrategyReturnsEvaluator(..., benchmark=...)`` gives the result's
    ``benchmark`` (bought at the first out-of-sample close) and alpha/beta/IR/TE."""
    import empyrical

    from backtest.config import WalkForwardConfig
    from backtest.walkforward import StrategyReturnsEvaluator, WalkForwardOptimizer

    prices = synthetic_prices(n_bars=700, n_assets=3, seed=7)
    ev = StrategyReturnsEvaluator(prices, SmaCross, fee_bps=5.0, benchmark="SYN1")
    space = {"fast": [5, 10], "slow": [30, 60]}
    wf = WalkForwardOptimizer(WalkForwardConfig(train_bars=300, test_bars=100)).run(ev, space)
    oos = prices["SYN1"].loc[wf.returns.index]
    assert wf.benchmark is not None
    np.testing.assert_allclose(wf.benchmark.to_numpy(), (oos / oos.iloc[0]).to_numpy(), 1e-12)
    b = (oos / oos.shift(1) - 1.0).fillna(0.0).to_numpy()
    r = wf.returns.to_numpy()
    assert wf.metrics["beta"] == pytest.approx(empyrical.beta(r, b), rel=1e-9)
    te = empyrical.annual_volatility(r - b, annualization=252)
    assert wf.metrics["tracking_error"] == pytest.approx(te, rel=1e-9)
    own = m.return_metrics(b)
    assert wf.benchmark_metrics["sharpe_ratio"] == pytest.approx(own["sharpe_ratio"], rel=1e-9)
