"""Metrics checked against empyrical-reloaded and hand-written references."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from backtest import metrics as m
from backtest.errors import ConfigError

empyrical = pytest.importorskip("empyrical")


@pytest.fixture(scope="module")
def sp500_returns() -> pd.Series:
    """S&P 500 daily returns 1999-2018 with a leading zero (the engine's first bar)."""
    from arch.data import sp500

    close = sp500.load()["Adj Close"]
    return close.pct_change().fillna(0.0)


def _synthetic(seed: int, n: int = 750, k: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0004, 0.012, size=(n, k))
    r[0] = 0.0
    return r


def _series_cases(sp500_returns: pd.Series) -> list[pd.Series]:
    year_2008 = sp500_returns.loc["2008"].copy()
    year_2008.iloc[0] = 0.0  # the first bar of a backtest has no return
    cases = [sp500_returns, year_2008]
    cases += [pd.Series(c) for c in _synthetic(7).T]
    return cases


@pytest.mark.parametrize("ppy", [252, 12], ids=["daily", "monthly"])
def test_return_metrics_match_empyrical(sp500_returns: pd.Series, ppy: int) -> None:
    for r in _series_cases(sp500_returns):
        # empyrical's first peak is the equity after the first bar; with the leading
        # zero return that is the starting capital 1, our convention.
        assert r.iloc[0] == 0.0
        ref = {
            "sharpe": empyrical.sharpe_ratio(r, annualization=ppy),
            "sortino": empyrical.sortino_ratio(r, annualization=ppy),
            "vol": empyrical.annual_volatility(r, annualization=ppy),
            "cagr": empyrical.cagr(r, annualization=ppy),
            "mdd": -empyrical.max_drawdown(r),
            "total": empyrical.cum_returns_final(r),
            "calmar": empyrical.calmar_ratio(r, annualization=ppy),
        }
        got = {
            "sharpe": m.sharpe_ratio(r, periods_per_year=ppy),
            "sortino": m.sortino_ratio(r, periods_per_year=ppy),
            "vol": m.annual_volatility(r, periods_per_year=ppy),
            "cagr": m.cagr(r, periods_per_year=ppy),
            "mdd": m.max_drawdown(r),
            "total": m.total_return(r),
            "calmar": m.calmar_ratio(r, periods_per_year=ppy),
        }
        for key, value in ref.items():
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_sp500_known_values(sp500_returns: pd.Series) -> None:
    # 2008: the index fell about 38% over the year; its worst drawdown in 2008 was ~48%.
    r = sp500_returns.loc["2008"].copy()
    r.iloc[0] = 0.0
    assert m.total_return(r) == pytest.approx(-0.38, abs=0.02)
    assert 0.40 < m.max_drawdown(r) < 0.55
    assert m.max_drawdown(sp500_returns) == pytest.approx(0.5678, abs=0.001)  # Oct 2007 - Mar 2009


def test_max_drawdown_counts_starting_capital_as_peak() -> None:
    # A first-bar loss is a drawdown from the starting capital 1. empyrical-reloaded
    # 0.7 does the same (older empyrical took the equity after the first bar as the
    # first peak, which is why the comparison above also uses a leading zero return).
    for r in ([-0.1, 0.05], [-0.1, -0.1], [-0.3, 0.5, -0.2]):
        assert m.max_drawdown(r) == pytest.approx(-empyrical.max_drawdown(pd.Series(r)))
    assert m.max_drawdown([-0.1, 0.05]) == pytest.approx(0.1)


def _reference_max_drawdown(r: list[float]) -> float:
    equity, peak, worst = 1.0, 1.0, 0.0
    for x in r:
        equity *= 1.0 + x
        peak = max(peak, equity)
        worst = max(worst, 1.0 - equity / peak)
    return min(worst, 1.0)


@pytest.mark.parametrize(
    ("returns", "expected"),
    [
        ([0.10, -0.20, 0.05, -0.10], 1 - 1.1 * 0.8 * 1.05 * 0.9 / 1.1),
        ([0.1, 0.1, 0.1], 0.0),
        ([-1.0, 0.5], 1.0),
        ([0.5, -1.5], 1.0),  # a short that loses more than the capital: capped at 1
    ],
    ids=["up-down", "only-gains", "wiped-out", "below-zero"],
)
def test_max_drawdown_examples(returns: list[float], expected: float) -> None:
    assert m.max_drawdown(returns) == pytest.approx(expected)
    assert m.max_drawdown(returns) == pytest.approx(_reference_max_drawdown(returns))


def _matrix_with_special_columns() -> np.ndarray:
    r = _synthetic(3, n=300, k=5)
    flat = np.zeros((300, 1))
    gains = np.abs(r[:, :1]) + 1e-4  # no downside: sortino NaN
    ruined = r[:, :1].copy()
    ruined[100] = -1.0  # wealth hits 0: cagr -1
    constant = np.full((300, 1), 0.001)  # no variation: sharpe NaN
    return np.hstack([r, flat, gains, ruined, constant])


RETURN_METRICS = [
    m.total_return,
    m.cagr,
    m.annual_volatility,
    m.sharpe_ratio,
    m.sortino_ratio,
    m.max_drawdown,
    m.calmar_ratio,
]


@pytest.mark.parametrize("func", RETURN_METRICS, ids=lambda f: f.__name__)
def test_2d_equals_column_by_column(func) -> None:
    matrix = _matrix_with_special_columns()
    batched = func(matrix)
    assert isinstance(batched, np.ndarray)
    assert batched.shape == (matrix.shape[1],)
    singles = np.array([func(matrix[:, j]) for j in range(matrix.shape[1])])
    # atol: the constant column's volatility is rounding noise (~1e-17), summed in another order
    np.testing.assert_allclose(batched, singles, rtol=1e-12, atol=1e-15, equal_nan=True)
    # DataFrame input behaves as 2-D, Series as 1-D.
    np.testing.assert_array_equal(func(pd.DataFrame(matrix)), singles)
    np.testing.assert_array_equal(func(np.ascontiguousarray(matrix)), singles)
    assert isinstance(func(pd.Series(matrix[:, 0])), float)


def test_special_columns() -> None:
    matrix = _matrix_with_special_columns()
    flat, gains, ruined, constant = 5, 6, 7, 8
    assert math.isnan(m.sharpe_ratio(matrix[:, flat]))
    assert math.isnan(m.sharpe_ratio(matrix[:, constant]))
    assert math.isnan(m.sortino_ratio(matrix[:, gains]))
    assert m.cagr(matrix[:, ruined]) == -1.0
    assert m.max_drawdown(matrix[:, ruined]) == 1.0
    assert math.isnan(m.calmar_ratio(matrix[:, flat]))


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.integers(0, 60), elements=st.floats(-1.0, 5.0)))
def test_max_drawdown_is_a_fraction(r: np.ndarray) -> None:
    dd = m.max_drawdown(r)
    assert 0.0 <= dd <= 1.0
    assert dd == pytest.approx(_reference_max_drawdown(list(r)), abs=1e-12)


@given(st.integers(0, 500))
def test_flat_series(n: int) -> None:
    r = np.zeros(n)
    assert m.total_return(r) == 0.0
    assert m.max_drawdown(r) == 0.0
    assert math.isnan(m.sharpe_ratio(r))
    assert math.isnan(m.sortino_ratio(r))
    assert math.isnan(m.calmar_ratio(r))


def test_empty_series() -> None:
    r = pd.Series([], dtype=float)
    assert m.total_return(r) == 0.0
    assert m.max_drawdown(r) == 0.0
    for func in (m.cagr, m.annual_volatility, m.sharpe_ratio, m.sortino_ratio, m.calmar_ratio):
        assert math.isnan(func(r)), func.__name__
    out = m.sharpe_ratio(np.empty((0, 3)))
    assert out.shape == (3,)
    assert np.isnan(out).all()


def test_one_return() -> None:
    r = [-0.02]
    assert m.total_return(r) == pytest.approx(-0.02)
    assert m.cagr(r, periods_per_year=252) == pytest.approx(0.98**252 - 1)
    assert m.max_drawdown(r) == pytest.approx(0.02)
    assert m.calmar_ratio(r) == pytest.approx((0.98**252 - 1) / 0.02)
    for func in (m.annual_volatility, m.sharpe_ratio, m.sortino_ratio):
        assert math.isnan(func(r)), func.__name__


def test_three_dimensional_returns_rejected() -> None:
    with pytest.raises(ValueError, match="1-D or 2-D"):
        m.sharpe_ratio(np.zeros((2, 2, 2)))


# --- trades and positions ------------------------------------------------------------


def test_trade_metrics() -> None:
    trades = pd.DataFrame({"asset": list("ABCDE"), "return": [0.02, -0.01, 0.0, 0.05, 0.003]})
    assert m.n_trades(trades) == 5
    assert m.win_rate(trades) == pytest.approx(3 / 5)
    empty = trades.iloc[:0]
    assert m.n_trades(empty) == 0
    assert math.isnan(m.win_rate(empty))


def _reference_exposure_turnover(
    pos: pd.DataFrame, w: list[float], ppy: int
) -> tuple[float, float]:
    n_bars, n_assets = pos.shape
    exp_sum = trn_sum = 0.0
    prev = [0.0] * n_assets
    for t in range(n_bars):
        row = list(pos.iloc[t])
        exp_sum += sum(w[a] * abs(row[a]) for a in range(n_assets))
        trn_sum += sum(w[a] * abs(row[a] - prev[a]) for a in range(n_assets))
        prev = row
    return exp_sum / n_bars, trn_sum / n_bars * ppy


@pytest.fixture
def positions() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    values = rng.choice([-1.0, 0.0, 0.5, 1.0], size=(40, 3))
    return pd.DataFrame(values, columns=["AAA", "BBB", "CCC"])


@pytest.mark.parametrize(
    "weights",
    [None, {"AAA": 0.5, "BBB": 0.3, "CCC": 0.2}, [0.2, 0.2, 0.6]],
    ids=["equal", "mapping", "sequence"],
)
def test_exposure_and_turnover_match_reference(positions: pd.DataFrame, weights) -> None:
    if weights is None:
        w = [1 / 3] * 3
    elif isinstance(weights, dict):
        w = [weights[c] for c in positions.columns]
    else:
        w = list(weights)
    ref_exp, ref_turn = _reference_exposure_turnover(positions, w, 52)
    assert m.exposure(positions, weights) == pytest.approx(ref_exp)
    assert m.turnover(positions, weights, periods_per_year=52) == pytest.approx(ref_turn)


def test_exposure_turnover_3d_equals_per_trial(positions: pd.DataFrame) -> None:
    stack = np.stack([positions.to_numpy(), -positions.to_numpy(), np.zeros(positions.shape)], 2)
    np.testing.assert_allclose(
        m.exposure(stack), [m.exposure(stack[:, :, j]) for j in range(3)], rtol=1e-12
    )
    np.testing.assert_allclose(
        m.turnover(stack), [m.turnover(stack[:, :, j]) for j in range(3)], rtol=1e-12
    )
    assert m.exposure(stack)[2] == 0.0


def test_turnover_buy_and_hold() -> None:
    # Buying once and holding for a year trades the capital once.
    pos = pd.DataFrame({"A": np.ones(252)})
    assert m.turnover(pos) == pytest.approx(1.0)
    assert m.exposure(pos) == 1.0


def test_weights_must_match_assets(positions: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="CCC") as info:
        m.exposure(positions, {"AAA": 0.5, "BBB": 0.5})
    assert info.value.key == "weights"
    with pytest.raises(ConfigError, match="expected 3 weights"):
        m.turnover(positions, [0.5, 0.5])


def test_compute_metrics(positions: pd.DataFrame) -> None:
    r = pd.Series(_synthetic(5, n=40, k=1)[:, 0])
    trades = pd.DataFrame({"return": [0.01, -0.02, 0.03]})
    out = m.compute_metrics(r, positions, trades, periods_per_year=12)
    assert list(out) == [
        "total_return",
        "cagr",
        "annual_volatility",
        "sharpe_ratio",
        "sortino_ratio",
        "max_drawdown",
        "calmar_ratio",
        "n_trades",
        "win_rate",
        "exposure",
        "turnover",
    ]
    assert all(isinstance(v, float) for v in out.values())
    assert out["sharpe_ratio"] == pytest.approx(empyrical.sharpe_ratio(r, annualization=12))
    assert out["cagr"] == pytest.approx(empyrical.cagr(r, annualization=12))
    assert out["n_trades"] == 3.0
    assert out["win_rate"] == pytest.approx(2 / 3)
    assert out["turnover"] == pytest.approx(m.turnover(positions, periods_per_year=12))
    with pytest.raises(ValueError, match="one backtest"):
        m.compute_metrics(np.zeros((3, 2)), positions, trades)


@pytest.mark.parametrize("shape", [(300, 9), (40, 2000), (0, 3), (1, 4)], ids=str)
def test_return_metrics_equals_each_function(shape) -> None:
    rng = np.random.default_rng(1)
    matrix = rng.normal(0.0003, 0.01, size=shape)
    if shape == (300, 9):
        matrix = _matrix_with_special_columns()
    batch = m.return_metrics(matrix, periods_per_year=52)
    assert list(batch) == list(m.RETURN_METRIC_NAMES)
    for func in RETURN_METRICS:
        kwargs = {} if func in (m.total_return, m.max_drawdown) else {"periods_per_year": 52}
        np.testing.assert_array_equal(batch[func.__name__], func(matrix, **kwargs))
    one = m.return_metrics(matrix[:, 0], periods_per_year=52) if shape[1] else {}
    for name, value in one.items():
        assert isinstance(value, float)
        np.testing.assert_array_equal(value, batch[name][0])
