"""One truth: every search and walk-forward fold reports what the single backtest gives.

The fast paths (fused kernels, the generic path, the per-bar kernel over many sets, a
walk-forward's shared-history returns) are each checked against
:func:`~backtest.engine.simulate` by the engine's tests. This module is the net under
them in every run, present paths and future ones:

* every search (grid, random, Optuna: :class:`~backtest.search._runner.TrialLog`) re-runs
  its chosen set through the single backtest and compares the trial's score, trade count
  and total return with it (:data:`RTOL` relative); a walk-forward (:class:`FoldTruth`)
  re-runs its folds' chosen sets alone, each once over the whole history (the folds'
  train windows are slices of that run), and compares each fold's in-sample score and
  total return: the first and the last fold's always, the others within
  :data:`CHOSEN_SHARE` of its time (all of them at no cost when the evaluator trades
  through the single backtest itself);
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
#: Share of a walk-forward's time its folds' chosen sets may take in re-runs (besides
#: the first and the last fold's, always re-run, and any set already re-run).
CHOSEN_SHARE = 0.05
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

    def __init__(
        self, elapsed: float = 0.0, *, share: float = BUDGET_SHARE, most: int | None = SAMPLED
    ) -> None:
        self.spent = 0.0
        self.slowest = 0.0
        self.used = 0
        self.share = share
        self.cap = most
        self.update(elapsed)

    def update(self, elapsed: float) -> None:
        """The budget of a search that has run ``elapsed`` seconds.

        With ``most=None`` any number of sets fits within ``share`` of ``elapsed``,
        however short (a walk-forward's chosen sets, :class:`FoldTruth`).
        """
        if self.cap is None:
            self.limit, self.most = self.share * elapsed, math.inf
            return
        long = elapsed > LONG_SEARCH_S
        self.limit = self.share * elapsed if long else math.inf
        self.most = float(self.cap) if long else 1.0

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


class FoldTruth:
    """A walk-forward's one truth: its folds' chosen sets (and a sample) re-run alone.

    Each verified set runs once through the evaluator's single backtest
    (``evaluator.backtest(params, end)``, :func:`~backtest.engine.simulate`) and is kept:

    * with shared history (``whole``: every fold's returns are slices of one run of the
      whole history, :class:`~backtest.walkforward.StrategyReturnsEvaluator`'s default)
      over the whole history ``[0, n_bars)``, so that one run serves every fold that
      chooses (or samples) the set: its train rows must give the fold's in-sample score
      and total return. The engine is causal (positions at t read closes up to t), so
      those rows are also its run alone over ``[0, train end)``;
    * when the evaluator's ``trade`` is its single backtest (``trade_is_backtest``:
      engine options, declared exits), over the bars the fold then trades
      (``[0, run_end)``), which the evaluator keeps for the trade: every fold is
      verified at no cost;
    * otherwise (each fold's returns come from a run of their own over its bars) over
      ``[0, run_end)``, every fold's chosen set, as before the shared history existed.

    Which sets run, with shared history: the first and the last fold's chosen sets
    always, a set already run at no cost, the other folds' within :data:`CHOSEN_SHARE`
    of the walk-forward's time so far (:class:`Budget`; 97 folds x 500 sets on 25,200
    bars would otherwise spend twice the search's time in re-runs); then up to
    :data:`SAMPLED` other sets drawn from the seed within :data:`BUDGET_SHARE` (one
    always). A fold whose chosen set is not re-run is still compared bar for bar with
    the evaluator's own run of the set (the walk-forward's look-ahead check of every
    fold's trade, :func:`explain_mismatch`).

    Args:
        evaluator: The walk-forward's evaluator; with ``backtest(params, end)``.
        n_bars: The length of the evaluator's history.
        whole: Whether the evaluator's returns are slices of one whole-history run.
        seed: The walk-forward's seed (draws the sampled sets).
    """

    def __init__(self, evaluator: Any, *, n_bars: int, whole: bool, seed: int | None) -> None:
        self.backtest = getattr(evaluator, "backtest", None)
        self.free = getattr(evaluator, "trade_is_backtest", None)
        self.name = _strategy_name(evaluator)
        self.fixed = dict(getattr(evaluator, "fixed_params", {}))
        self.n_bars = int(n_bars)
        self.whole = bool(whole)
        self.seed = seed
        self.runs: dict[tuple[tuple[str, str], ...], np.ndarray] = {}
        self.chosen = Budget(share=CHOSEN_SHARE, most=None)
        self.sampled = Budget()
        self.verified: list[int] = []

    def check(
        self,
        *,
        fold: int,
        columns: Mapping[str, np.ndarray],
        scores: np.ndarray,
        train_returns: np.ndarray,
        best: int,
        train_rows: Callable[[np.ndarray], np.ndarray],
        train_end: int,
        run_end: int,
        score: Callable[[np.ndarray], Any],
        elapsed: float,
        last: bool,
        where: str,
    ) -> tuple[int, ...]:
        """Verify one fold: its chosen set (when due) and a sample of others.

        Args:
            fold: The fold's number (its sampled sets are drawn from the seed and it).
            columns: The fold's parameter sets, one array per parameter (a row per trial).
            scores: Their in-sample scores.
            train_returns: Their returns on the train rows, ``(train bars, trials)``.
            best: The chosen row.
            train_rows: The train rows of a run's returns over ``[0, end)``.
            train_end: The end (exclusive) of the train window.
            run_end: The end of the run the fold then trades (``>= train_end``).
            score: The search metric over the columns of a (bars x sets) array.
            elapsed: Seconds the walk-forward has run so far (sets the budgets).
            last: Whether this is the last fold (its chosen set is always verified).
            where: The fold, for the message (``fold 3 (train 2015-01-02..2017-12-29)``).

        Returns:
            The rows verified (the chosen one first when it was).

        Raises:
            PathDivergence: names the strategy, the set, the fold and the first metric.
        """
        if self.backtest is None:
            return ()
        self.chosen.update(elapsed)
        self.sampled.update(elapsed)
        params = _row(columns, best)
        free = self.free is not None and bool(self.free(params))
        end = max(run_end, train_end) if free or not self.whole else self.n_bars
        verified = []
        if (
            free
            or not self.whole  # every fold's runs of its own: every fold's chosen set
            or _key(params) in self.runs
            or not self.verified  # the first fold's
            or last
            or self.chosen.allows()
        ):
            self._compare(params, best, end, scores, train_returns, train_rows, train_end,
                          score, where, self.chosen)  # fmt: skip
            verified.append(best)
            self.verified.append(fold)
        if not self.sampled.allows():  # (the draw costs more than the check when none fits)
            return tuple(verified)
        finite = [int(i) for i in np.flatnonzero(np.isfinite(scores)) if i != best]
        fold_seed = None if self.seed is None else int(self.seed) * 1_000_003 + int(fold)
        for i in sampled_rows(finite, fold_seed):
            if not self.sampled.allows():
                break
            end = self.n_bars if self.whole else train_end
            self._compare(_row(columns, i), i, end, scores, train_returns, train_rows,
                          train_end, score, where, self.sampled)  # fmt: skip
            verified.append(i)
        return tuple(verified)

    def _compare(
        self,
        params: dict[str, Any],
        i: int,
        end: int,
        scores: np.ndarray,
        train_returns: np.ndarray,
        train_rows: Callable[[np.ndarray], np.ndarray],
        train_end: int,
        score: Callable[[np.ndarray], Any],
        where: str,
        budget: Budget,
    ) -> None:
        """Set ``i``'s train rows from its single backtest over ``[0, end)`` against the fold's."""
        assert self.backtest is not None
        key = _key(params)
        single = self.runs.get(key) if end == self.n_bars else None
        if single is None:
            t0 = time.perf_counter()
            single = np.asarray(self.backtest(params, end), dtype=np.float64)
            budget.charge(time.perf_counter() - t0)
            if end == self.n_bars:
                self.runs[key] = single
        rows = train_rows(single[:train_end])
        fast = {"score": float(scores[i]), "total_return": _total(train_returns[:, i])}
        own = {
            "score": float(np.asarray(score(rows[:, np.newaxis]), dtype=np.float64)[0]),
            "total_return": _total(rows),
        }
        diff = first_difference(fast, own, ("score", "total_return"))
        if diff is not None:
            raise divergence(self.name, {**self.fixed, **params}, f"{where}, in-sample", diff)


def explain_mismatch(
    evaluator: Any,
    params: Mapping[str, Any],
    shared: np.ndarray,
    traded: np.ndarray,
    where: str,
) -> None:
    """Whether a fast path, not the strategy, made a fold's traded run differ from the shared one.

    A walk-forward compares every fold's traded run (``trade(params, end)``) with the
    shared-history returns of the same set, bar for bar; when they differ, the single
    backtest decides: over the whole history it must give ``shared``, over the traded
    bars ``traded``. When both hold, the strategy itself reads later bars (look-ahead:
    the caller's error); when one does not, that path is wrong.

    Args:
        evaluator: The walk-forward's evaluator; with ``backtest(params, end)``.
        params: The set.
        shared: Its shared-history returns over the whole history.
        traded: Its traded run over ``[0, len(traded))``.
        where: The fold, for the message.

    Raises:
        PathDivergence: names the path, the set, the fold and the first differing bar.
    """
    backtest = getattr(evaluator, "backtest", None)
    if backtest is None:
        return
    for label, fast in (("shared-history returns", shared), ("traded run", traded)):
        single = np.asarray(backtest(dict(params), len(fast)), dtype=np.float64)
        bad = ~np.isclose(fast, single, rtol=RTOL, atol=ATOL, equal_nan=True)
        if bad.any():
            t = int(np.argmax(bad))
            diff = (f"the return at {evaluator.index[t]}", float(fast[t]), float(single[t]))
            full = {**getattr(evaluator, "fixed_params", {}), **params}
            raise divergence(_strategy_name(evaluator), full, f"{where}, {label}", diff)


def _row(columns: Mapping[str, np.ndarray], i: int) -> dict[str, Any]:
    return {str(name): _plain(values[i]) for name, values in columns.items()}


def _key(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), repr(v)) for k, v in params.items()))


def _total(returns: np.ndarray) -> float:
    return float(np.prod(1.0 + np.asarray(returns, dtype=np.float64)) - 1.0)


def _strategy_name(evaluator: Any) -> str:
    cls = getattr(evaluator, "strategy_cls", None)
    return cls.__name__ if isinstance(cls, type) else type(evaluator).__name__


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
