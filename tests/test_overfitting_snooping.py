"""SPA / Reality Check against arch, their size and power; effective trials on known matrices.

References: :class:`arch.bootstrap.SPA` (Kevin Sheppard's arch, the reference
implementation of Hansen 2005 and White 2000) on the same data and the same bootstrap
draws; Li & Ji (2005) applied to the closed-form spectrum of block-correlation matrices.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from arch.bootstrap import SPA, StationaryBootstrap
from scipy.special import ndtri

from backtest.errors import ConfigError, DataValidationError
from backtest.overfitting import (
    effective_trials,
    effective_trials_from_correlation,
    expected_maximum_sharpe,
    overfitting_report,
    stationary_bootstrap_indices,
    superior_predictive_ability,
)
from backtest.overfitting._snooping import _long_run_variance


def _arch_indices(n_bars: int, reps: int, block: int, seed: int) -> np.ndarray:
    bs = StationaryBootstrap(block, np.zeros(n_bars), seed=seed)
    rows = []
    for _ in bs.bootstrap(reps):
        rows.append(bs.index.copy())
    return np.array(rows)


def _data(seed: int, n_bars: int, n_trials: int, edge: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    common = rng.normal(0.0, 0.006, (n_bars, 1))
    m = 0.8 * common + rng.normal(0.0002, 0.01, (n_bars, n_trials))
    m[:, 1] += edge
    m[:, 2] -= 0.002  # a poor trial: the SPA does not re-centre it, the RC does
    return m, rng.normal(0.0001, 0.004, n_bars)


@pytest.mark.parametrize(
    ("n_bars", "n_trials", "edge", "with_benchmark"),
    [(300, 12, 0.0, False), (250, 40, 0.0008, True), (500, 5, 0.002, True), (64, 3, 0.003, False)],
    ids=["noise-flat", "edge-benchmark", "strong-edge", "short"],
)
def test_spa_and_reality_check_equal_arch_on_the_same_draws(
    n_bars: int, n_trials: int, edge: float, with_benchmark: bool
) -> None:
    m, bench = _data(n_bars + n_trials, n_bars, n_trials, edge)
    bench_used = bench if with_benchmark else np.zeros(n_bars)
    spa = SPA(-bench_used, -m, reps=400, seed=7)  # losses: minus returns
    spa.compute()
    expected = spa.pvalues
    # our own draws equal arch's for the same seed ...
    ours = superior_predictive_ability(
        m, bench if with_benchmark else None, n_bootstrap=400, seed=7
    )
    assert ours.spa_pvalue == pytest.approx(expected["consistent"], abs=1e-6)
    assert ours.reality_check_pvalue == pytest.approx(expected["upper"], abs=1e-6)
    assert ours.lower_pvalue == pytest.approx(expected["lower"], abs=1e-6)
    # ... and given arch's draws explicitly, the same p-values again.
    block = int(math.sqrt(n_bars))
    idx = _arch_indices(n_bars, 400, block, 7)
    np.testing.assert_array_equal(stationary_bootstrap_indices(n_bars, 400, block, 7), idx)
    given = superior_predictive_ability(m, bench if with_benchmark else None, bootstrap_indices=idx)
    assert given.spa_pvalue == pytest.approx(expected["consistent"], abs=1e-6)
    assert given.reality_check_pvalue == pytest.approx(expected["upper"], abs=1e-6)
    assert given.best_trial == int(np.argmax((m - bench_used[:, None]).mean(axis=0)))


def test_long_run_variance_equals_arch() -> None:
    m, bench = _data(3, 400, 7, 0.0)
    spa = SPA(-bench, -m, block_size=12, reps=10, seed=1)
    spa._compute_variance()  # arch's O(T^2) loop; ours is one FFT per column
    np.testing.assert_allclose(
        _long_run_variance(bench[:, None] - m, 12), spa._loss_diff_var, rtol=1e-10
    )


def _rejections(edge: float, seeds: range, n_bars: int = 250, n_trials: int = 10) -> np.ndarray:
    out = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        common = rng.normal(0.0, 0.01, (n_bars, 1))
        m = 0.7 * common + 0.7 * rng.normal(0.0, 0.01, (n_bars, n_trials))
        m[:, 0] += edge
        r = superior_predictive_ability(m, n_bootstrap=199, block_size=5, seed=seed + 10_000)
        out.append((r.spa_pvalue < 0.05, r.reality_check_pvalue < 0.05))
    return np.array(out)


def test_size_under_the_null_is_close_to_five_percent() -> None:
    # Pure-noise grids of ten correlated trials, no skill: each test rejects at 5%
    # about 5% of the time; 400 seeds give a standard error of 1.1 percentage points.
    rate = _rejections(0.0, range(400)).mean(axis=0)
    se = math.sqrt(0.05 * 0.95 / 400)
    assert abs(rate[0] - 0.05) < 3 * se, rate
    assert abs(rate[1] - 0.05) < 3 * se, rate
    assert rate[1] <= rate[0]  # the Reality Check is never the less conservative


def test_power_on_a_planted_edge() -> None:
    # One trial earns 0.4 standard deviations a bar more (t-statistic about 6).
    hits = _rejections(0.004, range(20))
    assert hits[:, 0].sum() >= 19 and hits[:, 1].sum() >= 19


def test_spa_rejects_bad_input_naming_it() -> None:
    m = np.zeros((50, 3))
    with pytest.raises(DataValidationError, match="benchmark has 49 returns") as err:
        superior_predictive_ability(m, np.zeros(49))
    assert err.value.column == "benchmark"
    with pytest.raises(ConfigError, match="n_bootstrap") as cfg:
        superior_predictive_ability(m, n_bootstrap=0)
    assert cfg.value.key == "n_bootstrap"
    bad = m.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataValidationError, match="non-finite"):
        superior_predictive_ability(bad)


# ---------------------------------------------------------------- effective trials


def _li_ji(eigenvalues: np.ndarray) -> float:
    """Li & Ji's count written out: I(λ >= 1) + frac(λ), summed."""
    lam = np.round(np.abs(eigenvalues), 9)
    return float(sum((1.0 if x >= 1.0 else 0.0) + (x - math.floor(x)) for x in lam))


def _block_matrix(sizes: list[int], rhos: list[float]) -> np.ndarray:
    n = sum(sizes)
    c = np.zeros((n, n))
    start = 0
    for size, rho in zip(sizes, rhos, strict=True):
        c[start : start + size, start : start + size] = rho
        start += size
    np.fill_diagonal(c, 1.0)
    return c


@pytest.mark.parametrize(
    ("sizes", "rhos"),
    [
        ([100, 100, 100, 100, 100], [1.0] * 5),
        ([10] * 8, [0.0] * 8),
        ([500], [0.73]),
        ([50, 30, 20], [0.9, 0.5, 0.2]),
        ([7, 7, 7, 7], [0.95, 0.95, 0.3, 0.3]),
    ],
    ids=["5-identical-blocks", "independent", "flagship-0.73", "mixed", "pairs"],
)
def test_effective_trials_of_block_correlation_matrices(
    sizes: list[int], rhos: list[float]
) -> None:
    # Closed-form spectrum: a block of m trials with correlation ρ has one eigenvalue
    # 1 + (m - 1)ρ and m - 1 eigenvalues 1 - ρ.
    spectrum = np.concatenate(
        [
            [1.0 + (m - 1) * rho, *([1.0 - rho] * (m - 1))]
            for m, rho in zip(sizes, rhos, strict=True)
        ]
    )
    got = effective_trials_from_correlation(_block_matrix(sizes, rhos))
    assert got == pytest.approx(_li_ji(spectrum), abs=1e-6)


def test_effective_trials_counts_blocks_and_independent_trials() -> None:
    assert effective_trials_from_correlation(_block_matrix([100] * 5, [1.0] * 5)) == 5.0
    assert effective_trials_from_correlation(np.eye(37)) == 37.0
    # The reference grid: 500 trials, mean correlation 0.73 -> about 136.
    c = _block_matrix([500], [0.73])
    assert effective_trials_from_correlation(c) == pytest.approx(136.0, abs=1e-6)


def test_effective_trials_from_returns_with_a_factor_structure() -> None:
    # Four groups of 25 trials driven by four independent factors (within-group
    # correlation 0.99) plus 5 independent trials: about 4 x 1.25 + 5 = 10 trials.
    rng = np.random.default_rng(5)
    n = 20_000
    factors = rng.normal(size=(n, 4))
    groups = np.repeat(factors, 25, axis=1) + 0.1 * rng.normal(size=(n, 100))
    m = np.hstack([groups, rng.normal(size=(n, 5))])
    rho = 1.0 / 1.01
    spectrum = np.concatenate([[1 + 24 * rho] * 4, [1 - rho] * 96, [1.0] * 5])
    assert effective_trials(m) == pytest.approx(_li_ji(spectrum), abs=1.0)
    flat = np.hstack([m[:, :3], np.zeros((n, 2))])  # trials that never traded are left out
    assert effective_trials(flat) == pytest.approx(effective_trials(m[:, :3]))


def test_fractional_trials_never_lower_the_expected_maximum() -> None:
    assert expected_maximum_sharpe(1.0, 0.01) == 0.0
    assert expected_maximum_sharpe(1.1, 0.01) == 0.0  # the formula would go negative
    z = (1 - 0.5772156649015329) * ndtri(1 - 1 / 136.0) + 0.5772156649015329 * ndtri(
        1 - 1 / (136.0 * math.e)
    )
    assert expected_maximum_sharpe(136.0, 0.01) == pytest.approx(0.1 * z)


def test_report_carries_both_dsrs_effective_trials_and_spa() -> None:
    rng = np.random.default_rng(11)
    common = rng.normal(0.0, 0.01, (756, 1))
    m = 0.9 * common + 0.3 * rng.normal(0.0003, 0.01, (756, 60))
    report = overfitting_report(m, seed=3, n_bootstrap=300)
    d = report.as_dict()
    assert {
        "deflated_sharpe",
        "deflated_sharpe_effective",
        "effective_trials",
        "spa_pvalue",
        "reality_check_pvalue",
    } <= set(d)
    assert 1.0 <= d["effective_trials"] < 60
    assert d["deflated_sharpe_effective"] >= d["deflated_sharpe"]  # fewer trials, less deflation
    spa = superior_predictive_ability(m, n_bootstrap=300, seed=3)
    assert d["spa_pvalue"] == spa.spa_pvalue
    assert d["reality_check_pvalue"] == spa.reality_check_pvalue
    # kept columns stand for all the trials run: the count scales with them
    more = overfitting_report(m, seed=3, n_bootstrap=0, n_trials=120)
    assert more.effective_trials == pytest.approx(2 * report.effective_trials)
    assert math.isnan(more.spa_pvalue)
