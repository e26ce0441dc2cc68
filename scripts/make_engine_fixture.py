"""Write tests/fixtures/engine_v1_metrics.json: the engine's metrics before engine v2.

For every built-in experiment (``conf/experiment/*.yaml``) and every built-in strategy
(``conf/strategy/*.yaml``), on the synthetic data of the default config and on the
shipped sample data, the single backtest of the configured parameters with the
configured engine (fees, slippage, weights, periods_per_year), and the batched path
over a few parameter sets. ``tests/test_engine_v1.py`` recomputes them with the current
engine and compares: with the default engine options nothing may change.

Run: python scripts/make_engine_fixture.py   (only to regenerate it on purpose)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
FIXTURE = ROOT / "tests" / "fixtures" / "engine_v1_metrics.json"

# A few parameter sets per strategy for the batched path (valid for each class).
BATCH_SETS: dict[str, list[dict[str, Any]]] = {
    "sma_cross": [{"fast": 5, "slow": 20}, {"fast": 10, "slow": 50}, {"fast": 20, "slow": 100}],
    "momentum": [{"lookback": 21, "skip": 0}, {"lookback": 126, "skip": 5}],
    "mean_reversion": [{"lookback": 20, "entry_z": 2.0, "exit_z": 0.5}],
    "breakout": [{"lookback": 20}, {"lookback": 55}],
    "buy_and_hold": [{}],
}


def cases() -> list[tuple[str, list[str]]]:
    """(case name, Hydra overrides) of every experiment and strategy."""
    out = []
    for p in sorted((CONF / "experiment").glob("*.yaml")):
        out.append((f"experiment={p.stem}", [f"+experiment={p.stem}"]))
    for p in sorted((CONF / "strategy").glob("*.yaml")):
        out.append((f"strategy={p.stem}", [f"strategy={p.stem}"]))
    return out


def compute(overrides: list[str], data: str) -> dict[str, Any]:
    """Metrics of the configured backtest (and the batched sets) for one case."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from backtest.config._hydra import register_configs
    from backtest.data import load_prices
    from backtest.engine import simulate, simulate_batch
    from backtest.strategies._loader import build_strategy
    from backtest.tasks import typed_settings

    register_configs()
    GlobalHydra.instance().clear()
    extra = ["data=sample"] if data == "sample" else []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*overrides, *extra])
    GlobalHydra.instance().clear()
    from omegaconf import OmegaConf

    settings = typed_settings(OmegaConf.to_container(cfg, resolve=True))
    cls, params, strategy = build_strategy(settings.strategy, settings.allowed_modules)
    prices = load_prices(settings.data)
    e = settings.engine
    kwargs = {
        "fee_bps": e.fee_bps,
        "slippage_bps": e.slippage_bps,
        "weights": dict(e.weights) or None,
        "periods_per_year": e.periods_per_year,
    }
    single = simulate(prices, strategy, **kwargs)
    name = cls.__name__
    key = {
        "SmaCross": "sma_cross",
        "Momentum": "momentum",
        "MeanReversion": "mean_reversion",
        "Breakout": "breakout",
        "BuyAndHold": "buy_and_hold",
    }[name]
    sets = [{**params, **s} for s in BATCH_SETS[key]]
    batch = simulate_batch(prices, cls, sets, **kwargs).metrics
    return {
        "params": {k: v for k, v in params.items()},
        "engine": kwargs,
        "metrics": clean(single.metrics),
        "n_trades_table": len(single.trades),
        "batch_sets": sets,
        "batch_metrics": [
            clean(row) for row in batch.drop(columns=list(sets[0])).to_dict("records")
        ],
    }


def clean(metrics: dict[str, Any]) -> dict[str, float | None]:
    """JSON-able metrics: NaN -> None."""
    out: dict[str, float | None] = {}
    for k, v in metrics.items():
        f = float(v)
        out[k] = None if math.isnan(f) else f
    return out


def main() -> None:
    """Compute every case and write the fixture."""
    result: dict[str, Any] = {}
    for name, overrides in cases():
        for data in ("synthetic", "sample"):
            result[f"{name}/{data}"] = {
                "overrides": overrides,
                "data": data,
                **compute(overrides, data),
            }
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(result, indent=1, sort_keys=True, default=str) + "\n")
    print(f"wrote {FIXTURE} ({len(result)} cases)")


if __name__ == "__main__":
    main()
