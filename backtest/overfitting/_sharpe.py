"""Sharpe-ratio statistics: moments, PSR, expected maximum Sharpe, DSR, MinTRL.

All Sharpe ratios are per period (not annualised); kurtosis is Pearson (3 = normal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.errors import ConfigError, DataValidationError

EULER_MASCHERONI = 0.5772156649015329
"""The Euler-Mascheroni constant γ used by the expected maximum Sharpe ratio."""

_STANDARD_NORMAL = NormalDist()


def ndtr(x: float) -> float:
    """The standard normal CDF Φ(x), as ``scipy.special.ndtr`` (``erfc``: exact in both tails).

    The standard library's, not SciPy's: ``scipy.special`` costs a search run about 40 ms
    of imports for two scalar functions.
    """
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def ndtri(p: float) -> float:
    """Φ⁻¹(p), as ``scipy.special.ndtri``: -inf at 0, inf at 1, NaN outside [0, 1].

    Wichura's AS241 (:meth:`statistics.NormalDist.inv_cdf`), good to about 1e-16.
    """
    if math.isnan(p) or not 0.0 <= p <= 1.0:
        return math.nan
    if p in (0.0, 1.0):
        return -math.inf if p == 0.0 else math.inf
    return _STANDARD_NORMAL.inv_cdf(p)


@dataclass(frozen=True, slots=True)
class ReturnMoments:
    """The moments of a return series that the Sharpe statistics need.

    Attributes:
        n_obs: Number of returns (bars).
        mean: Mean return per bar.
        std: Standard deviation per bar (``ddof=1``).
        sharpe: Per-period Sharpe ratio ``mean / std``; NaN when ``std`` is 0.
        skewness: Sample skewness (``m3 / m2**1.5``); 0 for a constant series.
        kurtosis: Sample Pearson kurtosis (``m4 / m2**2``, 3 for normal returns);
            3 for a constant series.
    """

    n_obs: int
    mean: float
    std: float
    sharpe: float
    skewness: float
    kurtosis: float


def return_moments(returns: pd.Series | NDArray[np.float64]) -> ReturnMoments:
    """Mean, standard deviation, per-period Sharpe, skewness and kurtosis of returns.

    Args:
        returns: Simple returns per bar (NaNs are dropped).

    Returns:
        The :class:`ReturnMoments` of the series.

    Raises:
        DataValidationError: Fewer than two finite returns.

    Examples:
        >>> m = return_moments(np.array([0.01, -0.02, 0.03, 0.0]))
        >>> round(m.sharpe, 4), m.n_obs
        (0.2402, 4)
    """
    r = np.asarray(returns, dtype=np.float64).ravel()
    r = r[np.isfinite(r)]
    if r.size < 2:
        raise DataValidationError(
            f"need at least two finite returns for Sharpe moments, got {r.size}",
            column="returns",
            count=int(r.size),
        )
    mean = float(r.mean())
    dev = r - mean
    m2 = float(np.mean(dev**2))
    std = float(np.sqrt(m2 * r.size / (r.size - 1)))
    if m2 <= 0.0:
        return ReturnMoments(r.size, mean, 0.0, math.nan, 0.0, 3.0)
    skew = float(np.mean(dev**3)) / m2**1.5
    kurt = float(np.mean(dev**4)) / m2**2
    return ReturnMoments(r.size, mean, std, mean / std, skew, kurt)


def _variance_factor(sharpe: float, skewness: float, kurtosis: float) -> float:
    """``1 - γ3·SR + (γ4 - 1)/4·SR²``: (n-1) times the variance of the Sharpe estimate."""
    if not (math.isfinite(skewness) and math.isfinite(kurtosis)):
        raise ConfigError(
            f"skewness and kurtosis must be finite, got {skewness}, {kurtosis}", key="kurtosis"
        )
    if kurtosis < 1.0:
        raise ConfigError(
            f"kurtosis must be the Pearson kurtosis (3 for normal returns), got {kurtosis}; "
            "did you pass excess kurtosis?",
            key="kurtosis",
        )
    factor = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if factor <= 0.0:
        raise ConfigError(
            f"skewness {skewness} and kurtosis {kurtosis} give a non-positive Sharpe variance "
            f"at Sharpe {sharpe} (impossible moments: kurtosis must exceed skewness² + 1)",
            key="kurtosis",
        )
    return factor


def sharpe_ratio_std(
    sharpe: float, n_obs: int, *, skewness: float = 0.0, kurtosis: float = 3.0
) -> float:
    """Standard error of a per-period Sharpe estimate under non-normal IID returns.

    ``sqrt((1 - γ3·SR + (γ4 - 1)/4·SR²) / (n - 1))`` (Mertens 2002, as written in
    Bailey & López de Prado 2012, eq. 8).

    Args:
        sharpe: Observed per-period Sharpe ratio.
        n_obs: Number of returns behind it (bars).
        skewness: Sample skewness of the returns.
        kurtosis: Sample Pearson kurtosis of the returns (3 = normal).

    Returns:
        The standard deviation of the Sharpe estimate, per period.

    Raises:
        ConfigError: Fewer than two observations or impossible moments.
    """
    if n_obs < 2:
        raise ConfigError(f"n_obs must be at least 2, got {n_obs}", key="n_obs")
    return math.sqrt(_variance_factor(sharpe, skewness, kurtosis) / (n_obs - 1))


def probabilistic_sharpe_ratio(
    sharpe: float,
    n_obs: int,
    *,
    benchmark_sharpe: float = 0.0,
    skewness: float = 0.0,
    kurtosis: float = 3.0,
) -> float:
    """Probability that the true Sharpe ratio exceeds ``benchmark_sharpe`` (PSR).

    ``Φ((SR - SR*)·sqrt(n - 1) / sqrt(1 - γ3·SR + (γ4 - 1)/4·SR²))`` from Bailey &
    López de Prado (2012), eq. 11. Longer track records, positive skew and thin
    tails raise it; a short, negatively skewed, fat-tailed record lowers it.

    Args:
        sharpe: Observed per-period (non-annualised) Sharpe ratio.
        n_obs: Number of returns (bars) it was measured on.
        benchmark_sharpe: Per-period Sharpe to beat (an annual 1.0 on daily bars
            is ``1 / sqrt(252)``).
        skewness: Sample skewness of the returns.
        kurtosis: Sample Pearson kurtosis (3 = normal, *not* excess kurtosis).

    Returns:
        A probability in [0, 1]; NaN when ``sharpe`` is NaN.

    Raises:
        ConfigError: Fewer than two observations or impossible moments.

    Examples:
        >>> round(probabilistic_sharpe_ratio(0.1, 252), 3)
        0.943
    """
    if not math.isfinite(sharpe):
        return math.nan
    sd = sharpe_ratio_std(sharpe, n_obs, skewness=skewness, kurtosis=kurtosis)
    return float(ndtr((sharpe - benchmark_sharpe) / sd))


def expected_maximum_sharpe(
    n_trials: float, sharpe_variance: float, *, mean_sharpe: float = 0.0
) -> float:
    """Expected best per-period Sharpe of ``n_trials`` skill-less trials.

    ``E[max SR] ≈ E[SR] + sqrt(V[SR])·((1 - γ)·Φ⁻¹(1 - 1/N) + γ·Φ⁻¹(1 - 1/(N·e)))``,
    with γ the Euler-Mascheroni constant (Bailey & López de Prado 2014, eq. 6 and
    appendix; the False Strategy theorem). With one trial nothing was selected and
    the result is ``mean_sharpe``; a fractional count (an effective number of
    independent trials) is accepted, and never gives less than ``mean_sharpe``.

    Args:
        n_trials: Number of trials run (parameter sets tried), at least 1; may be
            fractional (see :func:`effective_trials`).
        sharpe_variance: Variance across trials of their per-period Sharpe ratios.
        mean_sharpe: Mean Sharpe of the trials under the null (0 = no skill).

    Returns:
        The per-period Sharpe the best trial would show by luck alone.

    Raises:
        ConfigError: ``n_trials < 1`` or a negative / non-finite variance.

    Examples:
        >>> round(expected_maximum_sharpe(100, 0.5 / 250), 4)
        0.1132
    """
    if n_trials < 1:
        raise ConfigError(f"n_trials must be at least 1, got {n_trials}", key="n_trials")
    if not math.isfinite(sharpe_variance) or sharpe_variance < 0.0:
        raise ConfigError(
            f"sharpe_variance must be finite and non-negative, got {sharpe_variance}",
            key="sharpe_variance",
        )
    if n_trials == 1:
        return float(mean_sharpe)
    g = EULER_MASCHERONI
    z = (1.0 - g) * ndtri(1.0 - 1.0 / n_trials) + g * ndtri(1.0 - 1.0 / (n_trials * math.e))
    return float(mean_sharpe + math.sqrt(sharpe_variance) * max(float(z), 0.0))


def deflated_sharpe_ratio(
    sharpe: float,
    n_obs: int,
    *,
    n_trials: float,
    sharpe_variance: float,
    skewness: float = 0.0,
    kurtosis: float = 3.0,
    mean_sharpe: float = 0.0,
) -> float:
    """Probability that the best trial's true Sharpe beats selection luck (DSR).

    The PSR of the selected trial against :func:`expected_maximum_sharpe` of all the
    trials run (Bailey & López de Prado 2014, eq. 2). Pass the number of trials you
    actually ran, not the number you kept: hiding trials is the only way to inflate it.

    Args:
        sharpe: Per-period Sharpe of the selected (best) trial.
        n_obs: Bars behind that Sharpe.
        n_trials: Trials run in the search that selected it (or their effective
            number, see :func:`effective_trials`).
        sharpe_variance: Variance across those trials of their per-period Sharpes.
        skewness: Sample skewness of the selected trial's returns.
        kurtosis: Sample Pearson kurtosis of its returns (3 = normal).
        mean_sharpe: Mean trial Sharpe under the null (0 = no skill).

    Returns:
        A probability in [0, 1]; above 0.95 the Sharpe is significant after
        correcting for the search; NaN when ``sharpe`` is NaN.

    Raises:
        ConfigError: Invalid trial count, variance, observations or moments.

    Examples:
        >>> dsr = deflated_sharpe_ratio(2.5 / 250**0.5, 1250, n_trials=100,
        ...     sharpe_variance=0.5 / 250, skewness=-3.0, kurtosis=10.0)
        >>> round(dsr, 2)
        0.9
    """
    benchmark = expected_maximum_sharpe(n_trials, sharpe_variance, mean_sharpe=mean_sharpe)
    return probabilistic_sharpe_ratio(
        sharpe, n_obs, benchmark_sharpe=benchmark, skewness=skewness, kurtosis=kurtosis
    )


def minimum_track_record_length(
    sharpe: float,
    *,
    benchmark_sharpe: float = 0.0,
    skewness: float = 0.0,
    kurtosis: float = 3.0,
    confidence: float = 0.95,
) -> float:
    """Bars of track record needed before ``sharpe`` beats the benchmark (MinTRL).

    ``1 + (1 - γ3·SR + (γ4 - 1)/4·SR²)·(Φ⁻¹(confidence) / (SR - SR*))²`` (Bailey &
    López de Prado 2012, eq. 13). The answer is in bars of the returns' frequency:
    divide by ``periods_per_year`` for years.

    Args:
        sharpe: Observed per-period Sharpe ratio.
        benchmark_sharpe: Per-period Sharpe to beat.
        skewness: Sample skewness of the returns.
        kurtosis: Sample Pearson kurtosis (3 = normal).
        confidence: Required probability that the true Sharpe beats the benchmark.

    Returns:
        The minimum number of bars; ``inf`` when ``sharpe`` does not exceed the
        benchmark (no track record is long enough), NaN when ``sharpe`` is NaN.

    Raises:
        ConfigError: ``confidence`` outside (0, 1) or impossible moments.

    Examples:
        >>> round(minimum_track_record_length(2 / 252**0.5, benchmark_sharpe=1 / 252**0.5) / 252, 2)
        2.73
    """
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}", key="confidence")
    if not math.isfinite(sharpe):
        return math.nan
    if sharpe <= benchmark_sharpe:
        return math.inf
    factor = _variance_factor(sharpe, skewness, kurtosis)
    return float(1.0 + factor * (ndtri(confidence) / (sharpe - benchmark_sharpe)) ** 2)
