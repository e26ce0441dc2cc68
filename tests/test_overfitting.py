"""Overfitting statistics against the papers' worked examples and a brute-force CSCV.

Published numbers come from:

* [BLP2012] Bailey & López de Prado (2012), "The Sharpe Ratio Efficient Frontier",
  Journal of Risk 15(2). Appendix A.3 (MinTRL of 59.895 months), section 5 (2.73
  years for an annual Sharpe of 2 to beat 1 on daily normal returns) and the table
  "Stats of Max PSR and Max SR portfolios" (134 monthly observations).
* [BLP2014] Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", Journal of
  Portfolio Management 40(5), section "A numerical example": annual Sharpe 2.5 on 5
  years of daily data (250 bars a year), V[SR_n] = 1/2 annualised, skewness -3,
  kurtosis 10: DSR ≈ 0.90 after N = 100 trials, 0.9505 after N = 46, and 0.95 after
  N = 88 had the returns been normal.
"""

from __future__ import annotations

import math
from itertools import combinations, pairwise

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from backtest.errors import ConfigError, DataValidationError
from backtest.overfitting import (
    EULER_MASCHERONI,
    deflated_sharpe_ratio,
    expected_maximum_sharpe,
    minimum_track_record_length,
    overfitting_report,
    performance_degradation,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    return_moments,
    sharpe_ratio_std,
)

# [BLP2014] "A numerical example", converted to per-period (daily, 250 bars a year).
DSR_SHARPE = 2.5 / math.sqrt(250)
DSR_VARIANCE = 0.5 / 250
DSR_BARS = 1250


# ----------------------------------------------------------------------------- PSR / DSR / MinTRL


def test_dsr_paper_example_hundred_trials() -> None:
    # [BLP2014]: after N = 100 trials the DSR is about 0.90 (quoted to two decimals).
    dsr = deflated_sharpe_ratio(
        DSR_SHARPE, DSR_BARS, n_trials=100, sharpe_variance=DSR_VARIANCE, skewness=-3, kurtosis=10
    )
    assert dsr == pytest.approx(0.90, abs=5e-3)


def test_dsr_paper_example_forty_six_trials() -> None:
    # [BLP2014]: had the researcher run only N = 46 trials, DSR = 0.9505 (4 decimals).
    dsr = deflated_sharpe_ratio(
        DSR_SHARPE, DSR_BARS, n_trials=46, sharpe_variance=DSR_VARIANCE, skewness=-3, kurtosis=10
    )
    assert dsr == pytest.approx(0.9505, abs=5e-5)


def test_dsr_paper_example_normal_returns() -> None:
    # [BLP2014]: with normal returns (skew 0, kurtosis 3, not 0) DSR reaches 0.95 at N = 88.
    dsr = deflated_sharpe_ratio(
        DSR_SHARPE, DSR_BARS, n_trials=88, sharpe_variance=DSR_VARIANCE, skewness=0, kurtosis=3
    )
    assert dsr == pytest.approx(0.95, abs=1e-3)
    # Excess kurtosis (0) would be a silent convention error: it is refused.
    with pytest.raises(ConfigError) as err:
        deflated_sharpe_ratio(
            DSR_SHARPE, DSR_BARS, n_trials=88, sharpe_variance=DSR_VARIANCE, kurtosis=0.0
        )
    assert err.value.key == "kurtosis"


def test_expected_maximum_sharpe_inverted_from_the_printed_dsr() -> None:
    # Independent of our formula: invert the printed DSR 0.9505 at N = 46 by hand,
    # SR0 = SR - Φ⁻¹(0.9505)·sqrt(1 - γ3·SR + (γ4-1)/4·SR²)/sqrt(T-1). Its rounding
    # (±5e-5 in probability) moves SR0 by about 1.7e-5.
    factor = 1 + 3 * DSR_SHARPE + 9 / 4 * DSR_SHARPE**2
    sr0 = DSR_SHARPE - stats.norm.ppf(0.9505) * math.sqrt(factor) / math.sqrt(DSR_BARS - 1)
    assert expected_maximum_sharpe(46, DSR_VARIANCE) == pytest.approx(sr0, abs=2e-5)


def test_expected_maximum_sharpe_formula_written_plainly() -> None:
    g, n, v = 0.5772156649015329, 250, 0.04
    z = (1 - g) * stats.norm.ppf(1 - 1 / n) + g * stats.norm.ppf(1 - 1 / (n * math.e))
    assert pytest.approx(g, abs=1e-15) == EULER_MASCHERONI
    assert expected_maximum_sharpe(n, v, mean_sharpe=0.1) == pytest.approx(0.1 + 0.2 * z, rel=1e-12)
    # One trial: nothing was selected, so DSR is the PSR against the null mean.
    assert expected_maximum_sharpe(1, v) == 0.0
    assert deflated_sharpe_ratio(0.1, 500, n_trials=1, sharpe_variance=v) == pytest.approx(
        probabilistic_sharpe_ratio(0.1, 500), abs=1e-15
    )


def test_dsr_falls_as_more_trials_are_run() -> None:
    values = [
        deflated_sharpe_ratio(DSR_SHARPE, DSR_BARS, n_trials=n, sharpe_variance=DSR_VARIANCE)
        for n in (1, 2, 10, 100, 1000, 10_000)
    ]
    assert all(a > b for a, b in pairwise(values))


def test_mintrl_paper_appendix_example() -> None:
    # [BLP2012] appendix A.3: monthly SR 2/sqrt(12) vs 1/sqrt(12), skew -0.72,
    # kurtosis 5.78, 95% -> MinTRL = 59.895 months (about 4.99 years).
    months = minimum_track_record_length(
        2 / math.sqrt(12), benchmark_sharpe=1 / math.sqrt(12), skewness=-0.72, kurtosis=5.78
    )
    assert months == pytest.approx(59.895, abs=5e-4)


@pytest.mark.parametrize("bars_per_year", [250, 252], ids=["250d", "252d"])
def test_mintrl_paper_daily_example(bars_per_year: int) -> None:
    # [BLP2012] section 5: 2.73 years for an annual SR of 2 to beat 1 at 95% (normal IID daily).
    bars = minimum_track_record_length(
        2 / math.sqrt(bars_per_year), benchmark_sharpe=1 / math.sqrt(bars_per_year)
    )
    assert bars / bars_per_year == pytest.approx(2.73, abs=5e-3)


@pytest.mark.parametrize(
    ("sharpe", "skew", "kurt", "sr_std", "years_vs_0", "years_vs_half", "psr_vs_half"),
    [
        (0.7079, -0.2250, 2.9570, 0.1028, 0.7152, 1.0804, None),
        (0.8183, -1.4455, 7.0497, 0.1550, 1.1593, 1.6695, 0.99999),
    ],
    ids=["max-psr-portfolio", "max-sr-portfolio"],
)
def test_psr_and_mintrl_paper_portfolio_table(
    sharpe: float,
    skew: float,
    kurt: float,
    sr_std: float,
    years_vs_0: float,
    years_vs_half: float,
    psr_vs_half: float | None,
) -> None:
    # [BLP2012] table "Stats of Max PSR and Max SR portfolios": 134 monthly returns;
    # the benchmark 0.5 is annual, i.e. 0.5/sqrt(12) monthly; MinTRL printed in years.
    # The inputs are printed to 4 decimals, so the outputs are matched to 1e-4.
    n, bench = 134, 0.5 / math.sqrt(12)
    assert sharpe_ratio_std(sharpe, n, skewness=skew, kurtosis=kurt) == pytest.approx(
        sr_std, abs=5e-5
    )
    y0 = minimum_track_record_length(sharpe, skewness=skew, kurtosis=kurt) / 12
    yh = minimum_track_record_length(sharpe, benchmark_sharpe=bench, skewness=skew, kurtosis=kurt)
    assert y0 == pytest.approx(years_vs_0, abs=1e-4)
    assert yh / 12 == pytest.approx(years_vs_half, abs=1e-4)
    if psr_vs_half is not None:
        psr = probabilistic_sharpe_ratio(
            sharpe, n, benchmark_sharpe=bench, skewness=skew, kurtosis=kurt
        )
        assert psr == pytest.approx(psr_vs_half, abs=5e-6)


def test_psr_at_mintrl_is_the_confidence() -> None:
    sr, bench, sk, ku = 0.18, 0.05, -0.6, 7.2
    for conf in (0.6, 0.9, 0.95, 0.99):
        n = minimum_track_record_length(
            sr, benchmark_sharpe=bench, skewness=sk, kurtosis=ku, confidence=conf
        )
        # PSR with a fractional track record: evaluate the formula in the test.
        z = (sr - bench) * math.sqrt(n - 1) / math.sqrt(1 - sk * sr + (ku - 1) / 4 * sr**2)
        assert stats.norm.cdf(z) == pytest.approx(conf, abs=1e-12)


def test_psr_and_mintrl_edge_cases() -> None:
    assert probabilistic_sharpe_ratio(0.1, 100, benchmark_sharpe=0.1) == pytest.approx(0.5)
    assert math.isnan(probabilistic_sharpe_ratio(math.nan, 100))
    assert minimum_track_record_length(0.05, benchmark_sharpe=0.1) == math.inf
    with pytest.raises(ConfigError) as err:
        minimum_track_record_length(0.2, confidence=1.0)
    assert err.value.key == "confidence"
    with pytest.raises(ConfigError) as err:
        probabilistic_sharpe_ratio(0.1, 1)
    assert err.value.key == "n_obs"
    with pytest.raises(ConfigError) as err:
        expected_maximum_sharpe(0, 0.1)
    assert err.value.key == "n_trials"


def test_return_moments_match_scipy() -> None:
    r = np.random.default_rng(3).standard_t(4, size=500) * 0.01 + 0.0005
    m = return_moments(pd.Series(r))
    assert m.n_obs == 500
    assert m.sharpe == pytest.approx(r.mean() / r.std(ddof=1), rel=1e-12)
    assert m.skewness == pytest.approx(stats.skew(r), rel=1e-10)
    assert m.kurtosis == pytest.approx(stats.kurtosis(r, fisher=False), rel=1e-10)
    with pytest.raises(DataValidationError):
        return_moments(np.array([0.01]))


# ----------------------------------------------------------------------------- CSCV / PBO


def _brute_force_cscv(m: np.ndarray, s: int) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """CSCV written plainly from the paper: loops over splits, scipy ranks."""
    t = (m.shape[0] // s) * s
    m = m[m.shape[0] - t :]
    blocks = np.split(m, s)

    def sharpe(x: np.ndarray) -> np.ndarray:  # per column; 0 for a flat column
        sd = x.std(axis=0, ddof=1)
        return np.divide(x.mean(axis=0), sd, out=np.zeros(x.shape[1]), where=sd > 0)

    logits, is_p, oos_p = [], [], []
    for train in combinations(range(s), s // 2):
        test = [b for b in range(s) if b not in train]
        r_is = sharpe(np.vstack([blocks[b] for b in train]))
        r_oos = sharpe(np.vstack([blocks[b] for b in test]))
        n_star = int(np.argmax(r_is))
        omega = stats.rankdata(r_oos)[n_star] / (len(r_oos) + 1)
        logits.append(math.log(omega / (1 - omega)))
        is_p.append(r_is[n_star])
        oos_p.append(r_oos[n_star])
    logits_a = np.array(logits)
    return float(np.mean(logits_a <= 0)), logits_a, np.array(is_p), np.array(oos_p)


def _fixed_matrix(n_bars: int = 403, n_trials: int = 9) -> np.ndarray:
    rng = np.random.default_rng(20150101)
    drift = np.linspace(-2e-4, 4e-4, n_trials)
    m = rng.normal(drift, 0.01, size=(n_bars, n_trials))
    m[:, 3] = 0.0  # a trial that never trades: Sharpe 0 by convention
    return m


@pytest.mark.parametrize(
    "s", [2, 6, pytest.param(16, marks=pytest.mark.slow)], ids=["S2", "S6", "S16"]
)
def test_pbo_equals_brute_force_cscv(s: int) -> None:
    m = _fixed_matrix()
    pbo, logits, is_p, oos_p = _brute_force_cscv(m, s)
    res = probability_of_backtest_overfitting(m, n_blocks=s)
    assert res.n_combinations == math.comb(s, s // 2)
    assert res.block_bars == 403 // s
    assert res.pbo == pbo
    np.testing.assert_allclose(res.logits, logits, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.is_performance, is_p, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.oos_performance, oos_p, rtol=1e-9, atol=1e-12)
    lin = stats.linregress(is_p, oos_p)
    assert res.degradation.slope == pytest.approx(lin.slope, rel=1e-9)
    assert res.degradation.r_squared == pytest.approx(lin.rvalue**2, rel=1e-9)
    assert res.degradation.prob_oos_loss == pytest.approx(np.mean(oos_p < 0))


def test_pbo_metric_callable_path_matches_fast_path() -> None:
    m = _fixed_matrix(240, 7)

    def sharpe(x: np.ndarray) -> np.ndarray:
        return x.mean(axis=0) / x.std(axis=0, ddof=1)

    a = probability_of_backtest_overfitting(m[:, [0, 1, 2, 4, 5, 6]], n_blocks=8)
    b = probability_of_backtest_overfitting(m[:, [0, 1, 2, 4, 5, 6]], n_blocks=8, metric=sharpe)
    assert a.pbo == b.pbo
    np.testing.assert_allclose(a.logits, b.logits, rtol=1e-9)
    np.testing.assert_array_equal(a.best_trial, b.best_trial)


def test_pbo_zero_for_a_dominant_trial_and_high_for_noise() -> None:
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 0.01, size=(800, 50))
    skill = noise.copy()
    skill[:, 0] += 0.01  # Sharpe ~1 per bar: wins every split, in and out of sample
    assert probability_of_backtest_overfitting(skill, n_blocks=10).pbo == 0.0
    # Pure noise: choosing the in-sample best is a coin toss.
    assert 0.3 < probability_of_backtest_overfitting(noise, n_blocks=10).pbo < 0.7


def test_pbo_input_errors() -> None:
    m = _fixed_matrix(100, 4)
    with pytest.raises(ConfigError) as err:
        probability_of_backtest_overfitting(m, n_blocks=5)
    assert err.value.key == "n_blocks"
    with pytest.raises(ConfigError):
        probability_of_backtest_overfitting(m[:3], n_blocks=4)
    with pytest.raises(DataValidationError):
        probability_of_backtest_overfitting(m[:, :1])
    bad = pd.DataFrame(m, index=pd.bdate_range("2020-01-01", periods=100))
    bad.iloc[17, 2] = np.nan
    with pytest.raises(DataValidationError) as verr:
        probability_of_backtest_overfitting(bad)
    assert verr.value.timestamp == bad.index[17]
    assert verr.value.count == 1


def test_performance_degradation_matches_polyfit() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=40)
    y = 0.3 - 0.7 * x + rng.normal(scale=0.2, size=40)
    d = performance_degradation(np.append(x, np.nan), np.append(y, 1.0))
    slope, intercept = np.polyfit(x, y, 1)
    assert d.n == 40
    assert d.slope == pytest.approx(slope, rel=1e-10)
    assert d.intercept == pytest.approx(intercept, rel=1e-10)
    assert d.r_squared == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2, rel=1e-10)
    assert d.prob_oos_loss == pytest.approx(np.mean(y < 0))
    with pytest.raises(ConfigError):
        performance_degradation([1.0, 2.0], [1.0])


# ----------------------------------------------------------------------------- report


def test_overfitting_report_composes_the_statistics() -> None:
    m = _fixed_matrix(400, 9)
    rep = overfitting_report(m, periods_per_year=252, n_blocks=8)
    sd = m.std(axis=0, ddof=1)
    sharpes = np.where(sd > 0, m.mean(axis=0) / np.where(sd > 0, sd, 1), np.nan)
    best = int(np.nanargmax(sharpes))
    col = m[:, best]
    var = float(np.var(sharpes[np.isfinite(sharpes)], ddof=1))
    sk, ku = stats.skew(col), stats.kurtosis(col, fisher=False)
    assert rep.best_trial == best
    assert rep.n_trials == 9
    assert rep.sharpe_variance == pytest.approx(var)
    assert rep.best_sharpe_annual == pytest.approx(sharpes[best] * math.sqrt(252))
    assert rep.dsr == pytest.approx(
        deflated_sharpe_ratio(
            sharpes[best], 400, n_trials=9, sharpe_variance=var, skewness=sk, kurtosis=ku
        )
    )
    assert rep.dsr < rep.psr
    assert rep.pbo == probability_of_backtest_overfitting(m, n_blocks=8).pbo
    # More trials run than columns kept: N and the variance come from the caller.
    more = overfitting_report(m, n_trials=500, trial_sharpes=np.linspace(-0.1, 0.1, 500))
    assert more.n_trials == 500
    assert more.dsr < rep.dsr
    d = rep.as_dict()
    assert set(d) >= {"deflated_sharpe", "pbo", "probabilistic_sharpe", "n_trials"}
