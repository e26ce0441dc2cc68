"""Data snooping: Hansen's SPA test and White's Reality Check for a search's best trial.

Both ask "is the best of these N trials better than the benchmark, once we account
for having tried N?" from a stationary bootstrap of the trials' return differentials
over the benchmark (White 2000, "A Reality Check for Data Snooping", Econometrica 68;
Hansen 2005, "A Test for Superior Predictive Ability", JBES 23). The computation is
that of :class:`arch.bootstrap.SPA` (version 7+, non-studentised statistic
``max_k mean(d_k)``), compiled (``_bootstrap``): the draws come from the seeded
``Generator`` in arch's order, and a draw's bootstrap mean of every trial is a sum of
cumulative-sum differences over its runs of consecutive bars, so 1000 draws of 756 bars
x 500 trials cost about 10-20 ms. On the same draws the p-values equal arch's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.errors import ConfigError, DataValidationError
from backtest.overfitting._bootstrap import (
    exceedances,
    kernel_variance,
    stationary_draws,
)


@dataclass(frozen=True, slots=True)
class SPAResult:
    """The data-snooping p-values of the best of N trials against a benchmark.

    Attributes:
        spa_pvalue: Hansen's consistent SPA p-value: the probability, if no trial
            beats the benchmark in expected return per bar, of a best mean excess
            return at least as large as the observed one. Trials far worse than the
            benchmark are not re-centred (they cannot be the best), so adding bad
            trials does not dilute it.
        reality_check_pvalue: White's Reality Check p-value: every trial
            re-centred (the least favourable null); never below ``spa_pvalue``.
        lower_pvalue: Hansen's lower bound (only trials beating the benchmark
            re-centred).
        best_trial: Column with the highest mean excess return (the statistic's trial).
        best_excess: Its mean excess return per bar over the benchmark.
        n_bootstrap: Bootstrap draws.
        block_size: Mean block length of the stationary bootstrap, in bars.
    """

    spa_pvalue: float
    reality_check_pvalue: float
    lower_pvalue: float
    best_trial: int
    best_excess: float
    n_bootstrap: int
    block_size: int


def stationary_bootstrap_indices(
    n_bars: int, n_bootstrap: int, block_size: float, seed: int | np.random.Generator | None
) -> NDArray[np.int64]:
    """Draws of the stationary bootstrap (Politis & Romano 1994), one row per draw.

    Each row starts at a uniformly random bar; every next bar either continues the
    block (wrapping past the end) or, with probability ``1 / block_size``, jumps to a
    new uniformly random bar: blocks have geometric lengths with mean ``block_size``.
    Drawn in the order of :class:`arch.bootstrap.StationaryBootstrap` (integers, then
    uniforms, per row), so the same seeded ``Generator`` gives the same rows.
    """
    rng = np.random.default_rng(seed)
    return stationary_draws(rng, int(n_bars), int(n_bootstrap), 1.0 / float(block_size))


def _long_run_variance(d: NDArray[np.float64], block_size: int) -> NDArray[np.float64]:
    """Arch's kernel variance of each column (the stationary bootstrap's own weights).

    ``sum_{i=0}^{T-1} w_i γ_i`` with ``γ_i`` the lag-i autocovariance sums divided by T
    and ``w_0 = 1``, ``w_i = 2((1 - i/T)(1-p)^i + (i/T)(1-p)^(T-i))``, ``p = 1/block_size``,
    computed in one pass over the bars (see :func:`kernel_variance`).
    """
    return kernel_variance(np.ascontiguousarray(d - d.mean(axis=0)), float(block_size))


def superior_predictive_ability(
    trial_returns: pd.DataFrame | NDArray[np.float64],
    benchmark: pd.Series | NDArray[np.float64] | None = None,
    *,
    n_bootstrap: int = 1000,
    block_size: int | None = None,
    seed: int | np.random.Generator | None = None,
    bootstrap_indices: NDArray[np.int64] | None = None,
) -> SPAResult:
    """SPA and Reality Check p-values of the best trial against a benchmark.

    The differential of trial k at bar t is its return minus the benchmark's. The
    statistic is the largest mean differential; its null distribution comes from
    ``n_bootstrap`` stationary-bootstrap resamples of all trials at once (the same bars
    for every trial, so their correlation is kept), each re-centred as Hansen (SPA,
    consistent), White (Reality Check, all trials) or Hansen's lower bound prescribe.
    A small p-value (below 0.05) says the best trial's edge over the benchmark is
    unlikely to be the luck of having tried this many.

    Args:
        trial_returns: Per-bar returns of the trials (bars x trials).
        benchmark: Per-bar returns of the benchmark, one per bar; flat (zero returns,
            i.e. "better than nothing") when None.
        n_bootstrap: Bootstrap draws (1000 as arch's default).
        block_size: Mean block length in bars; ``int(sqrt(bars))`` (arch's default)
            when None.
        seed: Seed or generator of the draws.
        bootstrap_indices: Precomputed draws ``(n_bootstrap, bars)`` of bar positions,
            e.g. those of another implementation; ``n_bootstrap`` and ``seed`` are then
            ignored.

    Returns:
        The :class:`SPAResult`.

    Raises:
        ConfigError: ``n_bootstrap`` or ``block_size`` below 1, or draws of the wrong shape.
        DataValidationError: Not a 2-D matrix, fewer than two bars, non-finite values
            or a benchmark of another length.

    Examples:
        >>> rng = np.random.default_rng(1)
        >>> noise = rng.normal(0.0, 0.01, size=(500, 20))
        >>> spa = superior_predictive_ability(noise, n_bootstrap=200, seed=2)
        >>> spa.spa_pvalue > 0.05, spa.reality_check_pvalue >= spa.spa_pvalue
        (True, True)
    """
    m = np.asarray(trial_returns, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] < 2 or m.shape[1] < 1:
        raise DataValidationError(
            f"trial returns must be a (bars x trials) matrix with at least two bars, "
            f"got shape {m.shape}",
            column="trial_returns",
        )
    t = m.shape[0]
    if benchmark is None:
        bench = np.zeros(t)
    else:
        bench = np.asarray(benchmark, dtype=np.float64).ravel()
        if bench.size != t:
            raise DataValidationError(
                f"the benchmark has {bench.size} returns but the trials have {t} bars; "
                "pass one benchmark return per bar",
                column="benchmark",
            )
    d = m - bench[:, None]
    if not np.isfinite(d).all():
        raise DataValidationError(
            f"{int((~np.isfinite(d)).sum())} non-finite trial or benchmark returns",
            column="trial_returns",
            count=int((~np.isfinite(d)).sum()),
        )
    block = int(math.sqrt(t)) if block_size is None else int(block_size)
    if block < 1:
        raise ConfigError(f"block_size must be >= 1, got {block_size}", key="block_size")
    if bootstrap_indices is None:
        if int(n_bootstrap) < 1:
            raise ConfigError(f"n_bootstrap must be >= 1, got {n_bootstrap}", key="n_bootstrap")
        idx = stationary_bootstrap_indices(t, int(n_bootstrap), block, seed)
    else:
        idx = np.asarray(bootstrap_indices, dtype=np.int64)
        if idx.ndim != 2 or idx.shape[1] != t or idx.min() < 0 or idx.max() >= t:
            raise ConfigError(
                f"bootstrap_indices must be (draws x {t}) bar positions in [0, {t}), "
                f"got shape {idx.shape}",
                key="bootstrap_indices",
            )
    reps = idx.shape[0]
    mean = d.mean(axis=0)
    variance = _long_run_variance(d, block)
    valid = mean >= -np.sqrt(variance / t * 2.0 * math.log(math.log(t))) if t > 2 else mean >= 0
    centres = np.stack([np.maximum(mean, 0.0), np.where(valid, mean, 0.0), mean])
    best = float(mean.max())
    prefix = np.zeros((t + 1, d.shape[1]))
    np.cumsum(d, axis=0, out=prefix[1:])
    lower, consistent, upper = (int(h) / reps for h in exceedances(idx, prefix, centres, best))
    return SPAResult(
        spa_pvalue=consistent,
        reality_check_pvalue=upper,
        lower_pvalue=lower,
        best_trial=int(np.argmax(mean)),
        best_excess=best,
        n_bootstrap=reps,
        block_size=block,
    )
