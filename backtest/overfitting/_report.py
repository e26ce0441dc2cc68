"""The overfitting statistics of one search, computed from the trials it ran."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.errors import ConfigError, DataValidationError
from backtest.overfitting._effective import effective_trials
from backtest.overfitting._pbo import _as_matrix, probability_of_backtest_overfitting
from backtest.overfitting._sharpe import (
    deflated_sharpe_ratio,
    expected_maximum_sharpe,
    minimum_track_record_length,
    probabilistic_sharpe_ratio,
    return_moments,
)
from backtest.overfitting._snooping import superior_predictive_ability


@dataclass(frozen=True, slots=True)
class OverfittingReport:
    """The overfitting statistics of one search, reported beside its best Sharpe.

    Attributes:
        n_trials: Trials actually run (the N of the deflated Sharpe).
        n_obs: Bars behind each trial's Sharpe.
        best_trial: Column of the selected trial in the returns matrix.
        best_sharpe: Its per-period Sharpe.
        best_sharpe_annual: The same, annualised (× sqrt(periods_per_year)).
        sharpe_variance: Variance of the trials' per-period Sharpes.
        expected_max_sharpe: Per-period Sharpe the best skill-less trial would show.
        psr: Probabilistic Sharpe ratio of the best trial against 0.
        dsr: Deflated Sharpe ratio of the best trial.
        min_track_record_bars: Bars needed for its Sharpe to beat 0 at 95%.
        pbo: Probability of backtest overfitting (NaN when it could not be computed,
            e.g. one trial or too few bars).
        pbo_n_blocks: S used for the PBO.
        periods_per_year: Bars per year used to annualise.
        effective_trials: Effective number of independent trials (Li & Ji's
            eigenvalue count of the kept trials' return correlations, scaled by
            ``n_trials / kept`` when fewer were kept than run).
        dsr_effective: The deflated Sharpe ratio with ``effective_trials`` as N.
        spa_pvalue: Hansen's SPA p-value of the best trial against the benchmark
            (stationary bootstrap of the kept trials); NaN when not computed.
        reality_check_pvalue: White's Reality Check p-value of the same.
    """

    n_trials: int
    n_obs: int
    best_trial: int
    best_sharpe: float
    best_sharpe_annual: float
    sharpe_variance: float
    expected_max_sharpe: float
    psr: float
    dsr: float
    min_track_record_bars: float
    pbo: float
    pbo_n_blocks: int
    periods_per_year: int
    effective_trials: float = math.nan
    dsr_effective: float = math.nan
    spa_pvalue: float = math.nan
    reality_check_pvalue: float = math.nan

    def as_dict(self) -> dict[str, float]:
        """The statistics as a flat ``{name: float}`` for ``result.json`` and tables."""
        return {
            "n_trials": float(self.n_trials),
            "best_sharpe_annual": self.best_sharpe_annual,
            "expected_max_sharpe_annual": self.expected_max_sharpe
            * math.sqrt(self.periods_per_year),
            "probabilistic_sharpe": self.psr,
            "deflated_sharpe": self.dsr,
            "effective_trials": self.effective_trials,
            "deflated_sharpe_effective": self.dsr_effective,
            "spa_pvalue": self.spa_pvalue,
            "reality_check_pvalue": self.reality_check_pvalue,
            "min_track_record_years": self.min_track_record_bars / self.periods_per_year,
            "pbo": self.pbo,
        }


def overfitting_report(
    trial_returns: pd.DataFrame | NDArray[np.float64],
    *,
    best_trial: int | None = None,
    n_trials: int | None = None,
    trial_sharpes: NDArray[np.float64] | None = None,
    periods_per_year: int = 252,
    n_blocks: int = 16,
    benchmark: pd.Series | NDArray[np.float64] | None = None,
    n_bootstrap: int = 1000,
    seed: int | np.random.Generator | None = None,
) -> OverfittingReport:
    """PSR, DSR (raw and effective N), MinTRL, PBO and SPA for the trials a search ran.

    Args:
        trial_returns: Per-bar returns of the trials (bars x trials), e.g. the kept
            return columns of a search.
        best_trial: Column of the selected trial; the highest Sharpe when None
            (pass it when the search optimised another metric).
        n_trials: Trials actually run, when more were run than columns kept;
            the number of columns when None.
        trial_sharpes: Per-period Sharpes of *all* trials run (for the variance),
            when more were run than columns kept; computed from the columns when None.
        periods_per_year: Bars per year, to annualise for display.
        n_blocks: S for the PBO; reduced to the largest even number that leaves at
            least 4 bars per block on short data; 0 skips the PBO (NaN).
        benchmark: Per-bar benchmark returns for the SPA / Reality Check; flat
            (zero returns) when None.
        n_bootstrap: Stationary-bootstrap draws of the SPA; 0 skips it (NaN).
        seed: Seed of the SPA's bootstrap draws.

    Returns:
        The :class:`OverfittingReport`.

    Raises:
        DataValidationError: Not a 2-D matrix, non-finite returns or fewer than two bars.
    """
    m = _as_matrix(trial_returns)
    n_obs, n_cols = m.shape
    if n_obs < 2 or n_cols < 1:
        raise DataValidationError(
            f"need at least two bars and one trial, got {n_obs} x {n_cols}",
            column="trial_returns",
        )
    if trial_sharpes is None or best_trial is None:
        sd = m.std(axis=0, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            sharpes = np.where(sd > 0.0, m.mean(axis=0) / sd, np.nan)
    if best_trial is None:
        best_trial = int(np.nanargmax(sharpes)) if np.isfinite(sharpes).any() else 0
    pool = sharpes if trial_sharpes is None else np.asarray(trial_sharpes, dtype=np.float64)
    pool = pool[np.isfinite(pool)]
    n_run = int(n_trials) if n_trials is not None else n_cols
    variance = float(np.var(pool, ddof=1)) if pool.size > 1 else 0.0
    mom = return_moments(m[:, best_trial])
    sr = mom.sharpe
    e_max = expected_maximum_sharpe(max(n_run, 1), variance)
    try:
        psr = probabilistic_sharpe_ratio(sr, n_obs, skewness=mom.skewness, kurtosis=mom.kurtosis)
        dsr = deflated_sharpe_ratio(
            sr,
            n_obs,
            n_trials=max(n_run, 1),
            sharpe_variance=variance,
            skewness=mom.skewness,
            kurtosis=mom.kurtosis,
        )
        mintrl = minimum_track_record_length(sr, skewness=mom.skewness, kurtosis=mom.kurtosis)
    except ConfigError:  # moments so extreme the variance factor is not positive
        psr = dsr = mintrl = math.nan
    n_eff = effective_trials(m) * max(n_run, 1) / n_cols
    n_eff = min(max(n_eff, 1.0), float(max(n_run, 1)))
    try:
        dsr_eff = deflated_sharpe_ratio(
            sr,
            n_obs,
            n_trials=n_eff,
            sharpe_variance=variance,
            skewness=mom.skewness,
            kurtosis=mom.kurtosis,
        )
    except ConfigError:
        dsr_eff = math.nan
    spa = rc = math.nan
    if n_bootstrap > 0:
        snoop = superior_predictive_ability(m, benchmark, n_bootstrap=n_bootstrap, seed=seed)
        spa, rc = snoop.spa_pvalue, snoop.reality_check_pvalue
    s = n_blocks - n_blocks % 2
    while s > 2 and n_obs // s < 4:
        s -= 2
    pbo = math.nan
    if s >= 2 and n_cols >= 2 and n_obs // s >= 2:
        pbo = probability_of_backtest_overfitting(m, n_blocks=s).pbo
    return OverfittingReport(
        n_trials=n_run,
        n_obs=n_obs,
        best_trial=best_trial,
        best_sharpe=sr,
        best_sharpe_annual=sr * math.sqrt(periods_per_year),
        sharpe_variance=variance,
        expected_max_sharpe=e_max,
        psr=psr,
        dsr=dsr,
        min_track_record_bars=mintrl,
        pbo=pbo,
        pbo_n_blocks=s,
        periods_per_year=periods_per_year,
        effective_trials=n_eff,
        dsr_effective=dsr_eff,
        spa_pvalue=spa,
        reality_check_pvalue=rc,
    )
