"""What the look-ahead check adds to a single backtest, as the ``backtest`` task runs it.

For each case a job is validated once with :func:`backtest.tasks.prepare` (config
composed as from the command line: synthetic data, tracking, report and figures off),
then timed, best of several repeats taken in turns:

* backtest: the task's backtest (``backtest.tasks._backtest.run``) with
  ``engine.check_lookahead=false``: the strategy's output, the engine, the metrics;
* + check: what ``prepare`` adds when the check is on (``TaskContext.check_strategy``:
  the strategy's output over all the bars, then its target weights on the bars cut
  after a few bars t) and the same backtest, which reuses that output;
* whole run: the job as a user's run does it, check off: ``prepare`` (config, data)
  and ``execute_job`` writing the result files into a new folder.

Added: ``+ check`` minus ``backtest``, as a share of the backtest and of the whole run.
Strategies: the built-in ``SmaCross`` and ``MeanReversion`` and the example
``RsiReversion`` (examples/rsi), 4 assets, 2,520 and 25,200 bars, 10 bp costs.

Run: python benchmarks/lookahead.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "rsi"))

from benchmarks._measure import best_in_turns  # noqa: E402

CASES = [(2520, 4), (25200, 4)]
STRATEGIES = {
    "SmaCross": ["strategy=sma_cross", "strategy.fast=10", "strategy.slow=50"],
    "MeanReversion": ["strategy=mean_reversion"],
    "RsiReversion (example)": [
        f"hydra.searchpath=[file://{ROOT / 'examples' / 'rsi' / 'conf'}]",
        "strategy=rsi",
        "allowed_modules=[rsi_strategy]",
    ],
}


def job_for(overrides: list[str], out: Path) -> Any:  # a BacktestJob as the CLI makes it
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from backtest.config._hydra import register_configs
    from backtest.tasks._jobs import BacktestJob, plain_config

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    GlobalHydra.instance().clear()
    return BacktestJob(config=plain_config(cfg), job_id="bench-lookahead", result_path=str(out))


def measure(overrides: list[str], work: Path, repeats: int) -> dict[str, float]:
    from backtest.tasks import _backtest, execute_job, prepare
    from backtest.tasks._jobs import BacktestJob

    work = Path(tempfile.mkdtemp(dir=work))
    off_job = job_for([*overrides, "engine.check_lookahead=false"], work / "unused")
    off = prepare(off_job)
    on = prepare(job_for(overrides, work / "unused"))
    folders = iter(range(10**6))

    def whole() -> None:
        path = work / f"run{next(folders)}"
        job = BacktestJob(config=off_job.config, job_id=path.name, result_path=str(path))
        execute_job(job, ctx=prepare(job))

    def with_check() -> None:
        on.checked.clear()
        on.check_strategy(on.strategy_cls(**on.strategy_params))
        _backtest.run(on)

    runs = {"backtest": lambda: _backtest.run(off), "+ check": with_check, "whole run": whole}
    return best_in_turns(runs, repeats)


def main() -> None:
    print("look-ahead check: what it adds to a single backtest (4 assets, 10 bp)")
    header = (
        f"{'strategy':<24}{'bars':>8}{'backtest':>11}{'+ check':>11}{'added':>8}"
        f"{'whole run':>11}{'added':>8}"
    )
    print(header)
    print("-" * len(header))
    work = Path(tempfile.mkdtemp(prefix="bench-lookahead-"))
    try:
        for n_bars, n_assets in CASES:
            for name, extra in STRATEGIES.items():
                overrides = [f"data.n_bars={n_bars}", f"data.n_assets={n_assets}",
                             "engine.fee_bps=10", "tracking=none", "figures=false",
                             "report=false", "summary=false", *extra]  # fmt: skip
                t = measure(overrides, work, 15 if n_bars <= 2520 else 7)
                added = t["+ check"] - t["backtest"]
                print(f"{name:<24}{n_bars:>8,}{t['backtest'] * 1e3:>9.2f}ms"
                      f"{t['+ check'] * 1e3:>9.2f}ms{added / t['backtest']:>8.0%}"
                      f"{t['whole run'] * 1e3:>9.1f}ms{added / t['whole run']:>8.1%}")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
