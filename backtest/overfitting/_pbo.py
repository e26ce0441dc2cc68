"""Probability of backtest overfitting (CSCV) and in-sample vs out-of-sample degradation.

Performance is the per-period (not annualised) Sharpe ratio unless a metric is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations

import numba
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.errors import ConfigError, DataValidationError


@dataclass(frozen=True, slots=True)
class DegradationResult:
    """How in-sample performance carries out of sample.

    Attributes:
        slope: Slope of the least-squares line ``oos = intercept + slope·is``; a
            negative slope means the better a trial looked in sample, the worse it did
            out of sample.
        intercept: Intercept of that line.
        r_squared: Share of out-of-sample variance explained by the line.
        prob_oos_loss: Fraction of pairs with a negative out-of-sample performance.
        mean_is: Mean in-sample performance.
        mean_oos: Mean out-of-sample performance.
        n: Number of (in-sample, out-of-sample) pairs used.
    """

    slope: float
    intercept: float
    r_squared: float
    prob_oos_loss: float
    mean_is: float
    mean_oos: float
    n: int


def performance_degradation(
    is_performance: NDArray[np.float64] | pd.Series | list[float],
    oos_performance: NDArray[np.float64] | pd.Series | list[float],
) -> DegradationResult:
    """Regress out-of-sample on in-sample performance (pairs with a NaN are dropped).

    Args:
        is_performance: In-sample performance per pair (e.g. per fold or per CSCV split).
        oos_performance: Out-of-sample performance of the same selections.

    Returns:
        The :class:`DegradationResult`; slope, intercept and R² are NaN with fewer
        than two pairs or no spread in the in-sample values.

    Raises:
        ConfigError: The two inputs differ in length.

    Examples:
        >>> d = performance_degradation([1.0, 2.0, 3.0], [0.5, 0.0, -0.5])
        >>> d.slope, d.prob_oos_loss
        (-0.5, 0.3333333333333333)
    """
    x = np.asarray(is_performance, dtype=np.float64).ravel()
    y = np.asarray(oos_performance, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ConfigError(
            f"in-sample and out-of-sample lengths differ: {x.size} vs {y.size}",
            key="oos_performance",
        )
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = int(x.size)
    if n == 0:
        return DegradationResult(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, 0)
    mx, my = float(x.mean()), float(y.mean())
    sxx = float(np.sum((x - mx) ** 2))
    syy = float(np.sum((y - my) ** 2))
    if n < 2 or sxx == 0.0:
        slope = intercept = r2 = math.nan
    else:
        sxy = float(np.sum((x - mx) * (y - my)))
        slope = sxy / sxx
        intercept = my - slope * mx
        r2 = sxy**2 / (sxx * syy) if syy > 0.0 else math.nan
    return DegradationResult(slope, intercept, r2, float(np.mean(y < 0.0)), mx, my, n)


@dataclass(frozen=True, slots=True)
class PBOResult:
    """Probability of backtest overfitting by CSCV, with the evidence behind it.

    Attributes:
        pbo: Fraction of splits whose in-sample best trial ranks at or below the
            out-of-sample median (logit ≤ 0). Near 0: the selection generalises;
            near 0.5 or above: choosing the best in sample is no better than chance.
        logits: λ = ln(ω / (1 - ω)) per split, ω being the relative out-of-sample
            rank in (0, 1) of the in-sample best trial.
        is_performance: In-sample per-period Sharpe (or metric) of the in-sample
            best trial, per split.
        oos_performance: Out-of-sample per-period Sharpe (or metric) of that trial.
        best_trial: Column index of the in-sample best trial, per split.
        degradation: :func:`performance_degradation` of the pairs above.
        n_blocks: S, the number of equal time blocks.
        block_bars: Bars per block (the oldest ``T mod S`` bars are dropped).
        n_combinations: Number of splits, C(S, S/2).
    """

    pbo: float
    logits: NDArray[np.float64]
    is_performance: NDArray[np.float64]
    oos_performance: NDArray[np.float64]
    best_trial: NDArray[np.int64]
    degradation: DegradationResult
    n_blocks: int
    block_bars: int
    n_combinations: int


def _as_matrix(trial_returns: pd.DataFrame | NDArray[np.float64]) -> NDArray[np.float64]:
    m = np.asarray(trial_returns, dtype=np.float64)
    if m.ndim != 2:
        raise DataValidationError(
            f"trial returns must be a 2-D (bars x trials) matrix, got {m.ndim} dimensions",
            column="trial_returns",
        )
    bad = ~np.isfinite(m)
    if bad.any():
        row = int(np.argmax(bad.any(axis=1)))
        ts = trial_returns.index[row] if isinstance(trial_returns, pd.DataFrame) else row
        raise DataValidationError(
            f"trial returns contain {int(bad.sum())} non-finite values, first at row {ts}",
            column="trial_returns",
            timestamp=ts,
            count=int(bad.sum()),
        )
    return m


def _relative_rank(values: NDArray[np.float64], idx: NDArray[np.int64]) -> NDArray[np.float64]:
    """ω = average rank (1..N) of ``values[c, idx[c]]`` within row c, divided by N + 1."""
    v = values[np.arange(values.shape[0]), idx][:, None]
    below = np.sum(values < v, axis=1)
    equal = np.sum(values == v, axis=1)
    rank = below + (equal + 1) / 2.0
    return rank / (values.shape[1] + 1)


@numba.njit(cache=True, nogil=True)
def _half_sharpe(s1: float, s2: float, n: int, shift: float) -> float:  # pragma: no cover
    mean_y = s1 / n
    var = max(s2 - n * mean_y * mean_y, 0.0) / (n - 1)
    return (mean_y + shift) / np.sqrt(var) if var > 0.0 else 0.0


@numba.njit(cache=True, nogil=True)
def _record_split(
    c: int,
    r_is: NDArray[np.float64],
    r_oos: NDArray[np.float64],
    best: NDArray[np.int64],
    is_perf: NDArray[np.float64],
    oos_perf: NDArray[np.float64],
    omega: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled; checked against a brute-force CSCV in the tests
    n = r_is.shape[0]
    idx = 0
    for i in range(1, n):
        if r_is[i] > r_is[idx]:
            idx = i
    v = r_oos[idx]
    below = 0
    equal = 0
    for i in range(n):
        if r_oos[i] < v:
            below += 1
        elif r_oos[i] == v:
            equal += 1
    best[c] = idx
    is_perf[c] = r_is[idx]
    oos_perf[c] = v
    omega[c] = (below + (equal + 1) / 2.0) / (n + 1)


@numba.njit(cache=True, nogil=True)
def _cscv_sharpe(
    b1: NDArray[np.float64],
    b2: NDArray[np.float64],
    t1: NDArray[np.float64],
    t2: NDArray[np.float64],
    shift: NDArray[np.float64],
    combos: NDArray[np.int64],
    n_half: int,
    best: NDArray[np.int64],
    is_perf: NDArray[np.float64],
    oos_perf: NDArray[np.float64],
    omega: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled; checked against a brute-force CSCV in the tests
    """Every CSCV split from per-block sums (``b1``/``b2``: trials x blocks).

    ``combinations()`` lists splits so that split ``n-1-c`` is the complement of split
    ``c``: one pair of Sharpe vectors serves both, so only half the splits are summed.
    """
    n_trials = b1.shape[0]
    n_comb = combos.shape[0]
    r_a = np.empty(n_trials)
    r_b = np.empty(n_trials)
    for c in range(n_comb // 2):
        for i in range(n_trials):
            s1 = 0.0
            s2 = 0.0
            for j in range(combos.shape[1]):
                g = combos[c, j]
                s1 += b1[i, g]
                s2 += b2[i, g]
            r_a[i] = _half_sharpe(s1, s2, n_half, shift[i])
            r_b[i] = _half_sharpe(t1[i] - s1, t2[i] - s2, n_half, shift[i])
        _record_split(c, r_a, r_b, best, is_perf, oos_perf, omega)
        _record_split(n_comb - 1 - c, r_b, r_a, best, is_perf, oos_perf, omega)


def probability_of_backtest_overfitting(
    trial_returns: pd.DataFrame | NDArray[np.float64],
    *,
    n_blocks: int = 16,
    metric: Callable[[NDArray[np.float64]], NDArray[np.float64]] | None = None,
) -> PBOResult:
    """Probability of backtest overfitting by combinatorially symmetric cross-validation.

    The T x N matrix of per-bar returns of the N trials a search ran is cut into
    ``n_blocks`` (S) equal, contiguous time blocks. For each of the C(S, S/2) ways of
    choosing half the blocks as in-sample (the other half out-of-sample), the trial
    with the best in-sample performance is found and its out-of-sample rank among
    all trials recorded (Bailey, Borwein, López de Prado & Zhu 2015, section 2).
    PBO is the share of splits in which that in-sample winner lands in the bottom
    half out of sample.

    Performance is the per-period Sharpe ratio (mean / std with ``ddof=1``, 0 for a
    trial that is flat in that half) unless ``metric`` is given. Ties in rank get
    the average rank; ties for the in-sample best go to the first trial.

    Args:
        trial_returns: Per-bar returns, one column per trial (bars x trials).
        n_blocks: S, an even number of blocks, at least 2 (16 in the paper).
        metric: Optional performance function mapping a (bars x trials) array to one
            value per trial (larger is better); the fast Sharpe path is used when None.

    Returns:
        The :class:`PBOResult`.

    Raises:
        ConfigError: ``n_blocks`` odd or below 2 (key ``n_blocks``), or too few
            bars for that many blocks.
        DataValidationError: Not a 2-D matrix, fewer than two trials or
            non-finite returns.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> noise = rng.normal(0.0, 0.01, size=(400, 20))
        >>> 0.2 < probability_of_backtest_overfitting(noise, n_blocks=8).pbo < 0.8
        True
    """
    m = _as_matrix(trial_returns)
    if n_blocks < 2 or n_blocks % 2:
        raise ConfigError(f"n_blocks must be an even number >= 2, got {n_blocks}", key="n_blocks")
    n_bars, n_trials = m.shape
    if n_trials < 2:
        raise DataValidationError(
            f"PBO needs at least two trials, got {n_trials}", column="trial_returns"
        )
    block = n_bars // n_blocks
    if block * (n_blocks // 2) < 2:
        raise ConfigError(
            f"{n_bars} bars are too few for {n_blocks} blocks (need at least {2 * n_blocks})",
            key="n_blocks",
        )
    m = m[n_bars - block * n_blocks :]
    half = n_blocks // 2
    combos = np.array(list(combinations(range(n_blocks), half)), dtype=np.int64)
    n_comb = combos.shape[0]
    is_perf = np.empty(n_comb)
    oos_perf = np.empty(n_comb)
    best = np.empty(n_comb, dtype=np.int64)
    omega = np.empty(n_comb)

    if metric is None:
        shift = m.mean(axis=0)
        y = (m - shift).reshape(n_blocks, block, n_trials)
        b1 = y.sum(axis=1)
        b2 = (y**2).sum(axis=1)
        t1, t2 = b1.sum(axis=0), b2.sum(axis=0)
        n_half = block * half
        _cscv_sharpe(
            np.ascontiguousarray(b1.T),
            np.ascontiguousarray(b2.T),
            t1,
            t2,
            shift,
            combos,
            n_half,
            best,
            is_perf,
            oos_perf,
            omega,
        )
    else:
        blocks = m.reshape(n_blocks, block, n_trials)
        for c, chosen in enumerate(combos):
            mask = np.zeros(n_blocks, dtype=bool)
            mask[chosen] = True
            r_is = np.asarray(metric(blocks[mask].reshape(-1, n_trials)), dtype=np.float64)
            r_oos = np.asarray(metric(blocks[~mask].reshape(-1, n_trials)), dtype=np.float64)
            idx = int(np.argmax(r_is))
            best[c], is_perf[c], oos_perf[c] = idx, r_is[idx], r_oos[idx]
            omega[c] = _relative_rank(r_oos[None, :], np.array([idx]))[0]

    logits = np.log(omega / (1.0 - omega))
    return PBOResult(
        pbo=float(np.mean(logits <= 0.0)),
        logits=logits,
        is_performance=is_perf,
        oos_performance=oos_perf,
        best_trial=best,
        degradation=performance_degradation(is_perf, oos_perf),
        n_blocks=n_blocks,
        block_bars=block,
        n_combinations=n_comb,
    )
