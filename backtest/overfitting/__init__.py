"""Is a backtest's best Sharpe ratio skill or luck? Overfitting statistics.

Every statistic here works on **per-period** (non-annualised) Sharpe ratios: the
mean return per bar divided by the standard deviation per bar (``ddof=1``). A daily
strategy with an annualised Sharpe of 2.5 has a per-period Sharpe of
``2.5 / sqrt(252)`` ≈ 0.157. Skewness is the sample skewness and kurtosis the
sample (Pearson, *not* excess) kurtosis of the per-bar returns, so normal returns
have skewness 0 and kurtosis 3. Track-record lengths are counted in bars.

* :func:`probabilistic_sharpe_ratio` (PSR): the probability that the true Sharpe
  exceeds a benchmark, given the track record's length, skewness and kurtosis
  (Bailey & López de Prado 2012, "The Sharpe Ratio Efficient Frontier").
* :func:`minimum_track_record_length` (MinTRL): the bars needed before an observed
  Sharpe beats a benchmark at a confidence level (same paper).
* :func:`expected_maximum_sharpe` and :func:`deflated_sharpe_ratio` (DSR): the PSR
  against the Sharpe the best of N skill-less trials would show by luck alone
  (Bailey & López de Prado 2014, "The Deflated Sharpe Ratio").
* :func:`probability_of_backtest_overfitting` (PBO): combinatorially symmetric
  cross-validation over a time x trials return matrix (Bailey, Borwein, López de
  Prado & Zhu 2015, "The Probability of Backtest Overfitting").
* :func:`superior_predictive_ability`: Hansen's SPA and White's Reality Check
  p-values of the best trial against a benchmark (White 2000; Hansen 2005), from a
  stationary bootstrap of all trials.
* :func:`effective_trials`: the effective number of independent trials (Li & Ji
  2005 eigenvalue count), the N of the "effective" deflated Sharpe.
* :func:`performance_degradation`: how in-sample performance carries out of sample.
* :func:`overfitting_report`: all of the above for the trials a search actually ran.
"""

from __future__ import annotations

from backtest.overfitting._effective import effective_trials, effective_trials_from_correlation
from backtest.overfitting._pbo import (
    DegradationResult,
    PBOResult,
    performance_degradation,
    probability_of_backtest_overfitting,
)
from backtest.overfitting._report import OverfittingReport, overfitting_report
from backtest.overfitting._sharpe import (
    EULER_MASCHERONI,
    ReturnMoments,
    deflated_sharpe_ratio,
    expected_maximum_sharpe,
    minimum_track_record_length,
    probabilistic_sharpe_ratio,
    return_moments,
    sharpe_ratio_std,
)
from backtest.overfitting._snooping import (
    SPAResult,
    stationary_bootstrap_indices,
    superior_predictive_ability,
)

__all__ = [
    "EULER_MASCHERONI",
    "DegradationResult",
    "OverfittingReport",
    "PBOResult",
    "ReturnMoments",
    "SPAResult",
    "deflated_sharpe_ratio",
    "effective_trials",
    "effective_trials_from_correlation",
    "expected_maximum_sharpe",
    "minimum_track_record_length",
    "overfitting_report",
    "performance_degradation",
    "probabilistic_sharpe_ratio",
    "probability_of_backtest_overfitting",
    "return_moments",
    "sharpe_ratio_std",
    "stationary_bootstrap_indices",
    "superior_predictive_ability",
]
