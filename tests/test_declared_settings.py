"""Engine settings a strategy declares (exits as fields or attributes) are read per set.

Before, the batched paths read the class attribute: a searched dataclass field
``trailing_stop`` scored every level the same (the default's score, or no stop at all),
and a searched ``engine.trailing_stop`` did nothing for a strategy declaring its own. Here
each set of every path (batched kernel, fused, generic, walk-forward, Monte Carlo jitter)
equals :func:`~backtest.engine.simulate` of that set's instance, and searching
``engine.<key>`` for a strategy that declares ``<key>`` is a ``ConfigError`` naming both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from backtest.config import DataConfig, MonteCarloConfig, SearchConfig, WalkForwardConfig
from backtest.data import load_bars
from backtest.engine import simulate, simulate_batch
from backtest.engine._declared import check_searched_keys, declared_keys
from backtest.errors import ConfigError
from backtest.search import StrategyEvaluator, grid_search
from backtest.strategies import SmaCross
from backtest.walkforward import StrategyReturnsEvaluator, WalkForwardOptimizer

BARS = load_bars(DataConfig(n_bars=900, n_assets=2, seed=3))
LEVELS = [0.02, 0.05, 0.1, 0.2]


@dataclass(frozen=True)
class TrailingSma:
    """An SMA crossover that owns its trailing stop (a field, default 5%)."""

    fast: int = 10
    slow: int = 50
    trailing_stop: float | None = 0.05

    def positions(self, prices: pd.DataFrame) -> pd.DataFrame:
        return SmaCross(self.fast, self.slow).positions(prices)

    @classmethod
    def batch_positions(cls, close: np.ndarray, params: dict) -> np.ndarray:
        return SmaCross.batch_positions(close, params)


@dataclass(frozen=True)
class OptionalStop(TrailingSma):
    """The same with the field defaulting to None (the engine's stop applies then)."""

    trailing_stop: float | None = None


@dataclass(frozen=True)
class TimedSma(TrailingSma):
    """A class attribute (not a parameter) declares a time stop."""

    trailing_stop: float | None = None
    max_bars: ClassVar[int] = 15


def _single(cls: type, **params: object) -> dict[str, float]:
    return simulate(BARS, cls(**params), fee_bps=5).metrics


@pytest.mark.parametrize("cls", [TrailingSma, OptionalStop], ids=["default 5%", "default None"])
def test_a_searched_stop_field_scores_each_level_as_its_own_backtest(cls: type) -> None:
    result = grid_search({"trailing_stop": LEVELS}, StrategyEvaluator(BARS, cls, fee_bps=5),
                         progress=False)  # fmt: skip
    scores = result.trials.set_index("trailing_stop")["sharpe_ratio"]
    for level in LEVELS:
        single = _single(cls, trailing_stop=level)
        assert scores[level] == pytest.approx(single["sharpe_ratio"], rel=1e-9)
    assert len(set(scores)) > 1  # the levels do differ on these bars
    assert result.best_score == pytest.approx(
        _single(cls, **result.best_params)["sharpe_ratio"], rel=1e-9
    )


def test_batch_paths_read_each_sets_instance() -> None:
    """Per-set fields, a class attribute, and sets mixing None with levels."""
    sets = pd.DataFrame({"fast": [5, 10, 20, 10], "trailing_stop": [0.03, None, 0.1, 0.03]})
    for cls in (TrailingSma, OptionalStop, TimedSma):
        batch = simulate_batch(BARS, cls, sets, fee_bps=5, trailing_stop=0.07).metrics
        for i, row in sets.iterrows():
            # (NaN, a missing cell, reaches the constructor as NaN: "no stop", which wins)
            own = {"fast": int(row["fast"]), "trailing_stop": float(row["trailing_stop"])}
            single = simulate(BARS, cls(**own), fee_bps=5, trailing_stop=0.07).metrics
            for name in ("sharpe_ratio", "n_trades", "total_return"):
                assert batch.loc[i, name] == pytest.approx(single[name], rel=1e-9), (cls, i)


def test_one_engine_option_given_twice_is_refused() -> None:
    sets = pd.DataFrame({"fast": [5], "slow": [20], "stop_loss": [0.05], "engine.stop_loss": [0.1]})
    with pytest.raises(ConfigError, match=r"both stop_loss and engine\.stop_loss"):
        simulate_batch(BARS, SmaCross, sets)


def test_declared_keys() -> None:
    assert declared_keys(SmaCross) == ()
    assert declared_keys(TrailingSma) == ("trailing_stop",)
    assert declared_keys(TimedSma) == ("trailing_stop", "max_bars")


def test_searching_an_engine_key_the_strategy_declares_is_refused_naming_both() -> None:
    with pytest.raises(ConfigError, match=r"search\.space\.engine\.trailing_stop.*TrailingSma"):
        check_searched_keys(TrailingSma, ["fast", "engine.trailing_stop"])
    with pytest.raises(ConfigError, match=r"engine\.max_bars.*TimedSma\.max_bars"):
        check_searched_keys(TimedSma, ["engine.max_bars"])
    check_searched_keys(TrailingSma, ["fast", "trailing_stop", "engine.stop_loss"])  # fine
    # the batched path refuses it too, before anything runs
    sets = pd.DataFrame({"fast": [5, 10], "engine.trailing_stop": [0.05, 0.1]})
    with pytest.raises(ConfigError, match=r"TrailingSma\.trailing_stop"):
        simulate_batch(BARS, TrailingSma, sets)
    with pytest.raises(ConfigError, match=r"TrailingSma\.trailing_stop"):
        grid_search({"engine.trailing_stop": LEVELS}, StrategyEvaluator(BARS, TrailingSma),
                    progress=False)  # fmt: skip


def test_the_search_task_refuses_the_conflict_before_anything_runs(compose, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from backtest.tasks import BacktestJob, prepare

    cfg = compose(
        "search=grid",
        "strategy=sma_cross",
        "+search.space={engine.trailing_stop: [0.05, 0.1]}",
        "data.n_bars=300",
        f"output_dir={tmp_path}",
    )
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=True)
    plain["strategy"]["_target_"] = f"{__name__}.TrailingSma"
    plain["strategy"].pop("long_short", None)
    plain["allowed_modules"] = [__name__]
    job = BacktestJob.from_config(plain)
    with pytest.raises(ConfigError, match=r"TrailingSma\.trailing_stop"):
        prepare(job, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_walkforward_folds_read_each_sets_stop() -> None:
    ev = StrategyReturnsEvaluator(BARS, TrailingSma, fee_bps=5)
    space = {"trailing_stop": LEVELS}
    full = ev.returns(pd.DataFrame(space), len(BARS))
    for j, level in enumerate(LEVELS):
        single = simulate(BARS, TrailingSma(trailing_stop=level), fee_bps=5).returns.to_numpy()
        np.testing.assert_allclose(full[:, j], single, rtol=0, atol=1e-13)
    wf = WalkForwardOptimizer(
        WalkForwardConfig(train_bars=400, test_bars=200), SearchConfig(), pbo_blocks=0,
        spa_bootstrap=0,
    )  # fmt: skip
    result = wf.run(ev, space)
    assert set(result.folds["trailing_stop"]) <= set(LEVELS)


def test_montecarlo_jitter_reads_the_jittered_instances_stop() -> None:
    from backtest.config import EngineConfig
    from backtest.montecarlo import MonteCarloSimulator

    cfg = MonteCarloConfig(
        method="parameter_jitter", n_paths=12, seed=3, jitter={"trailing_stop": LEVELS}
    )
    engine = EngineConfig(fee_bps=5.0, trailing_stop=0.3)  # the strategy's own wins
    report = MonteCarloSimulator(cfg, progress=False).run(
        prices=BARS, strategy=TrailingSma(), engine=engine
    )
    assert "engine.trailing_stop" not in report.details["base_params"]
    paths = report.paths
    for level in LEVELS:
        drawn = paths[paths["trailing_stop"] == level]
        if drawn.empty:
            continue
        single = simulate(BARS, TrailingSma(trailing_stop=level), fee_bps=5, trailing_stop=0.3)
        assert drawn["sharpe_ratio"].to_numpy() == pytest.approx(
            single.metrics["sharpe_ratio"], rel=1e-9
        )
