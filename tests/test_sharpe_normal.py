"""The standard normal CDF and quantile of the Sharpe statistics against ``scipy.special``.

``backtest.overfitting._sharpe`` computes them with the standard library (``math.erfc``,
``statistics.NormalDist``) rather than importing SciPy's special functions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import ndtr as scipy_ndtr
from scipy.special import ndtri as scipy_ndtri

from backtest.overfitting._sharpe import ndtr, ndtri


def test_cdf_equals_scipy_across_both_tails() -> None:
    xs = np.concatenate([np.linspace(-37.0, 38.0, 30001), [0.0, -0.0, 1e-300, -1e-300]])
    ours = np.array([ndtr(float(x)) for x in xs])
    np.testing.assert_allclose(ours, scipy_ndtr(xs), rtol=1e-12, atol=1e-300)
    assert ndtr(math.inf) == 1.0 and ndtr(-math.inf) == 0.0 and math.isnan(ndtr(math.nan))


def test_quantile_equals_scipy_from_the_far_tails_to_the_middle() -> None:
    ps = np.concatenate(
        [
            np.logspace(-300, -1, 3000),
            1.0 - np.logspace(-16, -1, 2000),
            np.linspace(0.001, 0.999, 5001),
            [0.5, 0.95, 0.975],
        ]
    )
    ours = np.array([ndtri(float(p)) for p in ps])
    np.testing.assert_allclose(ours, scipy_ndtri(ps), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("p", [0.0, 1.0, -0.1, 1.1, math.nan, math.inf, -math.inf])
def test_quantile_edges_are_scipys(p: float) -> None:
    expected = float(scipy_ndtri(p))
    got = ndtri(p)
    assert got == expected or (math.isnan(got) and math.isnan(expected))
