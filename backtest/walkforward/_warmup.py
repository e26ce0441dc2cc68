"""A strategy's warm-up: the longest lookback of the parameter sets a search may try.

CPCV embargoes the train bars after each test group whose indicators still read that
group's closes (see :func:`~backtest.walkforward.cpcv_splits`); how many depends on the
warm-up ``W``, the bars before the strategy's first possible position. It is declared
when the strategy has a ``warmup_bars`` attribute (the built-in strategies do: a moving
average needs ``slow - 1`` bars, momentum ``lookback + skip``), else measured: the bar
of the first non-zero return of any parameter set over the whole history (never below
the true warm-up, since a strategy earns nothing before its first position).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from backtest.walkforward._evaluator import ReturnsEvaluator


def declared_warmup(evaluator: Any, frame: pd.DataFrame) -> int | None:
    """The largest declared ``warmup_bars`` over the parameter sets, or None if undeclared."""
    strategy_cls = getattr(evaluator, "strategy_cls", None)
    if strategy_cls is None or not hasattr(strategy_cls, "warmup_bars"):
        return None
    fixed = dict(getattr(evaluator, "fixed_params", None) or {})
    values = [int(strategy_cls(**{**fixed, **row}).warmup_bars) for row in frame.to_dict("records")]
    return max(values) if values else None


def measured_warmup(evaluator: ReturnsEvaluator, frame: pd.DataFrame) -> int:
    """The first bar with a non-zero return, latest over the parameter sets (0 if none trade)."""
    returns = np.asarray(evaluator.returns(frame, len(evaluator.index)), dtype=np.float64)
    active = returns != 0.0
    trades = active.any(axis=0)
    if not trades.any():
        return 0
    return int(np.argmax(active[:, trades], axis=0).max())


def strategy_warmup(evaluator: ReturnsEvaluator, frame: pd.DataFrame) -> int:
    """Declared warm-up when the strategy states one, else the measured one."""
    declared = declared_warmup(evaluator, frame)
    return declared if declared is not None else measured_warmup(evaluator, frame)
