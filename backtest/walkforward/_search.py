"""The search inside one fold: which parameter sets are tried and how they score."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.config import SearchConfig, SearchMethod
from backtest.errors import TrialsFailed
from backtest.walkforward._evaluator import ReturnsEvaluator
from backtest.walkforward._kernels import window_sharpe
from backtest.walkforward._space import constraint_mask, random_frame, suggest
from backtest.walkforward._splitters import Fold


@dataclass(frozen=True, slots=True)
class FoldSearch:
    """The trials of one fold's search.

    Attributes:
        frame: The parameter sets tried, one row per trial.
        train_returns: Their returns on the train bars, ``(train bars, trials)``.
        scores: The search metric of each trial on the train bars.
        best: Row of the chosen set (the first of the best scores, ties within
            :data:`TIE_RTOL`).
        sharpes: Per-period Sharpe of each trial on the train bars (for the DSR).
        columns: The parameter columns of ``frame`` as arrays.
    """

    frame: pd.DataFrame
    train_returns: NDArray[np.float64]
    scores: NDArray[np.float64]
    best: int
    sharpes: NDArray[np.float64]
    columns: dict[str, NDArray[Any]]


TIE_RTOL = 1e-12
"""Scores this close (relatively) are ties: the same returns scored along different
numerical paths differ in the last bits, and must not decide which set wins."""


def first_best(ranked: NDArray[np.float64]) -> int:
    """The first position whose value ties the maximum (within :data:`TIE_RTOL`)."""
    top = float(np.max(ranked))
    return int(np.argmax(ranked >= top - TIE_RTOL * abs(top)))


def tie_rank(values: NDArray[np.float64], v: float) -> float:
    """Average rank (1..N) of ``v`` among ``values``, ties within :data:`TIE_RTOL`."""
    tol = TIE_RTOL * abs(v)
    below = int(np.sum(values < v - tol))
    equal = int(np.sum(np.abs(values - v) <= tol)) if np.isfinite(v) else int(np.sum(values == v))
    return below + (equal + 1) / 2.0


def fold_seed(seed: int, fold: int) -> np.random.SeedSequence:
    """The seed of one fold, derived from the root seed and the fold number only."""
    return np.random.SeedSequence(seed, spawn_key=(fold,))


def train_rows(fold: Fold, returns: NDArray[np.float64]) -> NDArray[np.float64]:
    """The fold's train rows of returns over bars ``[0, fold.train_end)``."""
    if fold.train_end - fold.train_start == len(fold.train):
        return returns[fold.train_start : fold.train_end]
    return returns[fold.train]


def _optuna_trials(
    fold: Fold,
    evaluator: ReturnsEvaluator,
    space: Mapping[str, Any],
    search: SearchConfig,
    score: Callable[[NDArray[np.float64]], Any],
    maximize: bool,
    method: SearchMethod,
) -> tuple[pd.DataFrame, NDArray[np.float64]]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed = int(fold_seed(search.seed, fold.fold).generate_state(1)[0])
    sampler = (
        optuna.samplers.CmaEsSampler(seed=seed)
        if method is SearchMethod.cmaes
        else optuna.samplers.TPESampler(seed=seed)
    )
    study = optuna.create_study(direction="maximize" if maximize else "minimize", sampler=sampler)
    rows, columns = [], []
    for _ in range(search.n_iter):
        trial = study.ask()
        params = suggest(trial, space)
        one = pd.DataFrame([params])
        if not constraint_mask(one, search.constraint)[0]:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        r = train_rows(fold, evaluator.returns(one, fold.train_end))[:, 0]
        value = float(np.asarray(score(r[:, np.newaxis]))[0])
        if np.isfinite(value):
            study.tell(trial, value)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        rows.append(params)
        columns.append(r)
    if not rows:
        raise TrialsFailed(f"fold {fold.fold}: search.constraint rejected every proposed trial")
    return pd.DataFrame(rows), np.column_stack(columns)


def search_fold(
    fold: Fold,
    evaluator: ReturnsEvaluator,
    space: Mapping[str, Any] | pd.DataFrame,
    grid: pd.DataFrame | None,
    search: SearchConfig,
    score: Callable[[NDArray[np.float64]], Any],
    maximize: bool,
    method: SearchMethod,
    periods_per_year: int = 252,
    scores: NDArray[np.float64] | None = None,
) -> FoldSearch:
    """Score parameter sets on the fold's train bars only and pick the best.

    ``grid`` (when given) is tried as is; otherwise ``random`` draws ``n_iter`` sets
    with the fold's own seed, and ``tpe``/``cmaes`` ask Optuna for ``n_iter`` trials.
    ``scores``, when given, are the grid's train scores computed beforehand.

    Raises:
        TrialsFailed: Every trial scored NaN (names the fold and its dates).
    """
    if grid is not None:
        frame = grid
        train = train_rows(fold, evaluator.returns(frame, fold.train_end))
    elif method is SearchMethod.random:
        rng = np.random.default_rng(fold_seed(search.seed, fold.fold))
        frame = random_frame(space, search.n_iter, rng, search.constraint)
        train = train_rows(fold, evaluator.returns(frame, fold.train_end))
    else:
        frame, train = _optuna_trials(
            fold,
            evaluator,
            space,
            search,
            score,
            maximize,
            method,
        )
    if scores is None:
        scores = np.asarray(score(train), dtype=np.float64)
    finite = np.isfinite(scores)
    if not finite.any():
        idx = evaluator.index
        raise TrialsFailed(
            f"fold {fold.fold} (train {idx[fold.train_start].date()} to "
            f"{idx[fold.train_end - 1].date()}): all {len(frame)} trials have a non-finite "
            f"{search.metric} (no trades in the train window?)"
        )
    ranked = np.where(finite, scores if maximize else -scores, -np.inf)
    if search.metric == "sharpe_ratio":
        sharpes = scores / np.sqrt(periods_per_year)
    else:
        sharpes = window_sharpe(np.asarray(train, dtype=np.float64), 0, train.shape[0])
    columns = {str(c): frame[c].to_numpy() for c in frame.columns}
    return FoldSearch(frame, train, scores, first_best(ranked), sharpes, columns)
