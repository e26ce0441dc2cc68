"""One truth: every search and walk-forward fold reports what the single backtest gives.

The fast paths (fused kernels, the generic path, the per-bar kernel over many sets, a
walk-forward's shared-history returns) are each checked against
:func:`~backtest.engine.simulate` by the engine's tests. This module is the net under
them in every run, present paths and future ones:

* every search (grid, random, Optuna: :class:`~backtest.search._runner.TrialLog`) re-runs
  its chosen set through the single backtest and compares the trial's score, trade count
  and total return with it (:data:`RTOL` relative); every walk-forward fold re-runs its
  chosen set alone over the bars up to its train window's end and compares its
  in-sample score and total return;
* then a few other sets, drawn from the search's own seed (:data:`SAMPLED`), the same
  way; within :data:`BUDGET_SHARE` of the search's time when the search took longer
  than :data:`LONG_SEARCH_S` (a shorter search gets one such set; a walk-forward's
  folds share one budget, that of the walk-forward's time so far);
* a mismatch raises :class:`~backtest.errors.PathDivergence` naming the strategy, the
  parameter set and the first differing metric: never a printed result.

An evaluator takes part by offering the single backtest of one set:
``backtest(params) -> BacktestResult`` (:class:`~backtest.search.StrategyEvaluator`,
the search task's per-set evaluator) or, for a walk-forward, ``backtest(params, end)``
over the bars before ``end`` (:class:`~backtest.walkforward.StrategyReturnsEvaluator`).
A plain callable has no single backtest apart from itself: nothing to compare.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from backtest.errors import PathDivergence

#: Relative tolerance of every comparison (absolute :data:`ATOL` for values near 0).
RTOL = 1e-9
ATOL = 1e-12
#: Sets verified per search (or fold) besides the chosen one, at most.
SAMPLED = 3
#: Share of a long search's time the sampled sets may take.
BUDGET_SHARE = 0.02
#: A search longer than this (seconds) samples within :data:`BUDGET_SHARE` of its time.
LONG_SEARCH_S = 1.0
#: The metrics a search trial is compared on, besides its score.
COMPARED = ("n_trades", "total_return")


def same(a: float, b: float) -> bool:
    """Equal to :data:`RTOL` relative (:data:`ATOL` absolute); NaN equals NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL)


def first_difference(
    fast: Mapping[str, float], single: Mapping[str, float], names: Sequence[str]
) -> tuple[str, float, float] | None:
    """``(metric, fast value, single value)`` of the first of ``names`` that differs.

    A metric missing on either side is not compared.
    """
    for name in names:
        if name not in fast or name not in single:
            continue
        a, b = float(fast[name]), float(single[name])
        if not same(a, b):
            return name, a, b
    return None


def divergence(
    strategy: str, params: Mapping[str, Any], where: str, diff: tuple[str, float, float]
) -> PathDivergence:
    """The error for a set whose fast-path numbers are not the single backtest's."""
    name, a, b = diff
    shown = {k: _plain(v) for k, v in params.items()}
    return PathDivergence(
        f"{strategy} with {shown}: {where} gives {name} = {a!r} but the single backtest "
        f"(simulate) of the same set gives {b!r}; a fast path computed another backtest "
        f"than the one it reports (compared to {RTOL:g} relative). This is a bug of the "
        "fast path, not of your settings: please report it with this message",
        strategy=strategy,
        params=shown,
        metric=name,
        fast=a,
        single=b,
        where=where,
    )


class Budget:
    """How many sampled sets a search that has run ``elapsed`` seconds may verify.

    A search longer than :data:`LONG_SEARCH_S` may spend :data:`BUDGET_SHARE` of its
    time on up to :data:`SAMPLED` of them (the next set runs only if the slowest one so
    far still fits); a shorter one gets one. One is always verified, so what is checked
    never depends on how busy the machine was. A walk-forward keeps one budget for all its
    folds and :meth:`update` s it with the time run so far.
    """

    def __init__(self, elapsed: float = 0.0) -> None:
        self.spent = 0.0
        self.slowest = 0.0
        self.used = 0
        self.update(elapsed)

    def update(self, elapsed: float) -> None:
        """The budget of a search that has run ``elapsed`` seconds."""
        long = elapsed > LONG_SEARCH_S
        self.limit = BUDGET_SHARE * elapsed if long else math.inf
        self.most = SAMPLED if long else 1

    def allows(self) -> bool:
        """Whether one more set fits; the first one always does (on any machine's speed)."""
        return self.used == 0 or (self.used < self.most and self.spent + self.slowest <= self.limit)

    def charge(self, seconds: float) -> None:
        """Count one verified set that took ``seconds``."""
        self.used += 1
        self.spent += seconds
        self.slowest = max(self.slowest, seconds)


def sampled_rows(candidates: Sequence[int], seed: int | None, count: int = SAMPLED) -> list[int]:
    """Up to ``count`` of ``candidates`` drawn from ``seed`` (the same for the same search)."""
    if not candidates:
        return []
    rng = np.random.default_rng(np.random.SeedSequence(seed or 0, spawn_key=(0x7E57,)))
    take = min(count, len(candidates))
    return [int(candidates[i]) for i in rng.choice(len(candidates), size=take, replace=False)]


def verify_search(
    evaluator: Any,
    trials: pd.DataFrame,
    param_names: Sequence[str],
    *,
    metric: str,
    best_trial: int,
    elapsed: float,
    seed: int | None,
) -> tuple[Any, tuple[int, ...]]:
    """Re-run a search's chosen trial and a sample of others through the single backtest.

    Args:
        evaluator: The search's evaluator; with ``backtest(params)`` (the single backtest
            of one set) it is verified, otherwise nothing is.
        trials: The trials table (``trial``, the parameters, the metrics, ``status``).
        param_names: The searched parameters.
        metric: The search's score.
        best_trial: The chosen trial's number.
        elapsed: Seconds the search took (sets the sampled sets' budget).
        seed: The search's root seed (draws the sampled sets).

    Returns:
        ``(the chosen set's BacktestResult or None, the verified trial numbers)``.

    Raises:
        PathDivergence: a verified trial's score, trade count or total return differs
            from its single backtest (names the strategy, the set and the metric).
    """
    backtest = getattr(evaluator, "backtest", None)
    if backtest is None or len(trials) == 0:
        return None, ()
    from backtest.search._result import OK, STATUS, TRIAL

    ok = trials[trials[STATUS] == OK]
    if metric in ok.columns:
        ok = ok[np.isfinite(ok[metric].to_numpy(dtype=np.float64))]
    numbers = ok[TRIAL].to_numpy()
    rows = {int(t): i for i, t in enumerate(numbers)}
    if best_trial not in rows:
        return None, ()
    names = [metric, *[n for n in COMPARED if n != metric]]
    name = _strategy_name(evaluator)

    def check(trial: int) -> Any:
        row = ok.iloc[rows[trial]]
        params = {p: _plain(row[p]) for p in param_names}
        single = backtest(params)
        diff = first_difference(row.to_dict(), single.metrics, names)
        if diff is not None:
            full = {**getattr(evaluator, "fixed_params", {}), **params}
            raise divergence(name, full, f"search trial {trial}", diff)
        return single

    started = time.perf_counter()
    chosen = check(best_trial)
    budget = Budget(elapsed)
    budget.slowest = time.perf_counter() - started  # what one more set will cost
    verified = [best_trial]
    others = [int(t) for t in numbers if int(t) != best_trial]
    for trial in sampled_rows(others, seed):
        if not budget.allows():
            break
        t0 = time.perf_counter()
        check(trial)
        budget.charge(time.perf_counter() - t0)
        verified.append(trial)
    return chosen, tuple(verified)


def verify_fold(
    evaluator: Any,
    *,
    fold: int,
    frame: pd.DataFrame,
    scores: np.ndarray,
    train_returns: np.ndarray,
    best: int,
    train_rows: Callable[[np.ndarray], np.ndarray],
    train_end: int,
    run_end: int | None = None,
    score: Callable[[np.ndarray], Any],
    budget: Budget,
    seed: int | None,
    where: str,
) -> tuple[int, ...]:
    """Re-run a fold's chosen set (and a sample of others) alone over its train bars.

    Each set runs through the single backtest over the bars before ``train_end``
    (``evaluator.backtest(params, train_end)``); its returns on the train rows must give
    the fold's in-sample score and total return.

    Args:
        evaluator: The walk-forward's evaluator; with ``backtest(params, end)``.
        fold: The fold's number (its sampled sets are drawn from ``seed`` and it).
        frame: The fold's parameter sets, one row per trial.
        scores: Their in-sample scores.
        train_returns: Their returns on the train rows, ``(train bars, trials)``.
        best: The chosen row.
        train_rows: The train rows of a run's returns over ``[0, train_end)``.
        train_end: The end (exclusive) of the train window.
        run_end: The chosen set runs over ``[0, run_end)`` (``>= train_end``; the run the
            fold trades next, which the evaluator may keep) and is read up to
            ``train_end``: the engine is causal, so those bars are its run alone over
            ``[0, train_end)``. The sampled sets run over ``[0, train_end)``.
        score: The search metric over the columns of a (bars x sets) array.
        budget: The walk-forward's budget of sampled sets (:class:`Budget`), updated
            with its time so far.
        seed: The walk-forward's seed.
        where: The fold, for the message (``fold 3 (train 2015-01-02..2017-12-29)``).

    Returns:
        The verified rows.

    Raises:
        PathDivergence: names the strategy, the set, the fold and the first metric.
    """
    backtest = getattr(evaluator, "backtest", None)
    if backtest is None:
        return ()
    name = _strategy_name(evaluator)
    finite = [int(i) for i in np.flatnonzero(np.isfinite(scores))]

    def check(i: int, end: int) -> None:
        params = {str(c): _plain(frame[c].iloc[i]) for c in frame.columns}
        single = np.asarray(backtest(params, end), dtype=np.float64)[:train_end]
        rows = train_rows(single)
        fast = {"score": float(scores[i]), "total_return": _total(train_returns[:, i])}
        own = {
            "score": float(np.asarray(score(rows[:, np.newaxis]), dtype=np.float64)[0]),
            "total_return": _total(rows),
        }
        diff = first_difference(fast, own, ("score", "total_return"))
        if diff is not None:
            full = {**getattr(evaluator, "fixed_params", {}), **params}
            raise divergence(name, full, f"{where}, in-sample", diff)

    check(best, max(run_end or train_end, train_end))
    verified = [best]
    others = [i for i in finite if i != best]
    fold_seed = None if seed is None else int(seed) * 1_000_003 + int(fold)
    for i in sampled_rows(others, fold_seed):
        if not budget.allows():
            break
        t0 = time.perf_counter()
        check(i, train_end)
        budget.charge(time.perf_counter() - t0)
        verified.append(i)
    return tuple(verified)


def _total(returns: np.ndarray) -> float:
    return float(np.prod(1.0 + np.asarray(returns, dtype=np.float64)) - 1.0)


def _strategy_name(evaluator: Any) -> str:
    cls = getattr(evaluator, "strategy_cls", None)
    return cls.__name__ if isinstance(cls, type) else type(evaluator).__name__


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
