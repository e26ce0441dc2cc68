"""How many independent trials a search really ran: the eigenvalue count of Li & Ji.

A grid's neighbouring parameter sets trade almost the same way, so 500 trials are
worth far fewer independent ones, and the deflated Sharpe ratio's N should be that
smaller count (Bailey & López de Prado 2014, section 3: "N should be the number of
effectively independent trials"). The estimator here is Li & Ji (2005, "Adjusting
multiple testing in multi-locus analyses using the eigenvalues of a correlation
matrix", Heredity 95): with ``λ_i`` the eigenvalues of the trials' correlation matrix,
``M_eff = Σ_i [ I(|λ_i| >= 1) + (|λ_i| - floor(|λ_i|)) ]``. N independent trials give
N; a block of perfectly correlated trials counts once; M trials with a common
correlation ρ count about ``1 + (M - 1)(1 - ρ)``.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.errors import DataValidationError

_DECIMALS = 9  # eigenvalues are rounded first, so 2 - 1e-15 counts as 2, not as 1.999...


@functools.cache
def _blas() -> Any:
    """The threadpoolctl controller of the loaded BLAS (found once per process)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _one_blas_thread() -> Any:
    """One BLAS thread for these small dense products and eigen-decompositions.

    OpenBLAS's threads spin while they wait: on a machine whose cores are busy, a
    500 x 500 spectrum took 0.3-1.7 s with its threads against 0.15-0.27 s with one
    (0.01 s against 0.02 s idle), so the statistics never depend on an idle machine.
    """
    return _blas().limit(limits=1, user_api="blas")


def effective_trials_from_correlation(correlation: NDArray[np.float64]) -> float:
    """Li & Ji's effective number of independent trials of a correlation matrix.

    Args:
        correlation: A symmetric (trials x trials) correlation matrix.

    Returns:
        A count in [1, trials].

    Raises:
        DataValidationError: Not a square matrix, or non-finite entries.

    Examples:
        >>> block = np.kron(np.eye(3), np.ones((4, 4)))  # 3 blocks of 4 identical trials
        >>> effective_trials_from_correlation(block)
        3.0
        >>> effective_trials_from_correlation(np.eye(5))
        5.0
    """
    c = np.asarray(correlation, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] == 0:
        raise DataValidationError(
            f"correlation must be a non-empty square matrix, got shape {c.shape}",
            column="correlation",
        )
    if not np.isfinite(c).all():
        raise DataValidationError("correlation contains non-finite entries", column="correlation")
    with _one_blas_thread():
        count = _li_ji(_rounded_spectrum(c))
    return min(max(count, 1.0), float(c.shape[0]))


def _rounded_spectrum(c: NDArray[np.float64]) -> NDArray[np.float64]:
    """Absolute eigenvalues of a symmetric matrix, rounded to ``_DECIMALS``."""
    return np.round(np.abs(np.linalg.eigvalsh((c + c.T) / 2.0)), _DECIMALS)


def _li_ji(lam: NDArray[np.float64]) -> float:
    """``Σ_i [I(λ_i >= 1) + (λ_i - floor(λ_i))]`` of rounded absolute eigenvalues."""
    return float(np.sum((lam >= 1.0) + (lam - np.floor(lam))))


def effective_trials(trial_returns: pd.DataFrame | NDArray[np.float64]) -> float:
    """Effective number of independent trials among the columns of a returns matrix.

    The Li & Ji count of the Pearson correlation matrix of the trials' per-bar
    returns. Trials that never moved (zero variance) have no correlation and are
    left out.

    Args:
        trial_returns: Per-bar returns, one column per trial (bars x trials).

    Returns:
        The effective count, in [1, trials with varying returns]; 1.0 when fewer than
        two trials vary.

    Raises:
        DataValidationError: Not a 2-D matrix with at least two bars, or non-finite values.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> factor = rng.normal(size=(2000, 1))
        >>> twins = np.hstack([factor, factor, factor, rng.normal(size=(2000, 2))])
        >>> round(effective_trials(twins), 1)
        3.0
    """
    m = np.asarray(trial_returns, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] < 2:
        raise DataValidationError(
            f"trial returns must be a (bars x trials) matrix with at least two bars, "
            f"got shape {m.shape}",
            column="trial_returns",
        )
    if not np.isfinite(m).all():
        raise DataValidationError(
            f"{int((~np.isfinite(m)).sum())} non-finite trial returns",
            column="trial_returns",
            count=int((~np.isfinite(m)).sum()),
        )
    x = m - m.mean(axis=0)
    sd = np.sqrt(np.sum(x * x, axis=0))
    x = x[:, sd > 1e-12 * max(float(sd.max(initial=0.0)), 1e-300)]
    if x.shape[1] < 2:
        return 1.0
    x = x / np.sqrt(np.sum(x * x, axis=0))
    if x.shape[1] > x.shape[0]:
        # More trials than bars: the (bars x bars) Gram matrix x x' has the same nonzero
        # eigenvalues as the (trials x trials) correlation x' x, and the rest are zeros,
        # which count nothing; its eigen-decomposition is the cheaper one.
        with _one_blas_thread():
            lam = _rounded_spectrum(x @ x.T)
        return min(max(_li_ji(lam), 1.0), float(x.shape[1]))
    with _one_blas_thread():
        gram = x.T @ x
    return effective_trials_from_correlation(np.clip(gram, -1.0, 1.0))
