"""What every task receives and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from backtest.config import RootConfig
from backtest.data import Bars
from backtest.engine import BacktestResult
from backtest.tasks._jobs import BacktestJob


@dataclass(frozen=True, slots=True)
class TaskContext:
    """Typed inputs of a task.

    Attributes:
        job: The job record (id, task, resolved config).
        settings: The typed config (``RootConfig`` with its group dataclasses).
        bars: The data as :class:`~backtest.data.Bars` (OHLCV when the source has it).
        prices: Validated wide closes (``bars.close``).
        strategy_cls: The strategy class named by ``strategy._target_``.
        strategy_params: Its parameters from the config.
        run_dir: Where the result is written.
        data_fingerprint: Hash of the prices.
        progress: Show progress bars.
        checked: What the look-ahead check computed (``strategy``: the instance it
            checked, ``output``: its output over all the bars), for the backtest to reuse.
    """

    job: BacktestJob
    settings: RootConfig
    prices: pd.DataFrame
    strategy_cls: type
    strategy_params: dict[str, Any]
    run_dir: Path
    data_fingerprint: str
    progress: bool = False
    bars: Bars | None = None
    checked: dict[str, Any] = field(default_factory=dict)

    @property
    def data(self) -> Bars:
        """The bars (OHLCV when loaded), or bars of the closes only."""
        return self.bars if self.bars is not None else Bars.from_close(self.prices)

    def check_strategy(self, strategy: Any) -> None:
        """The look-ahead check of ``strategy`` on the run's bars, unless turned off.

        Compares the target weights of :func:`~backtest.engine.target_weights` (with the
        run's engine options) on the bars cut at a few bars t with the full run's.

        Its output over all the bars is kept in :attr:`checked` for the backtest.

        Args:
            strategy: The strategy instance.

        Raises:
            StrategyContractError: the strategy looks ahead (names the first bar).
        """
        if not self.settings.engine.check_lookahead:
            return
        from backtest.engine._checks import checked_output
        from backtest.engine._params import ENGINE_KEYS, engine_params
        from backtest.engine._universe import strategy_bars

        options = {k: v for k, v in self.engine_kwargs().items() if k in ENGINE_KEYS}
        bars = strategy_bars(self.data)  # what the strategy sees: adjusted when actions given
        full = checked_output(strategy, bars, engine_params(**options))
        self.checked.update(strategy=strategy, output=full)  # computed once: the backtest reuses it

    def engine_kwargs(self) -> dict[str, Any]:
        """The engine options of the config for :func:`~backtest.engine.simulate`.

        ``fee_bps``, ``slippage_bps``, ``weights`` and ``periods_per_year`` always; every
        other option (portfolio engine, stops) only when it differs from its default, so
        paths that predate them keep their exact behaviour.
        """
        from backtest.engine import engine_options

        return engine_options(self.settings.engine, self.prices.index)


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
