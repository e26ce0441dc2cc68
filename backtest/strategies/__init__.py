"""Built-in strategies and the :class:`Strategy` contract.

Choose one in config with ``strategy=sma_cross`` (or ``_target_:
backtest.strategies.SmaCross``). A user strategy is any class with a
``positions(prices) -> DataFrame`` method in a module whose prefix is listed in
``allowed_modules``; its parameters come from ``param_names``, its dataclass fields or
its ``__init__`` signature (:func:`param_names`), checked before a run
(:func:`validate_params`). Every run checks it for look-ahead and, when it has a
``batch_positions`` of its own (:func:`has_fast_path`), that the fast path agrees with
``positions`` (:func:`backtest.check_strategy`).
"""

from __future__ import annotations

from backtest.strategies._base import BatchStrategy, Strategy
from backtest.strategies._breakout import Breakout
from backtest.strategies._buy_and_hold import BuyAndHold
from backtest.strategies._checks import has_fast_path
from backtest.strategies._mean_reversion import MeanReversion
from backtest.strategies._momentum import Momentum
from backtest.strategies._params import param_names, validate_params
from backtest.strategies._sma_cross import SmaCross
from backtest.strategies._xs_momentum import CrossSectionalMomentum

__all__ = [
    "BatchStrategy",
    "Breakout",
    "BuyAndHold",
    "CrossSectionalMomentum",
    "MeanReversion",
    "Momentum",
    "SmaCross",
    "Strategy",
    "has_fast_path",
    "param_names",
    "validate_params",
]
