"""Methods that re-run a strategy: synthetic prices, parameter jitter, random entries.

Each path draws from its own generator, ``np.random.default_rng(SeedSequence(seed,
spawn_key=(path,)))`` (the ``path``-th child of the root seed), so a path's result
never depends on the chunk or worker that computed it. Portfolio returns follow the
engine's convention exactly (:func:`backtest.engine.asset_returns`, then the same
weighted sum as :func:`backtest.engine.simulate`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest import engine as eng
from backtest.config import EngineConfig, MonteCarloConfig, MonteCarloMethod
from backtest.errors import BacktestError, ConfigError, DataValidationError
from backtest.montecarlo import _kernels as k
from backtest.montecarlo._chunks import (
    ChunkResult,
    allocate,
    chunk_bounds,
    collect,
    fan_size,
    finish,
    observed_scores,
    run_chunks,
)
from backtest.montecarlo._entries import displacement_range, return_order, trade_segments
from backtest.montecarlo._inputs import bar_sample
from backtest.montecarlo._jitter import (
    check_jitter,
    draw_params,
    engine_stop_params,
    strategy_params,
)

if TYPE_CHECKING:
    from backtest.montecarlo._report import MonteCarloReport
    from backtest.montecarlo._simulator import MonteCarloSimulator


@dataclass(frozen=True, slots=True)
class StrategyTask:
    """Everything a worker needs to simulate a chunk of paths (pickled to processes)."""

    method: MonteCarloMethod
    prices: pd.DataFrame
    strategy: Any
    engine: EngineConfig
    seed: int
    horizon: int
    n_fan: int
    jitter: dict[str, Any] = field(default_factory=dict)
    base_params: dict[str, Any] = field(default_factory=dict)
    drift: NDArray[np.float64] | None = None
    scale: NDArray[np.float64] | None = None
    observed_positions: NDArray[np.float64] | None = None
    displacement: tuple[int, int] = (1, 1)
    block: int = 20
    bars: Any = None  # Bars with opens/highs/lows, for exits and next_open fills


def path_rng(seed: int, path: int) -> np.random.Generator:
    """The generator of path number ``path``: the root seed's ``path``-th child."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(path,)))


def _cost_rates(engine: EngineConfig, columns: pd.Index) -> NDArray[np.float64]:
    """The cost rate of each asset: ``fee_bps`` and ``slippage_bps`` may be per asset."""
    from backtest.engine._costs import asset_rates, is_per_asset

    if is_per_asset(engine.fee_bps) or is_per_asset(engine.slippage_bps):
        fee, slip = asset_rates(engine.fee_bps, engine.slippage_bps, [str(c) for c in columns])
        return fee + slip
    return np.full(len(columns), eng.cost_rate(engine.fee_bps, engine.slippage_bps))


def portfolio_returns(
    close: NDArray[np.float64],
    positions: NDArray[np.float64],
    engine: EngineConfig,
    columns: pd.Index,
) -> NDArray[np.float64]:
    """Portfolio return per bar after costs, as :func:`backtest.engine.simulate` computes it."""
    cost = _cost_rates(engine, columns)
    w = eng.resolve_weights(columns, engine.weights or None)
    per_asset = eng.asset_returns(close, positions, cost)
    combined = np.zeros(close.shape[0])
    for j in range(per_asset.shape[1]):  # the engine's summation order
        combined += w[j] * per_asset[:, j]
    return combined


def reordered_returns(
    close: NDArray[np.float64],
    positions: NDArray[np.float64],
    orders: NDArray[np.int64],
    engine: EngineConfig,
    columns: pd.Index,
) -> NDArray[np.float64]:
    """Portfolio returns of fixed positions on reordered bar returns, one column per order.

    ``orders[:, c]`` reorders the close-to-close returns of bars 1.. (the first bar has
    none) on path ``c``, the same for every asset; the closes are rebuilt from those
    returns and passed to :func:`backtest.engine.asset_returns`, so costs and the
    summation order are the engine's.
    """
    cost = _cost_rates(engine, columns)
    w = eng.resolve_weights(columns, engine.weights or None)
    n, count = orders.shape[0] + 1, orders.shape[1]
    growth = np.ones((n, count, close.shape[1]), dtype=np.float64)
    growth[1:] += eng.bar_returns(close)[1:][orders]  # (bars, paths, assets)
    closes = np.cumprod(growth, axis=0, dtype=np.float64)
    combined = np.zeros((n, count))
    for j in range(positions.shape[1]):
        held = np.broadcast_to(positions[:, j : j + 1], (n, count))
        combined += w[j] * eng.asset_returns(closes[:, :, j], held, cost[j])
    return combined


def strategy_positions(strategy: Any, prices: pd.DataFrame) -> NDArray[np.float64]:
    """The strategy's target positions as an array (NaN = flat), checked to lie in [-1, 1]."""
    raw = strategy.positions(prices)
    if not isinstance(raw, pd.DataFrame) or raw.shape != prices.shape:
        raise BacktestError(
            f"strategy returned {type(raw).__name__} of shape "
            f"{getattr(raw, 'shape', None)}; expected {prices.shape}"
        )
    pos = np.nan_to_num(raw.to_numpy(dtype=np.float64, na_value=np.nan), nan=0.0)
    if (np.abs(pos) > 1.0 + 1e-12).any():
        raise BacktestError("strategy positions outside [-1, 1] on a simulated path")
    return pos


# ---------------------------------------------------------------- synthetic prices


def fit_gbm(prices: pd.DataFrame) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean and a matrix square root of the covariance of log returns per bar."""
    lr = np.diff(np.log(prices.to_numpy(dtype=np.float64)), axis=0)
    drift = lr.mean(axis=0)
    cov = np.atleast_2d(np.cov(lr, rowvar=False, ddof=1))
    eigval, eigvec = np.linalg.eigh(cov)
    return drift, eigvec * np.sqrt(np.clip(eigval, 0.0, None))


def synthetic_path(task: StrategyTask, rng: np.random.Generator) -> pd.DataFrame:
    """Correlated geometric Brownian motion from the first observed closes."""
    assert task.drift is not None and task.scale is not None
    n_assets = task.drift.size
    z = rng.standard_normal((task.horizon - 1, n_assets))
    log_growth = np.zeros((task.horizon, n_assets))
    np.cumsum(task.drift + z @ task.scale.T, axis=0, out=log_growth[1:])
    close = task.prices.iloc[0].to_numpy(dtype=np.float64) * np.exp(log_growth)
    if task.horizon == len(task.prices):
        index = task.prices.index
    else:
        index = pd.bdate_range(
            task.prices.index[0], periods=task.horizon, name=task.prices.index.name
        )
    return pd.DataFrame(close, index=index, columns=task.prices.columns)


# ---------------------------------------------------------------- chunks and the run


def strategy_chunk(task: StrategyTask, start: int, stop: int) -> ChunkResult:
    """Simulate and score paths ``start .. stop - 1`` of a strategy method."""
    count = stop - start
    returns = np.empty((task.horizon, count))
    extra: dict[str, NDArray[Any]] = {}
    prices, engine, method = task.prices, task.engine, task.method
    if method is MonteCarloMethod.parameter_jitter:
        drawn = [
            draw_params(
                task.strategy, task.base_params, task.jitter, path_rng(task.seed, p), engine
            )
            for p in range(start, stop)
        ]
        frame = pd.DataFrame(drawn)
        # every path is the engine's backtest of its set: every engine option, the drawn
        # stop levels as engine.* columns, the strategy's own exits read from each set's
        # instance (simulate_batch; one positions call per set without a fast path)
        batch = eng.simulate_batch(
            task.bars if task.bars is not None else prices,
            type(task.strategy),
            frame,
            keep_returns=True,
            check_lookahead=False,  # checked once before the paths (run_strategy_method)
            **eng.engine_options(engine, prices.index),
        )
        assert batch.returns is not None
        returns[:] = batch.returns
        extra = {name: frame[name].to_numpy() for name in task.jitter}
    elif method is MonteCarloMethod.synthetic_prices:
        for j, p in enumerate(range(start, stop)):
            path = synthetic_path(task, path_rng(task.seed, p))
            pos = strategy_positions(task.strategy, path)
            returns[:, j] = portfolio_returns(path.to_numpy(), pos, engine, prices.columns)
    else:  # random_entries
        assert task.observed_positions is not None
        lo, hi = task.displacement
        orders = np.column_stack(
            [
                return_order(task.horizon - 1, task.block, lo, hi, path_rng(task.seed, p))
                for p in range(start, stop)
            ]
        )
        returns[:] = reordered_returns(
            prices.to_numpy(dtype=np.float64),
            task.observed_positions,
            orders,
            engine,
            prices.columns,
        )
    metrics = np.empty((count, len(k.METRICS)))
    fan = np.empty((max(0, min(stop, task.n_fan) - start), task.horizon + 1), np.float32)
    k.score_columns(returns, float(engine.periods_per_year), metrics, fan)
    return ChunkResult(start, metrics, fan, extra)


def _needs(method: MonteCarloMethod, what: str) -> ConfigError:
    return ConfigError(
        f"montecarlo.method={method.value} re-runs the strategy and needs {what}",
        key="montecarlo.method",
    )


def check_full_panel(method: MonteCarloMethod | str, prices: pd.DataFrame) -> None:
    """Refuse ``synthetic_prices`` and ``random_entries`` on a panel with listings.

    Both simulate every asset on every bar (a GBM fitted to whole columns, entries at any
    bar), which a changing universe (NaN outside listings, issue 25) does not have.

    Raises:
        ConfigError: naming ``montecarlo.method`` and the methods that work.
    """
    value = getattr(method, "value", method)
    if value not in ("synthetic_prices", "random_entries"):
        return
    if prices.isna().to_numpy().any():
        raise ConfigError(
            f"montecarlo.method={value} simulates every asset on every bar, and the data has "
            "assets that list late or delist early (NaN outside their listings); use a "
            "bootstrap of the returns (montecarlo=stationary_bootstrap, iid_bootstrap, "
            "trade_bootstrap, ...) or montecarlo=parameter_jitter",
            key="montecarlo.method",
        )


def run_strategy_method(
    sim: MonteCarloSimulator,
    cfg: MonteCarloConfig,
    seed: int,
    source: Any,
    prices: pd.DataFrame | None,
    strategy: Any,
    engine: EngineConfig,
) -> MonteCarloReport:
    """Run ``synthetic_prices``, ``parameter_jitter`` or ``random_entries``."""
    from backtest.data import Bars, validate_prices
    from backtest.data._check import check_bars

    method = cfg.method
    if prices is None:
        raise _needs(method, "prices=: the closes the strategy trades")
    bars = None
    if isinstance(prices, Bars):
        bars, prices = prices, prices.close
    check_bars(bars if bars is not None else prices)  # the command line's named errors
    prices = validate_prices(prices)
    check_full_panel(method, prices)
    if getattr(engine, "periods_per_year", 252) is None:  # inferred from the data, once
        ppy = eng.engine_options(engine, prices.index)["periods_per_year"]
        engine = dataclasses.replace(engine, periods_per_year=ppy)
    if strategy is None and method is not MonteCarloMethod.random_entries:
        raise _needs(method, "strategy=: the strategy instance to re-run")
    options = eng.engine_options(engine, prices.index)
    if strategy is not None and sim.check_lookahead:  # once, before any path re-runs it
        from backtest.engine._checks import checked_output
        from backtest.engine._params import ENGINE_KEYS, engine_params

        checked_output(
            strategy,
            bars if bars is not None else Bars.from_close(prices),
            engine_params(**{k: v for k, v in options.items() if k in ENGINE_KEYS}),
        )
    if source is None:
        if strategy is None:
            raise _needs(method, "the observed BacktestResult (or strategy= to compute it)")
        source = eng.simulate(
            bars if bars is not None else prices, strategy, check_lookahead=False, **options
        )
    observed = bar_sample(source, method.value, engine.periods_per_year).returns
    positions = getattr(source, "positions", None)
    if method is MonteCarloMethod.random_entries:
        if not isinstance(positions, pd.DataFrame) or positions.empty:
            raise _needs(method, "the observed positions: pass the BacktestResult as source")
        if len(positions) < len(prices) and positions.index.isin(prices.index).all():
            prices = prices.loc[positions.index]  # e.g. walk-forward's out-of-sample bars
        if positions.shape != prices.shape:
            raise DataValidationError(
                f"the result's positions {positions.shape} do not match the prices {prices.shape}",
                column="positions",
            )
    n_bars = len(prices)
    horizon = cfg.horizon_bars or n_bars
    if method is not MonteCarloMethod.synthetic_prices and horizon != n_bars:
        raise ConfigError(
            f"montecarlo.horizon_bars={horizon}: {method.value} re-runs the "
            f"strategy on the {n_bars} observed bars; leave it unset",
            key="montecarlo.horizon_bars",
        )
    task_kw: dict[str, Any] = {}
    details: dict[str, Any] = {"n_bars": n_bars, "assets": [str(c) for c in prices.columns]}
    if method is MonteCarloMethod.synthetic_prices:
        drift, scale = fit_gbm(prices)
        task_kw.update(drift=drift, scale=scale)
        vol = np.sqrt(np.sum(scale**2, axis=1))
        details["drift_per_bar"] = dict(zip(details["assets"], drift.tolist(), strict=True))
        details["volatility_per_bar"] = dict(zip(details["assets"], vol.tolist(), strict=True))
    elif method is MonteCarloMethod.parameter_jitter:
        params = {**strategy_params(strategy), **engine_stop_params(engine, strategy)}
        jitter = check_jitter(cfg.jitter, params, strategy)
        task_kw.update(jitter=jitter, base_params=params, bars=bars)
        details.update(base_params=params, jitter=jitter)
    else:
        assert isinstance(positions, pd.DataFrame)
        observed_pos = np.nan_to_num(positions.to_numpy(dtype=np.float64), nan=0.0)
        n_trades = sum(len(s) for s in trade_segments(observed_pos))
        if n_trades == 0:
            raise ConfigError(
                "random_entries needs at least one trade in the observed positions",
                key="montecarlo.method",
            )
        declared = getattr(strategy, "warmup_bars", None)
        lo, hi = displacement_range(observed_pos, None if declared is None else int(declared))
        block = max(1, round(cfg.block_size))
        task_kw.update(observed_positions=observed_pos, displacement=(lo, hi), block=block)
        details.update(
            n_trades=n_trades,
            exposure=float(np.abs(observed_pos).sum() / observed_pos.size),
            null="observed positions; bar returns in blocks, reordered",
            block_bars=block,
            min_displacement_bars=lo,
            max_displacement_bars=hi,
        )
    n_fan = fan_size(cfg.n_paths, horizon, sim.fan_paths)
    task = StrategyTask(
        method=method,
        prices=prices,
        strategy=strategy,
        engine=engine,
        seed=seed,
        horizon=horizon,
        n_fan=n_fan,
        **task_kw,
    )
    chunks = run_chunks(
        strategy_chunk,
        (task,),
        chunk_bounds(cfg.n_paths, cfg.chunk_size),
        n_jobs=cfg.n_jobs,
        processes=True,
        progress=sim.progress,
        desc=f"Monte Carlo ({method.value})",
    )
    metrics, fan = allocate(cfg.n_paths, horizon, n_fan)
    extra = collect(chunks, metrics, fan)
    obs, obs_equity = observed_scores(observed, float(engine.periods_per_year))
    return finish(
        cfg,
        seed,
        "bar",
        float(engine.periods_per_year),
        metrics,
        extra,
        fan,
        obs,
        obs_equity,
        details,
    )
