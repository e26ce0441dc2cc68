"""The user-style examples (examples/): parameters first class, end to end from the CLI.

A user's own folder is found through Hydra's ``--config-dir`` (added to the config
search path, the package's ``conf/`` stays first for the defaults) with the strategy
module on ``PYTHONPATH`` and its prefix in ``allowed_modules``: nothing in the package
is edited.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from backtest.engine import simulate
from backtest.errors import ConfigError
from backtest.strategies import param_names, validate_params
from backtest.strategies._loader import build_strategy
from tests import synthetic
from tests.cli_run import backtest_command

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def _import(folder: str, module: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(EXAMPLES / folder))
    return __import__(module)


def gbm(n_bars: int = 800, n_assets: int = 3, seed: int = 9) -> pd.DataFrame:
    return synthetic.gbm(n_bars, n_assets, seed, drift=0.0)


# --- parameters ---------------------------------------------------------------------


class Plain:
    def __init__(self, period: int, level: float = 0.5, name: str | None = None) -> None:
        self.period, self.level, self.name = period, level, name

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        return prices * 0 + self.level


@dataclass(frozen=True)
class Fields:
    window: int = 10
    long_short: bool = False

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        return prices * 0


@pytest.mark.parametrize(
    ("cls", "params", "message"),
    [
        (Plain, {"period": 3, "levle": 1.0}, r"strategy\.levle is not a parameter of Plain"),
        (Plain, {"period": "abc"}, r"strategy\.period must be int, got 'abc'"),
        (Plain, {"period": 3, "level": "high"}, r"strategy\.level must be float"),
        (Plain, {"level": 0.2}, r"strategy\.period is missing"),
        (Plain, {"period": 3, "name": 7}, r"strategy\.name must be str"),
        (Fields, {"window": 2.5}, r"strategy\.window must be int, got 2\.5"),
        (Fields, {"long_short": "yes"}, r"strategy\.long_short must be bool"),
        (Fields, {"widnow": 3}, r"strategy\.widnow .* did you mean strategy\.window\?"),
    ],
    ids=[
        "unknown",
        "wrong-int",
        "wrong-float",
        "missing",
        "wrong-str",
        "float-not-int",
        "wrong-bool",
        "dataclass-unknown",
    ],
)
def test_bad_parameters_are_named_before_the_class_runs(cls, params, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message) as info:
        validate_params(cls, params)
    assert info.value.key is not None and info.value.key.startswith("strategy.")


def test_good_parameters_pass_and_whole_floats_become_ints() -> None:
    assert validate_params(Plain, {"period": 3.0, "name": None}) == {"period": 3, "name": None}
    assert validate_params(Fields, {"window": np.int64(4)}) == {"window": 4}
    assert param_names(Plain) == ["period", "level", "name"]
    assert param_names(Fields) == ["window", "long_short"]


def test_user_parameters_are_recorded_like_builtin_ones(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    mod = _import("xs_rank", "xs_rank_strategy", monkeypatch)
    result = simulate(gbm(), mod.CrossSectionalRank(lookback=21, top=2))
    assert result.params == {"lookback": 21, "top": 2}
    rsi = _import("rsi", "rsi_strategy", monkeypatch)
    assert simulate(gbm(), rsi.RsiReversion(10)).params == {
        "period": 10,
        "lower": 30.0,
        "upper": 70.0,
    }


def test_build_strategy_refuses_a_string_for_an_int(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _import("rsi", "rsi_strategy", monkeypatch)
    cfg = {"_target_": "rsi_strategy.RsiReversion", "period": "abc"}
    with pytest.raises(ConfigError, match=r"strategy\.period must be int") as info:
        build_strategy(cfg, ["rsi_strategy"])
    assert info.value.key == "strategy.period"


# --- the RSI example's fast path -------------------------------------------------------


def test_rsi_matches_pandas_wilder_average(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rsi = _import("rsi", "rsi_strategy", monkeypatch)
    close = gbm(400, 1)["S0"]
    change = close.diff()
    gain = change.clip(lower=0).ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
    loss = (-change).clip(lower=0).ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
    expected = (100 - 100 / (1 + gain / loss)).to_numpy()
    np.testing.assert_allclose(rsi.rsi(close.to_numpy(), 14), expected, rtol=1e-12)


def test_rsi_batch_equals_a_plain_loop_and_positions(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rsi = _import("rsi", "rsi_strategy", monkeypatch)
    prices = gbm(600, 1)
    close = prices["S0"].to_numpy()
    sets = {
        "period": np.array([5, 14, 14]),
        "lower": np.array([30.0, 25.0, 40.0]),
        "upper": np.array([60.0, 70.0, 55.0]),
    }
    batch = rsi.RsiReversion.batch_positions(close, sets)
    for i in range(3):
        values = rsi.rsi(close, int(sets["period"][i]))
        pos, expected = 0.0, []
        for x in values:  # the rule, one bar at a time
            if x < sets["lower"][i]:
                pos = 1.0
            elif x > sets["upper"][i]:
                pos = 0.0
            expected.append(pos)
        np.testing.assert_array_equal(batch[:, i], expected)
        single = rsi.RsiReversion(int(sets["period"][i]), sets["lower"][i], sets["upper"][i])
        np.testing.assert_array_equal(single.positions(prices)["S0"].to_numpy(), expected)


# --- end to end from the command line ----------------------------------------------------


def _cli(folder: str, *args: str, tmp_path: Path) -> dict:  # type: ignore[type-arg]
    out = tmp_path / "run"
    tmp_path.mkdir(parents=True, exist_ok=True)
    proc = backtest_command(
        "--config-dir",
        str(EXAMPLES / folder / "conf"),
        *args,
        f"output_dir={out}",
        "figures=false",
        "data.n_bars=1300",
        cwd=tmp_path,
        path=[EXAMPLES / folder],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "result.json").read_text())
    record["_log"] = proc.stdout + proc.stderr
    return record


@pytest.mark.slow
def test_rsi_single_backtest_records_params_in_result_and_mlflow(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    record = _cli(
        "rsi",
        "+experiment=rsi_single",
        "tracking=sqlite",
        f"tracking.uri=sqlite:///{db}",
        "strategy.period=10",
        tmp_path=tmp_path,
    )
    assert record["task"] == "backtest"
    assert record["params"] == {"period": 10, "lower": 30.0, "upper": 70.0}
    assert "period=10, lower=30.0, upper=70.0" in record["_log"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("rsi_single").experiment_id])
    assert runs and runs[0].data.params["period"] == "10"


@pytest.mark.slow
def test_rsi_search_runs_on_its_fast_path(tmp_path: Path) -> None:
    record = _cli("rsi", "+experiment=rsi_search", "tracking=none", tmp_path=tmp_path)
    assert record["search"]["n_trials"] == 500 and record["search"]["n_failed"] == 0
    assert set(record["search"]["best_params"]) == {"period", "lower", "upper"}
    assert "one backtest per parameter set" not in record["_log"]
    trials = pd.read_parquet(tmp_path / "run" / "trials.parquet")
    assert {"period", "lower", "upper", "sharpe_ratio"} <= set(trials.columns)


@pytest.mark.slow
def test_rsi_walkforward_with_monte_carlo(tmp_path: Path) -> None:
    record = _cli(
        "rsi",
        "+experiment=rsi_walkforward",
        "tracking=none",
        "montecarlo.n_paths=100",
        tmp_path=tmp_path,
    )
    assert record["task"] == "walkforward" and "montecarlo" in record
    # searched parameters sit in the walk-forward's parameter path, the fixed one beside it
    assert set(record["params"]) == {"walk-forward", "upper"}
    assert record["params"]["walk-forward"].startswith("period/lower ")


@pytest.mark.slow
def test_cross_sectional_search_and_walkforward_without_fast_path(tmp_path: Path) -> None:
    record = _cli("xs_rank", "+experiment=xs_rank_search", "tracking=none", tmp_path=tmp_path)
    assert record["search"]["n_trials"] == 8 and record["params"]["lookback"] in (21, 63, 126, 252)
    assert record["_log"].count("one backtest per parameter set") == 1
    wf = _cli(
        "xs_rank", "+experiment=xs_rank_walkforward", "tracking=none", tmp_path=tmp_path / "wf"
    )
    assert wf["task"] == "walkforward"


@pytest.mark.slow
def test_cli_refuses_a_peeking_user_strategy_unless_told_not_to(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    (folder / "conf" / "strategy").mkdir(parents=True)
    (folder / "peek.py").write_text(
        "class Peek:\n"
        "    def __init__(self, window: int = 20):\n"
        "        self.window = window\n"
        "    def positions(self, prices):\n"
        "        up = prices > prices.rolling(self.window).mean()\n"
        "        return up.astype(float).shift(-1)\n"
    )
    (folder / "conf" / "strategy" / "peek.yaml").write_text("_target_: peek.Peek\nwindow: 20\n")
    base = [
        "--config-dir",
        str(folder / "conf"),
        "strategy=peek",
        "allowed_modules=[peek]",
        "tracking=none",
        "figures=false",
        "data.n_bars=600",
    ]
    bad = backtest_command(*base, f"output_dir={tmp_path / 'a'}", cwd=tmp_path, path=[folder])
    assert bad.returncode != 0
    assert "Peek looks ahead" in bad.stderr + bad.stdout
    ok = backtest_command(
        *base,
        f"output_dir={tmp_path / 'b'}",
        "engine.check_lookahead=false",
        cwd=tmp_path,
        path=[folder],
    )
    assert ok.returncode == 0, ok.stderr[-2000:]


# --- a weights strategy with inputs = "bars" and a compiled batch_weights ------------------------


def _bars(n_bars: int = 400, n_assets: int = 4, seed: int = 3):  # type: ignore[no-untyped-def]
    from backtest.data import Bars

    return Bars.from_close(gbm(n_bars, n_assets, seed))


def test_risk_parity_weights_match_pandas_rolling_std(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    mod = _import("risk_parity", "risk_parity_strategy", monkeypatch)
    bars = _bars()
    for lookback in (2, 21, 63):
        vol = bars.close.pct_change().rolling(lookback).std(ddof=1)
        for power in (0.0, 1.0, 2.0):
            got = mod.InverseVolatility(lookback, power).positions(bars)
            inverse = (vol**-power).where(vol > 0)
            expected = inverse.div(inverse.sum(axis=1, min_count=4), axis=0).fillna(0.0)
            np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-12, atol=0)
            assert (got.iloc[:lookback] == 0).all().all()  # flat while warming up
            np.testing.assert_allclose(got.iloc[lookback:].sum(axis=1), 1.0)


def test_risk_parity_batch_weights_equal_positions_set_by_set(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    mod = _import("risk_parity", "risk_parity_strategy", monkeypatch)
    from backtest.strategies import has_fast_path

    cls = mod.InverseVolatility
    assert has_fast_path(cls) and cls.inputs == "bars" and cls.output == "weights"
    bars = _bars()
    lookbacks = np.array([21, 5, 21, 63, 5])
    powers = np.array([1.0, 1.0, 2.0, 0.5, 0.0])
    out = cls.batch_weights(bars, {"lookback": lookbacks, "power": powers})
    assert out.shape == (len(bars.close), bars.close.shape[1], len(lookbacks))
    for i, (lookback, power) in enumerate(zip(lookbacks, powers, strict=True)):
        expected = cls(int(lookback), float(power)).positions(bars).to_numpy()
        assert np.array_equal(out[:, :, i], expected)
    with pytest.raises(ValueError, match="power must be between 0 and 4"):
        cls.batch_weights(bars, {"lookback": lookbacks[:1], "power": np.array([-1.0])})


@pytest.mark.slow
def test_risk_parity_search_runs_on_its_fast_path_and_logs_both_speeds(tmp_path: Path) -> None:
    import re

    record = _cli(
        "risk_parity", "+experiment=risk_parity_search", "tracking=none", tmp_path=tmp_path
    )
    assert record["search"]["n_trials"] == 32 and record["search"]["n_failed"] == 0
    trials = pd.read_parquet(tmp_path / "run" / "trials.parquet")
    assert sorted(set(trials["lookback"])) == [10, 21, 42, 63, 84, 126, 189, 252]
    assert sorted(set(trials["power"])) == [0.5, 1.0, 1.5, 2.0]
    log = record["_log"]
    assert "one backtest per parameter set" not in log
    lines = [line for line in log.splitlines() if "InverseVolatility's fast path" in line]
    assert len(lines) == 1, log[-3000:]  # once, on the first batch
    assert re.search(r"fast path.*: [\d.]+ ms per set \(first batch, 32 sets\)", lines[0])
    assert re.search(r"without it \(positions per set\): [\d.]+ ms per set", lines[0])


@dataclass(frozen=True)
class _SlowButCorrect:
    """Inverse volatility again, with a fast path that is correct and far slower."""

    lookback: int = 20
    inputs: ClassVar[str] = "bars"
    output: ClassVar[str] = "weights"
    weights_of: ClassVar[Any] = None  # the example's class, set by the test

    def positions(self, bars: Any) -> pd.DataFrame:
        return self.weights_of(self.lookback).positions(bars)

    @classmethod
    def batch_weights(cls, bars: Any, params: Any) -> np.ndarray:
        import time

        time.sleep(1.0)  # a Python-level cost per call: 0.5 s per set of a 2-set batch
        return cls.weights_of.batch_weights(bars, params)


def test_a_fast_path_slower_than_positions_is_warned_once(monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    import logging

    mod = _import("risk_parity", "risk_parity_strategy", monkeypatch)
    monkeypatch.setattr(_SlowButCorrect, "weights_of", mod.InverseVolatility)
    from backtest.search import StrategyEvaluator

    evaluator = StrategyEvaluator(_bars(300, 3), _SlowButCorrect)
    with caplog.at_level(logging.INFO, logger="backtest.search"):
        evaluator.evaluate_columns({"lookback": np.array([10, 30])})
        evaluator.evaluate_columns({"lookback": np.array([15, 40])})
    said = [r for r in caplog.records if "_SlowButCorrect's fast path" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    assert "SLOWER than no fast path" in said[0].getMessage()
    assert "(first batch, 2 sets)" in said[0].getMessage()


def test_the_fast_path_check_samples_at_least_8_sets_spread_over_the_space(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from backtest.errors import StrategyContractError
    from backtest.search._evaluators import verify_fast_path

    mod = _import("risk_parity", "risk_parity_strategy", monkeypatch)
    frame = pd.DataFrame({"lookback": np.arange(2, 22)})  # 20 sets
    bars = _bars(300, 3)
    assert verify_fast_path(mod.InverseVolatility, bars, frame, check_lookahead=False) >= 8

    class WrongForOneWindow(mod.InverseVolatility):  # batch_weights off for lookback 7 only
        @classmethod
        def batch_weights(cls, bars: Any, params: Any) -> np.ndarray:
            out = mod.InverseVolatility.batch_weights(bars, params)
            out[:, :, np.asarray(params["lookback"]) == 7] *= 1.01
            return out

    # rows 0, 10 and 19 (the first, middle and last sets) would not see it
    with pytest.raises(StrategyContractError, match="WrongForOneWindow"):
        verify_fast_path(WrongForOneWindow, bars, frame, check_lookahead=False)
