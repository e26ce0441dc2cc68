"""What every task receives and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from backtest.config import RootConfig
from backtest.engine import BacktestResult
from backtest.jobs import BacktestJob


@dataclass(frozen=True, slots=True)
class TaskContext:
    """Typed inputs of a task.

    Attributes:
        job: The job record (id, task, resolved config).
        settings: The typed config (``RootConfig`` with its group dataclasses).
        prices: Validated wide closes.
        strategy_cls: The strategy class named by ``strategy._target_``.
        strategy_params: Its parameters from the config.
        run_dir: Where the result is written.
        data_fingerprint: Hash of the prices.
        progress: Show progress bars.
    """

    job: BacktestJob
    settings: RootConfig
    prices: pd.DataFrame
    strategy_cls: type
    strategy_params: dict[str, Any]
    run_dir: Path
    data_fingerprint: str
    progress: bool = False

    def check_strategy(self, strategy: Any, full: Any = None) -> None:
        """The look-ahead check of ``strategy`` on the run's prices, unless turned off.

        Args:
            strategy: The strategy instance.
            full: Its positions over all the prices (NaN as 0), when already computed.

        Raises:
            StrategyContractError: the strategy looks ahead (names the first bar).
        """
        if not self.settings.engine.check_lookahead:
            return
        from backtest.strategies._checks import check_lookahead, strategy_name
        from backtest.strategies._params import strategy_params

        check_lookahead(
            strategy.positions,
            self.prices,
            name=strategy_name(strategy),
            params=strategy_params(strategy),
            full=full,
        )

    def engine_kwargs(self) -> dict[str, Any]:
        """``fee_bps``, ``slippage_bps``, ``weights`` and ``periods_per_year`` for the engine."""
        e = self.settings.engine
        return {
            "fee_bps": e.fee_bps,
            "slippage_bps": e.slippage_bps,
            "weights": dict(e.weights) or None,
            "periods_per_year": e.periods_per_year,
        }


@dataclass(frozen=True, slots=True)
class TaskOutput:
    """What a task produced, before it is written.

    Attributes:
        backtest: The headline backtest (best parameters, stitched out-of-sample, ...).
        record: Extra ``result.json`` sections (``search``, ``walkforward``,
            ``overfitting``, ``montecarlo``), JSON-able.
        tables: Extra Parquet tables (``trials``, ``folds``, ``montecarlo_paths``, ...).
        figures: PNG files already written under the run's ``figures/``.
        summary: Extra ``(label, value)`` rows for the printed summary table.
        objective: The number a sweeper optimises (the configured metric).
        children: Nested runs for tracking: dicts with ``name``, ``params``, ``metrics``.
    """

    backtest: BacktestResult
    record: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    summary: list[tuple[str, str]] = field(default_factory=list)
    objective: float | None = None
    children: list[dict[str, Any]] = field(default_factory=list)
