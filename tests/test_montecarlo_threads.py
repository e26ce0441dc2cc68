"""Monte Carlo uses every core by default, with the same report as one worker."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pandas as pd

from backtest.config import MonteCarloConfig
from backtest.montecarlo import MonteCarloSimulator
from backtest.montecarlo._chunks import _n_workers


def test_default_is_one_worker_per_core() -> None:
    assert MonteCarloConfig().n_jobs == -1
    assert _n_workers(MonteCarloConfig().n_jobs, 1000) == (os.cpu_count() or 1)


def test_default_report_equals_the_single_worker_report() -> None:
    rng = np.random.default_rng(3)
    returns = pd.Series(
        rng.normal(3e-4, 0.01, 1500), index=pd.bdate_range("2000-01-03", periods=1500)
    )
    reports = [
        MonteCarloSimulator(MonteCarloConfig(n_paths=1200, chunk_size=100, seed=5, **kw)).run(
            returns
        )
        for kw in ({}, {"n_jobs": 1})
    ]
    compared = 0
    for field in dataclasses.fields(reports[0]):
        a, b = getattr(reports[0], field.name), getattr(reports[1], field.name)
        if isinstance(a, pd.DataFrame | pd.Series):
            pd.testing.assert_frame_equal(pd.DataFrame(a), pd.DataFrame(b))
            compared += 1
        elif isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
            compared += 1
    assert compared >= 1
