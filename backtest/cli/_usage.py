"""The text of ``backtest --help``: the subcommands and the config groups of ``conf/``."""

from __future__ import annotations

from pathlib import Path

from backtest.config import CONF_DIR

# name -> (module, what it does); every module has ``main(argv) -> int``.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("backtest.cli._run", "run an experiment: backtest run +experiment=sma_cross"),
    "compare": ("backtest.tracking._compare", "compare tracked runs of an experiment, best first"),
    "sync": ("backtest.tracking._sync", "log results not yet in MLflow, each exactly once"),
    "worker": ("backtest.queue._cli", "run a queue worker (REDIS_URL=redis://...)"),
    "search-distributed": (
        "backtest.cli._distributed",
        "an Optuna search shared by queue workers",
    ),
    "report": ("backtest.report", "write the self-contained HTML report of a run"),
}


def config_groups() -> list[tuple[str, list[str]]]:
    """The config groups of ``conf/`` and their options (the internal ``base_*`` hidden)."""
    root = Path(CONF_DIR)
    groups = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "hydra"):
        options = sorted(f.stem for f in folder.glob("*.yaml") if not f.stem.startswith("base_"))
        groups.append((folder.name, options))
    return groups


def usage() -> str:
    """The text of ``backtest --help``: subcommands, config groups and examples."""
    width = max(map(len, SUBCOMMANDS))
    lines = [
        "usage: backtest [SUBCOMMAND] [options] [overrides]",
        "",
        "Declarative backtests: Hydra configs in, results and MLflow runs out.",
        "Without a subcommand, `backtest ARGS` is `backtest run ARGS`.",
        "",
        "subcommands:",
        *(f"  {name:<{width}}  {about}" for name, (_, about) in SUBCOMMANDS.items()),
        "",
        "config groups (choose with group=option; add with +group=option):",
        *(f"  {group:<{width}}  {', '.join(options)}" for group, options in config_groups()),
        "",
        "options:",
        "  -h, --help      this help; `backtest SUBCOMMAND --help` for a subcommand's",
        "  -m, --multirun  run a sweep: backtest -m strategy.fast=5,10 strategy.slow=50,100",
        "  --cfg job       print the composed config instead of running",
        "  -v, --verbose   show the full traceback of an error",
        "",
        "examples:",
        "  backtest +experiment=wf_momentum",
        "  backtest +experiment=sma_cross strategy.fast=5 engine.fee_bps=10",
        "  backtest compare wf_momentum --metric sharpe_ratio",
    ]
    return "\n".join(lines)
