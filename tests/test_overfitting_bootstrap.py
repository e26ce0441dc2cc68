"""The compiled SPA bootstrap and the effective-trial count against the code they replaced.

The reference functions below are the previous implementations, kept verbatim: the
per-row NumPy draws of the stationary bootstrap, ``np.add.at`` counts times the
differentials for the bootstrap means, one FFT per column for arch's kernel
variance, and the (trials x trials) correlation's eigenvalues for Li & Ji's count.
The fast code must give the same draws, the same p-values for the same seed, and the
same counts (to 1e-12).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from backtest.overfitting import (
    effective_trials,
    stationary_bootstrap_indices,
    superior_predictive_ability,
)
from backtest.overfitting._snooping import _long_run_variance

# ------------------------------------------------------------------ reference (old code)


def reference_indices(n_bars: int, n_bootstrap: int, block_size: float, seed: object) -> np.ndarray:
    rng = np.random.default_rng(seed)  # type: ignore[arg-type]
    p = 1.0 / float(block_size)
    idx = np.empty((n_bootstrap, n_bars), dtype=np.int64)
    jump = np.empty((n_bootstrap, n_bars), dtype=bool)
    for r in range(n_bootstrap):
        idx[r] = rng.integers(n_bars, size=n_bars, dtype=np.int64)
        jump[r] = rng.random(n_bars) <= p
    for t in range(1, n_bars):
        cont = ~jump[:, t]
        nxt = idx[cont, t - 1] + 1
        nxt[nxt == n_bars] = 0
        idx[cont, t] = nxt
    return idx


def reference_long_run_variance(d: np.ndarray, block_size: int) -> np.ndarray:
    t = d.shape[0]
    x = d - d.mean(axis=0)
    size = 1 << int(2 * t - 1).bit_length()
    spec = np.fft.rfft(x, n=size, axis=0)
    acov = np.fft.irfft(spec * np.conj(spec), n=size, axis=0)[:t] / t
    p = 1.0 / block_size
    i = np.arange(t, dtype=np.float64)
    kappa = (1.0 - i / t) * (1.0 - p) ** i + (i / t) * (1.0 - p) ** (t - i)
    w = 2.0 * kappa
    w[0] = 1.0
    return np.asarray(w @ acov, dtype=np.float64)


def reference_spa(
    m: np.ndarray, bench: np.ndarray | None, n_bootstrap: int, seed: object, idx=None
) -> dict[str, float]:
    t = m.shape[0]
    d = m - (np.zeros(t) if bench is None else bench)[:, None]
    block = int(math.sqrt(t))
    if idx is None:
        idx = reference_indices(t, n_bootstrap, block, seed)
    reps = idx.shape[0]
    counts = np.zeros((reps, t))
    np.add.at(counts, (np.repeat(np.arange(reps), t), idx.ravel()), 1.0)
    boot_means = counts @ d / t
    mean = d.mean(axis=0)
    variance = reference_long_run_variance(d, block)
    valid = mean >= -np.sqrt(variance / t * 2.0 * math.log(math.log(t))) if t > 2 else mean >= 0
    centres = (np.maximum(mean, 0.0), np.where(valid, mean, 0.0), mean)
    best = float(mean.max())
    lower, consistent, upper = (
        float(np.mean((boot_means - c).max(axis=1) > best)) for c in centres
    )
    return {
        "spa_pvalue": consistent,
        "reality_check_pvalue": upper,
        "lower_pvalue": lower,
        "best_trial": int(np.argmax(mean)),
        "best_excess": best,
    }


def reference_effective_trials(m: np.ndarray) -> float:
    x = m - m.mean(axis=0)
    sd = np.sqrt(np.sum(x * x, axis=0))
    x = x[:, sd > 1e-12 * max(float(sd.max(initial=0.0)), 1e-300)]
    if x.shape[1] < 2:
        return 1.0
    x = x / np.sqrt(np.sum(x * x, axis=0))
    c = np.clip(x.T @ x, -1.0, 1.0)
    lam = np.round(np.abs(np.linalg.eigvalsh((c + c.T) / 2.0)), 9)
    count = float(np.sum((lam >= 1.0) + (lam - np.floor(lam))))
    return min(max(count, 1.0), float(c.shape[0]))


# ------------------------------------------------------------------------------ data


def _grid_like(seed: int, n_bars: int, n_trials: int) -> tuple[np.ndarray, np.ndarray]:
    """Correlated trials with a few edges, losers, duplicates, a flat and a constant one."""
    rng = np.random.default_rng(seed)
    common = rng.normal(0.0, 0.006, (n_bars, 1))
    m = 0.8 * common + rng.normal(0.0001, 0.01, (n_bars, n_trials))
    m[:, 1 % n_trials] += 0.0015
    m[:, 2 % n_trials] -= 0.002
    if n_trials >= 6:
        m[:, 3] = m[:, 4]  # duplicate trials
        m[:, 5] = 0.0  # a set that never trades
    bench = rng.normal(0.0001, 0.004, n_bars)
    return m, bench


# -------------------------------------------------------------------------- the draws


@pytest.mark.parametrize(
    ("n_bars", "reps", "block", "seed"),
    [
        (756, 200, 27, 0),
        (250, 300, 15.5, 1),
        (64, 50, 1, 2),  # every bar starts a block
        (40, 30, 1000, 3),  # blocks far longer than the series: one wrapped run
        (2, 20, 1, 4),
        (1, 5, 3, 5),  # one bar: no integer is drawn
        (3000, 10, 54, 6),
    ],
)
def test_draws_equal_the_per_row_numpy_draws(
    n_bars: int, reps: int, block: float, seed: int
) -> None:
    got = stationary_bootstrap_indices(n_bars, reps, block, seed)
    assert got.dtype == np.int64 and got.shape == (reps, n_bars)
    np.testing.assert_array_equal(got, reference_indices(n_bars, reps, block, seed))


@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.MT19937, np.random.Philox])
def test_a_passed_generator_is_drawn_from_and_left_as_the_reference_leaves_it(
    bit_generator: type,
) -> None:
    ours = np.random.Generator(bit_generator(11))
    ref = np.random.Generator(bit_generator(11))
    np.testing.assert_array_equal(
        stationary_bootstrap_indices(301, 40, 9, ours), reference_indices(301, 40, 9, ref)
    )
    # the caller's generator advanced exactly as far: its next draws agree
    np.testing.assert_array_equal(ours.random(5), ref.random(5))
    assert ours.integers(1000) == ref.integers(1000)


# ---------------------------------------------------------------------- SPA p-values


@pytest.mark.parametrize(
    ("n_bars", "n_trials", "seed", "with_benchmark"),
    [
        (756, 500, 1, False),
        (756, 60, 2, True),
        (252, 500, 3, True),
        (300, 12, 4, False),
        (64, 3, 5, True),
        (5, 4, 6, False),
        (3, 2, 7, True),
    ],
)
def test_spa_p_values_equal_the_reference_for_the_same_seed(
    n_bars: int, n_trials: int, seed: int, with_benchmark: bool
) -> None:
    m, bench = _grid_like(seed, n_bars, n_trials)
    b = bench if with_benchmark else None
    for draw_seed in (seed, seed + 100, seed + 200):
        got = superior_predictive_ability(m, b, n_bootstrap=400, seed=draw_seed)
        ref = reference_spa(m, b, 400, draw_seed)
        assert got.spa_pvalue == ref["spa_pvalue"]
        assert got.reality_check_pvalue == ref["reality_check_pvalue"]
        assert got.lower_pvalue == ref["lower_pvalue"]
        assert got.best_trial == ref["best_trial"]
        assert got.best_excess == ref["best_excess"]
        assert got.n_bootstrap == 400 and got.block_size == int(math.sqrt(n_bars))


@pytest.mark.parametrize("draws", ["any-positions", "long-wrapped-blocks", "iid"])
def test_spa_p_values_equal_the_reference_on_given_draws(draws: str) -> None:
    m, bench = _grid_like(9, 400, 80)
    if draws == "any-positions":
        idx = np.random.default_rng(3).integers(0, 400, size=(300, 400))
    else:  # runs that wrap past the last bar, or none longer than a bar
        idx = reference_indices(400, 300, 5000 if draws == "long-wrapped-blocks" else 1, 3)
    got = superior_predictive_ability(m, bench, bootstrap_indices=idx)
    ref = reference_spa(m, bench, 0, None, idx=idx)
    assert (got.spa_pvalue, got.reality_check_pvalue, got.lower_pvalue) == (
        ref["spa_pvalue"],
        ref["reality_check_pvalue"],
        ref["lower_pvalue"],
    )


def test_spa_on_trials_equal_to_the_benchmark_never_rejects() -> None:
    m = np.tile(np.random.default_rng(2).normal(0.0, 0.01, (200, 1)), (1, 5))
    got = superior_predictive_ability(m, m[:, 0], n_bootstrap=100, seed=1)
    assert got.spa_pvalue == got.reality_check_pvalue == got.lower_pvalue == 0.0
    assert got.best_excess == 0.0
    assert reference_spa(m, m[:, 0], 100, 1)["spa_pvalue"] == 0.0


@pytest.mark.parametrize(("n_bars", "block"), [(756, 27), (300, 17), (64, 8), (40, 1), (7, 2)])
def test_kernel_variance_equals_the_fft_reference(n_bars: int, block: int) -> None:
    rng = np.random.default_rng(n_bars)
    d = rng.normal(0.0002, 0.01, (n_bars, 30))
    d[:, 0] = np.cumsum(d[:, 0]) * 0.05  # strongly autocorrelated
    d[:, 1] = 0.003  # constant: zero variance
    np.testing.assert_allclose(
        _long_run_variance(d, block), reference_long_run_variance(d, block), rtol=1e-12, atol=1e-20
    )


# ------------------------------------------------------------------- effective trials


@pytest.mark.parametrize(
    ("n_bars", "n_trials", "seed"),
    [
        (756, 500, 1),  # trials < bars: the correlation matrix
        (252, 500, 2),  # trials > bars: the Gram matrix
        (100, 1500, 3),
        (61, 60, 4),
        (60, 61, 5),
        (30, 400, 6),
    ],
)
def test_effective_trials_equal_the_correlation_eigenvalue_reference(
    n_bars: int, n_trials: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n_bars, 6))
    m = factors @ rng.normal(size=(6, n_trials)) + 0.4 * rng.normal(size=(n_bars, n_trials))
    m[:, :4] = m[:, [4]]  # identical trials
    m[:, 7] = 0.0  # a trial that never moved (left out)
    got = effective_trials(m)
    assert got == pytest.approx(reference_effective_trials(m), abs=1e-12)
    assert 1.0 <= got <= n_trials
