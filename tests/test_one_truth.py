"""One truth: every search and walk-forward number is the single backtest's number.

A Hypothesis property over every built-in strategy and both examples (``examples/rsi``,
``examples/xs_rank``), plain and with exits declared as strategy fields, times a random
draw of engine options (exits as engine keys, searched ``engine.<key>`` or strategy
fields; schedules; next_open fills; costs; limits; the volatility overlay): every trial
of a grid search equals :func:`~backtest.engine.simulate` of its set on every metric
(1e-9 relative), and every walk-forward fold's chosen set, re-run alone over the bars up
to its train window's end, gives the fold's in-sample score. Then the net itself: a
fast path planted to ignore a parameter is caught, by the search and by the fold, with
a :class:`~backtest.errors.PathDivergence` naming the set.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from backtest import metrics as m
from backtest.config import DataConfig, SearchConfig, SearchMethod, WalkForwardConfig
from backtest.data import load_bars
from backtest.engine import simulate
from backtest.errors import PathDivergence, TrialsFailed
from backtest.search import StrategyEvaluator, grid_search, random_search
from backtest.strategies import (
    Breakout,
    BuyAndHold,
    CrossSectionalMomentum,
    MeanReversion,
    Momentum,
    SmaCross,
)
from backtest.walkforward import StrategyReturnsEvaluator, WalkForwardOptimizer
from backtest.walkforward._optimizer import score_function

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path[:0] = [str(EXAMPLES / "rsi"), str(EXAMPLES / "xs_rank")]
from rsi_strategy import RsiReversion  # noqa: E402
from xs_rank_strategy import CrossSectionalRank  # noqa: E402

BARS = load_bars(DataConfig(n_bars=330, n_assets=3, seed=11))


# ------------------------------------------------------------ strategies with own exits


@dataclass(frozen=True, slots=True)
class SmaWithStops(SmaCross):
    """SmaCross owning its stop-loss and trailing stop (fields)."""

    stop_loss: float | None = None
    trailing_stop: float | None = None

    param_names: ClassVar[tuple[str, ...]] = (
        "fast", "slow", "long_short", "stop_loss", "trailing_stop",
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class MomentumWithTimeStop(Momentum):
    """Momentum owning a time stop (a field)."""

    max_bars: int | None = None

    param_names: ClassVar[tuple[str, ...]] = ("lookback", "skip", "long_short", "max_bars")


@dataclass(frozen=True)
class RsiWithStops(RsiReversion):
    """The RSI example owning a take-profit (a field) and a stop-loss (a class attribute)."""

    take_profit: float | None = None
    stop_loss: ClassVar[float] = 0.08


# ------------------------------------------------------------ random spaces per strategy

Space = dict[str, list[Any]]
Draw = Callable[[st.DataObject], Space]


def _pair(data: st.DataObject, lo: int, hi: int) -> list[int]:
    return sorted(data.draw(st.sets(st.integers(lo, hi), min_size=2, max_size=2)))


def _sma(data: st.DataObject) -> Space:
    fast = _pair(data, 2, 15)
    return {"fast": fast, "slow": [v + fast[1] for v in _pair(data, 1, 40)],
            "long_short": [data.draw(st.booleans())]}  # fmt: skip


def _momentum(data: st.DataObject) -> Space:
    return {"lookback": _pair(data, 2, 60), "skip": [data.draw(st.integers(0, 5))],
            "long_short": [data.draw(st.booleans())]}  # fmt: skip


def _mean_reversion(data: st.DataObject) -> Space:
    entry = data.draw(st.floats(0.8, 2.5))
    return {"lookback": _pair(data, 5, 40), "entry_z": [entry],
            "exit_z": [round(entry * f, 3) for f in (0.1, 0.6)]}  # fmt: skip


def _breakout(data: st.DataObject) -> Space:
    return {"lookback": _pair(data, 3, 60), "long_short": [data.draw(st.booleans())]}


def _buy_and_hold(data: st.DataObject) -> Space:  # no parameter: an engine key is searched
    return {"engine.fee_bps": [0.0, data.draw(st.floats(1.0, 30.0))]}


def _xs(data: st.DataObject) -> Space:
    return {"lookback": _pair(data, 5, 60), "skip": [data.draw(st.integers(0, 5))],
            "top_n": _pair(data, 1, 2), "long_short": [False]}  # fmt: skip


def _rsi(data: st.DataObject) -> Space:
    lower = data.draw(st.floats(15.0, 45.0))
    return {"period": _pair(data, 2, 20), "lower": [lower],
            "upper": [round(lower + d, 3) for d in (10.0, 30.0)]}  # fmt: skip


def _xs_rank(data: st.DataObject) -> Space:
    return {"lookback": _pair(data, 3, 60), "top": [1, 2]}


def _sma_stops(data: st.DataObject) -> Space:
    level = st.floats(0.01, 0.2)
    return {**_sma(data), "stop_loss": [None, data.draw(level)],
            "trailing_stop": [data.draw(level)]}  # fmt: skip


def _momentum_time_stop(data: st.DataObject) -> Space:
    return {**_momentum(data), "max_bars": [None, data.draw(st.integers(2, 30))]}


def _rsi_stops(data: st.DataObject) -> Space:
    return {**_rsi(data), "take_profit": [data.draw(st.floats(0.02, 0.3)), None]}


STRATEGIES: dict[str, tuple[type, Draw]] = {
    "SmaCross": (SmaCross, _sma),
    "Momentum": (Momentum, _momentum),
    "MeanReversion": (MeanReversion, _mean_reversion),
    "Breakout": (Breakout, _breakout),
    "BuyAndHold": (BuyAndHold, _buy_and_hold),
    "CrossSectionalMomentum": (CrossSectionalMomentum, _xs),
    "RsiReversion (examples/rsi)": (RsiReversion, _rsi),
    "CrossSectionalRank (examples/xs_rank)": (CrossSectionalRank, _xs_rank),
    "SmaCross + stop fields": (SmaWithStops, _sma_stops),
    "Momentum + time-stop field": (MomentumWithTimeStop, _momentum_time_stop),
    "RsiReversion + exit field and attribute": (RsiWithStops, _rsi_stops),
}


def _none_or(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


ENGINE = st.fixed_dictionaries(
    {
        "fee_bps": st.floats(0.0, 20.0),
        "slippage_bps": st.floats(0.0, 10.0),
        "rebalance": st.sampled_from(["bar", "bar", "W", "M", 5]),
        "execution": st.sampled_from(["close", "close", "next_open"]),
        "max_weight": _none_or(st.floats(0.15, 1.0)),
        "max_gross_leverage": _none_or(st.floats(0.5, 2.0)),
        "long_only": st.booleans(),
        "target_volatility": _none_or(st.floats(0.05, 0.6)),
        "vol_lookback": st.integers(5, 40),
        "borrow_rate": st.sampled_from([0.0, 0.0, 0.03]),
        "stop_loss": _none_or(st.floats(0.01, 0.2)),
        "trailing_stop": _none_or(st.floats(0.02, 0.3)),
        "max_bars": _none_or(st.integers(2, 40)),
    }
)


def _engine(options: dict[str, Any], cls: type, searched_stop: float | None) -> dict[str, Any]:
    """Drop the options left off and the exits the strategy declares (they are its own)."""
    from backtest.engine._declared import declared_keys

    own = declared_keys(cls)
    out = {k: v for k, v in options.items() if v is not None and k not in own}
    if searched_stop is not None:
        out.pop("take_profit", None)
    return out


def _single(cls: type, params: dict[str, Any], engine: dict[str, Any], bars: Any) -> Any:
    own = {k: v for k, v in params.items() if not k.startswith("engine.")}
    keys = {k.removeprefix("engine."): v for k, v in params.items() if k.startswith("engine.")}
    return simulate(bars, cls(**own), check_lookahead=False, **{**engine, **keys})


def _plain(value: Any) -> Any:
    value = value.item() if isinstance(value, np.generic) else value
    return None if isinstance(value, float) and np.isnan(value) else value


@pytest.mark.parametrize("name", list(STRATEGIES))
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(options=ENGINE, metric=st.sampled_from(["sharpe_ratio", "total_return"]), data=st.data())
def test_search_trials_and_fold_choices_equal_the_single_backtest(
    name: str, options: dict[str, Any], metric: str, data: st.DataObject
) -> None:
    cls, draw = STRATEGIES[name]
    space = draw(data)
    # a searched engine exit now and then (never one the strategy declares)
    searched = data.draw(_none_or(st.floats(0.02, 0.3)))
    if searched is not None and "take_profit" not in space:
        space["engine.take_profit"] = [None, searched]
    engine = _engine(options, cls, searched)
    evaluator = StrategyEvaluator(BARS, cls, **engine)
    try:
        result = grid_search(space, evaluator, metric=metric, progress=False)  # verifies, too
    except TrialsFailed as exc:  # no set traded (a flat book has no Sharpe)
        if f"{metric} is nan" not in str(exc):
            raise
        event("no set traded")
        return
    assert result.best_backtest is not None and result.best_trial in result.verified
    trials = result.trials
    failed = trials[trials["status"] != "ok"]
    assert failed["error"].str.contains(f"{metric} is nan").all(), failed["error"].tolist()
    for _, row in trials.iterrows():  # (a failed trial's metrics are compared too)
        params = {p: _plain(row[p]) for p in result.param_names}
        single = _single(cls, params, engine, BARS).metrics
        for key in m.METRIC_NAMES:
            assert row[key] == pytest.approx(single[key], rel=1e-9, abs=1e-12, nan_ok=True), (
                name, params, key
            )  # fmt: skip

    # walk-forward: each fold's chosen set, re-run alone up to its train end, scores the same
    wf = WalkForwardOptimizer(
        WalkForwardConfig(train_bars=150, test_bars=90),
        SearchConfig(method=SearchMethod.grid, metric=metric),
        pbo_blocks=0,
        spa_bootstrap=0,
    )
    try:
        folds = wf.run(StrategyReturnsEvaluator(BARS, cls, **engine), space).folds
    except TrialsFailed as exc:  # a fold where every set scores NaN (no trade in 150 bars)
        if "non-finite" not in str(exc):
            raise
        event("a fold with no finite score: no walk-forward")
        return
    score = score_function(metric, int(evaluator.periods_per_year))
    index = BARS.index
    for _, row in folds.iterrows():
        start, end = index.get_loc(row["train_start"]), index.get_loc(row["train_end"]) + 1
        params = {p: _plain(row[p]) for p in space}
        alone = _single(cls, params, engine, BARS.iloc[:end]).returns.to_numpy()
        own = float(np.asarray(score(alone[start:end, np.newaxis]))[0])
        assert own == pytest.approx(row["is_score"], rel=1e-9, abs=1e-12), (name, params)


# ------------------------------------------------------------------ the net catches


def _ignore_slow(real: Callable[..., Any]) -> Callable[..., Any]:
    """A fused path that scores every set with the first set's ``slow``."""

    def planted(close: Any, strategy_cls: type, frame: Any, **kwargs: Any) -> Any:
        frame = {str(c): np.asarray(frame[c]) for c in frame}
        frame["slow"] = np.full_like(frame["slow"], frame["slow"][0])
        return real(close, strategy_cls, frame, **kwargs)

    return planted


def test_a_fast_path_ignoring_a_parameter_is_caught_naming_the_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from backtest.engine import _fused
    from backtest.search import _truth

    # One sampled set besides the best, on any machine (a slow one may sample up to three;
    # CI's quick one drew a set with slow=30, which the planted bug gets right). With one
    # fast, any two distinct sets include one whose slow is not the first set's: the net
    # must catch it whichever set is best and whichever is drawn.
    monkeypatch.setattr(_truth, "LONG_SEARCH_S", 1e9)
    monkeypatch.setattr(_fused, "fused_batch", _ignore_slow(_fused.fused_batch))
    evaluator = StrategyEvaluator(BARS, SmaCross, fee_bps=5)
    with pytest.raises(PathDivergence) as err:
        grid_search({"fast": [5], "slow": [30, 60, 120]}, evaluator, progress=False)
    e = err.value
    assert e.strategy == "SmaCross"
    assert set(e.params) >= {"fast", "slow"} and e.params["slow"] != 30  # a set it got wrong
    assert e.metric in ("sharpe_ratio", "n_trades", "total_return")
    assert f"SmaCross with {e.params}" in str(e) and e.metric in str(e)
    with pytest.raises(PathDivergence):  # random and Optuna searches: the same net
        random_search({"fast": [5, 10], "slow": [60, 120]}, evaluator, n_iter=6, seed=2,
                      progress=False)  # fmt: skip


def test_a_sampled_set_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """The best set agrees; a planted error on one other set is still caught by the sample."""
    from backtest.search import _truth

    # a short search samples one set (a loaded machine must not make this one "long")
    monkeypatch.setattr(_truth, "LONG_SEARCH_S", 1e9)
    evaluator = StrategyEvaluator(BARS, SmaCross, fee_bps=5)
    clean = grid_search({"fast": [5], "slow": [20, 40]}, evaluator, progress=False)
    other = 40 if clean.best_params["slow"] == 20 else 20
    real = evaluator.evaluate_columns

    def planted(params: Any, *, keep: Any = None) -> Any:
        names, values, kept = real(params, keep=keep)
        values = values.copy()
        wrong = np.asarray(params["slow"]) == other
        values[wrong, names.index("total_return")] += 0.01
        return names, values, kept

    monkeypatch.setattr(evaluator, "evaluate_columns", planted)
    with pytest.raises(PathDivergence, match="total_return") as err:
        grid_search({"fast": [5], "slow": [20, 40]}, evaluator, progress=False)
    assert err.value.params["slow"] == other


def test_a_walkforward_fold_ignoring_a_parameter_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batched path that ignores ``slow``: every set scores as if it had the last one's.

    All sets tie, the fold picks the first (slow 30), whose own backtest differs.
    """
    evaluator = StrategyReturnsEvaluator(BARS, SmaCross, fee_bps=5)
    real = evaluator._batch

    def planted(param_sets: pd.DataFrame, end: int) -> np.ndarray:
        return real(param_sets.assign(slow=int(param_sets["slow"].iloc[-1])), end)

    monkeypatch.setattr(evaluator, "_batch", planted)
    wf = WalkForwardOptimizer(WalkForwardConfig(train_bars=150, test_bars=90), pbo_blocks=0,
                              spa_bootstrap=0)  # fmt: skip
    with pytest.raises(PathDivergence, match=r"fold 0 \(train .*in-sample") as err:
        wf.run(evaluator, {"fast": [5], "slow": [30, 80]})
    assert err.value.strategy == "SmaCross"
    assert err.value.params == {"fast": 5, "slow": 30}


def test_a_search_over_a_plain_callable_has_nothing_to_compare() -> None:
    result = grid_search({"x": [1, 2, 3]}, lambda p: -((p["x"] - 2) ** 2), metric="score",
                         progress=False)  # fmt: skip
    assert result.best_backtest is None and result.verified == ()


def test_the_sample_stays_within_two_percent_of_a_long_search() -> None:
    from backtest.search._truth import BUDGET_SHARE, Budget

    long = Budget(elapsed=10.0)
    long.slowest = 0.05  # each set takes 50 ms: 200 ms of budget holds 3 of them
    runs = 0
    while long.allows():
        long.charge(0.05)
        runs += 1
    assert runs == 3 and long.spent <= BUDGET_SHARE * 10.0
    slow = Budget(elapsed=2.0)
    slow.slowest = 0.05  # 40 ms of budget: only the one set every search verifies
    assert slow.allows()  # the first always runs, whatever the machine's speed
    slow.charge(0.05)
    assert not slow.allows()
    short = Budget(elapsed=0.2)  # a short search: one sampled set
    short.slowest = 0.05
    assert short.allows()
    short.charge(0.05)
    assert not short.allows()
    # a walk-forward's folds share one budget, grown with its time so far
    folds = Budget()
    folds.charge(0.05)  # the first fold's one sampled set, while the run was short
    folds.update(1.5)  # 30 ms of budget, 50 ms spent: nothing more
    assert not folds.allows()
    folds.update(10.0)  # 200 ms: two more sets of 50 ms (three in all)
    assert folds.allows()
    folds.charge(0.05)
    folds.charge(0.05)
    assert not folds.allows() and folds.spent <= BUDGET_SHARE * 10.0


# ------------------------------------------- a walk-forward: one whole run serves every fold


@pytest.mark.parametrize("name", list(STRATEGIES))
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(options=ENGINE, data=st.data())
def test_the_single_backtest_up_to_a_bar_is_the_whole_run_read_up_to_it(
    name: str, options: dict[str, Any], data: st.DataObject
) -> None:
    """What lets a walk-forward re-run a set once over the whole history and slice it
    for each fold's train window: the engine is causal, with every option."""
    cls, draw = STRATEGIES[name]
    space = draw(data)
    params = {k: data.draw(st.sampled_from(v)) for k, v in space.items()}
    engine = _engine(options, cls, None)
    whole = _single(cls, params, engine, BARS).returns.to_numpy()
    for end in sorted(data.draw(st.sets(st.integers(40, len(BARS) - 1), min_size=2, max_size=2))):
        alone = _single(cls, params, engine, BARS.iloc[:end]).returns.to_numpy()
        np.testing.assert_allclose(whole[:end], alone, rtol=1e-12, atol=1e-15, err_msg=name)


def _counted(evaluator: StrategyReturnsEvaluator) -> list[tuple[dict[str, Any], int]]:
    calls: list[tuple[dict[str, Any], int]] = []
    real = evaluator.backtest

    def counted(params: Any, end: int) -> np.ndarray:
        calls.append((dict(params), end))
        return real(params, end)

    evaluator.backtest = counted  # type: ignore[method-assign]
    return calls


def test_a_set_chosen_by_every_fold_runs_once_and_each_fold_is_compared_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    space = {"fast": [5], "slow": [30]}  # one set: every fold chooses it
    wf = WalkForwardOptimizer(WalkForwardConfig(train_bars=100, test_bars=50), pbo_blocks=0)
    evaluator = StrategyReturnsEvaluator(BARS, SmaCross, fee_bps=5)
    calls = _counted(evaluator)
    result = wf.run(evaluator, space)
    folds = result.folds
    assert len(folds) >= 4
    assert calls == [({"fast": 5, "slow": 30}, len(BARS))]  # the whole history, once
    assert result.verified_folds == tuple(folds["fold"])  # ... read by every fold
    # ... and compared with every fold: a fast path wrong on the third fold's train bars only
    # (with the traded runs' bar-for-bar check off: it sees those bars first, in fold 0)
    from backtest.walkforward import _optimizer

    monkeypatch.setattr(_optimizer, "_check_no_look_ahead", lambda *a: None)
    evaluator = StrategyReturnsEvaluator(BARS, SmaCross, fee_bps=5)
    calls = _counted(evaluator)
    real = evaluator._batch
    end = int(BARS.index.get_loc(folds["train_end"].iloc[2])) + 1  # after fold 1's train bars
    assert end > int(BARS.index.get_loc(folds["train_end"].iloc[1])) + 10

    def planted(param_sets: pd.DataFrame, n: int) -> np.ndarray:
        out = real(param_sets, n).copy()
        out[end - 10 : end] += 0.001
        return out

    monkeypatch.setattr(evaluator, "_batch", planted)
    with pytest.raises(PathDivergence, match=r"fold 2 \(train .*in-sample") as err:
        wf.run(evaluator, space)
    assert err.value.params == {"fast": 5, "slow": 30} and len(calls) == 1


def test_a_fold_whose_set_is_not_re_run_is_caught_by_its_traded_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the first and last folds, chosen sets re-run within a share of the time; the
    others are still compared bar for bar with the fold's traded run, and a difference
    the single backtest puts on the fast path is a PathDivergence, not "looks ahead"."""
    from backtest.search._truth import FoldTruth

    monkeypatch.setattr(FoldTruth, "check", lambda self, **kw: ())  # no re-run at all
    evaluator = StrategyReturnsEvaluator(BARS, SmaCross, fee_bps=5)
    real = evaluator._batch

    def planted(param_sets: pd.DataFrame, end: int) -> np.ndarray:
        return real(param_sets.assign(slow=int(param_sets["slow"].iloc[-1])), end)

    monkeypatch.setattr(evaluator, "_batch", planted)
    wf = WalkForwardOptimizer(WalkForwardConfig(train_bars=150, test_bars=90), pbo_blocks=0)
    with pytest.raises(PathDivergence, match=r"fold 0, shared-history returns") as err:
        wf.run(evaluator, {"fast": [5], "slow": [30, 80]})
    assert err.value.params == {"fast": 5, "slow": 30}


def test_chosen_sets_re_run_within_their_share_of_a_walkforward() -> None:
    from backtest.search._truth import CHOSEN_SHARE, Budget

    chosen = Budget(share=CHOSEN_SHARE, most=None)
    assert chosen.allows()  # the first fold's, always
    chosen.charge(0.01)
    chosen.update(0.05)  # however short the run: only within the share (5 ms here)
    assert not chosen.allows()
    chosen.update(1.0)  # CHOSEN_SHARE of 1 s: as many 10 ms sets as fit in it, no cap
    runs = 1
    while chosen.allows():
        chosen.charge(0.01)
        runs += 1
    assert runs >= 3 and chosen.spent <= CHOSEN_SHARE * 1.0 < chosen.spent + 0.01
