"""Per-fold overfitting statistics: DSR (raw and effective N), PBO, SPA / Reality Check."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from backtest.errors import ConfigError
from backtest.overfitting import (
    deflated_sharpe_ratio,
    effective_trials,
    probability_of_backtest_overfitting,
    superior_predictive_ability,
)
from backtest.walkforward._kernels import sharpe_moments
from backtest.walkforward._search import FoldSearch, fold_seed
from backtest.walkforward._splitters import Fold


def _chosen_dsr(fs: FoldSearch, n_trials: float) -> tuple[float, float]:
    """Per-period in-sample Sharpe of the chosen set and its DSR over ``n_trials``.

    The Sharpe variance is that of the fold's finite trial Sharpe ratios; moments so
    extreme that the DSR's variance is not positive give a NaN DSR.
    """
    chosen = np.ascontiguousarray(fs.train_returns[:, fs.best], dtype=np.float64)
    sharpe, skewness, kurtosis = sharpe_moments(chosen)
    pool = fs.sharpes[np.isfinite(fs.sharpes)]
    variance = float(np.var(pool, ddof=1)) if pool.size > 1 else 0.0
    try:
        dsr = deflated_sharpe_ratio(
            sharpe,
            len(chosen),
            n_trials=n_trials,
            sharpe_variance=variance,
            skewness=skewness,
            kurtosis=kurtosis,
        )
    except ConfigError:  # moments so extreme that the Sharpe variance is not positive
        dsr = math.nan
    return sharpe, dsr


def fold_overfitting(fs: FoldSearch, pbo_blocks: int) -> tuple[float, float, float]:
    """Per-period in-sample Sharpe of the chosen set, its DSR and the fold's PBO.

    The DSR uses every trial the fold ran (N) and the variance of their in-sample
    Sharpe ratios; the PBO is CSCV over the fold's (train bars x trials) matrix.
    """
    sharpe, dsr = _chosen_dsr(fs, len(fs.frame))
    blocks = pbo_blocks - pbo_blocks % 2
    n_obs = fs.train_returns.shape[0]
    while blocks > 2 and n_obs // blocks < 4:
        blocks -= 2
    pbo = math.nan
    if blocks >= 2 and len(fs.frame) >= 2 and n_obs // blocks >= 2:
        pbo = probability_of_backtest_overfitting(fs.train_returns, n_blocks=blocks).pbo
    return sharpe, dsr, pbo


def fold_snooping(
    fold: Fold,
    fs: FoldSearch,
    spa_bootstrap: int,
    benchmark: NDArray[np.float64] | None,
    seed: int,
    effective: bool = False,
) -> dict[str, float]:
    """Effective trials, the DSR with them, and the SPA / Reality Check p-values.

    Both are opt-in (NaN when off): the effective number is Li & Ji's eigenvalue count
    of the fold's trial returns (``effective``), an eigen-decomposition of the
    trials' correlation matrix per fold; the SPA bootstrap (``spa_bootstrap`` draws, 0
    for none) is seeded by the search seed and the fold number.
    """
    train = fs.train_returns
    n_eff = dsr_eff = math.nan
    if effective:
        n_eff = effective_trials(train) if train.shape[1] > 1 else 1.0
        dsr_eff = _chosen_dsr(fs, n_eff)[1]
    spa = rc = math.nan
    if spa_bootstrap > 0 and train.shape[0] > 2:
        bench = None
        if benchmark is not None:
            bench = benchmark[fold.train]
        result = superior_predictive_ability(
            train,
            bench,
            n_bootstrap=spa_bootstrap,
            seed=np.random.default_rng(fold_seed(seed, fold.fold)),
        )
        spa, rc = result.spa_pvalue, result.reality_check_pvalue
    return {
        "effective_trials": n_eff,
        "is_dsr_effective": dsr_eff,
        "spa_pvalue": spa,
        "reality_check_pvalue": rc,
    }
