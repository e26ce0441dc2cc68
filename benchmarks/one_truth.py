"""What the one-truth invariant costs: verification time as a share of each search's time.

Every search re-runs its chosen set (and a sample of others) through ``simulate`` and
compares (``backtest/search/_truth.py``); a walk-forward does the same for its folds'
chosen sets over their train bars (``FoldTruth``). This runs the searches of two shipped
experiments the way the ``search`` / ``walkforward`` tasks run them (their config composed from
``conf/``, prepared by ``backtest.tasks.prepare``) and times the verification calls
inside them:

* ``sma_grid``: a 500-set SmaCross grid on 2,520 bars x 4 assets (the fused kernels);
  its chosen set's ``simulate`` is also the run's headline backtest, which the task ran
  before the invariant existed: the net added cost is the sampled sets only;
* ``xs_momentum``: a walk-forward of cross-sectional momentum over 8 assets (monthly
  rebalance, next-open fills, vol target, gross cap; per-bar kernel), grid of 16 sets
  per fold (lookback x top_n x engine.rebalance x engine.target_volatility).

Each task runs with the invariant and with it turned off (the verification function
replaced by a no-op), taking turns; timings are the best of ``--repeat`` runs after a
warm-up (numba compilation). The machine may be shared: compare shares, not seconds.

Run: python benchmarks/one_truth.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _context(experiment: str) -> Any:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from backtest.config._hydra import register_configs
    from backtest.tasks import BacktestJob, prepare

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[f"+experiment={experiment}", "tracking=none", "~montecarlo"],
        )
    job = BacktestJob.from_config(OmegaConf.to_container(cfg, resolve=True))
    return prepare(job, Path("/tmp/one_truth_bench"))


class Timer:
    """Wraps a module function (or a class method), adding up its seconds; or turns it off."""

    def __init__(self, module: Any, name: str, off: Any) -> None:
        self.module, self.name, self.real, self.off = module, name, getattr(module, name), off
        self.seconds = 0.0
        self.calls = 0
        self.enabled = True

        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.enabled:
                return self.off
            t0 = time.perf_counter()
            try:
                return self.real(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
                self.calls += 1

        setattr(module, name, timed)

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, 0


def _turns(run: Callable[[], Any], timer: Timer, repeat: int) -> dict[str, Any]:
    """Best times with the invariant on and off, taking turns (a shared machine's load
    weighs on both alike), and the verification time inside the best run with it on."""
    run()  # warm-up: numba loads or compiles
    best_on, best_off, inside, calls, out = float("inf"), float("inf"), 0.0, 0, None
    for _ in range(repeat):
        timer.enabled = True
        timer.reset()
        t0 = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - t0
        if seconds < best_on:
            best_on, inside, calls, out = seconds, timer.seconds, timer.calls, result
        timer.enabled = False
        t0 = time.perf_counter()
        run()
        best_off = min(best_off, time.perf_counter() - t0)
    timer.enabled = True
    return {"on": best_on, "off": best_off, "inside": inside, "calls": calls, "out": out}


def sma_grid(repeat: int) -> None:
    from backtest.search import _runner
    from backtest.tasks import _search

    ctx = _context("sma_grid")
    timer = Timer(_runner, "verify_search", (None, ()))  # off: the task runs its headline
    t = _turns(lambda: _search.run(ctx), timer, repeat)
    search = t["out"].record["search"]
    search_s, verified = search["elapsed_s"], search["verified_trials"]
    print(
        f"sma_grid      search {search_s * 1e3:6.1f} ms, of which verification "
        f"{t['inside'] * 1e3:5.1f} ms = {t['inside'] / search_s:5.1%} ({len(verified)} sets: "
        f"the best, whose backtest is also the task's headline, + {len(verified) - 1} "
        f"sampled); task {t['on']:.3f} s with the invariant, {t['off']:.3f} s without: "
        f"net {t['on'] - t['off']:+.3f} s ({(t['on'] - t['off']) / search_s:+.1%} of the search)"
    )


def xs_momentum(repeat: int) -> None:
    from backtest.search._truth import FoldTruth
    from backtest.tasks import _walkforward

    ctx = _context("xs_momentum")
    timer = Timer(FoldTruth, "check", ())
    t = _turns(lambda: _walkforward.run(ctx), timer, repeat)
    print(
        f"xs_momentum   walk-forward {t['on']:.3f} s with the invariant, {t['off']:.3f} s "
        f"without: net {t['on'] - t['off']:+.3f} s ({(t['on'] - t['off']) / t['off']:+.1%}); "
        f"inside it the {t['calls']} folds' verification {t['inside'] * 1e3:.1f} ms "
        f"({t['inside'] / t['on']:.1%}; each chosen set's run is the one its fold then trades)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import os

    print(f"one-truth invariant cost; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    sma_grid(args.repeat)
    xs_momentum(args.repeat)


if __name__ == "__main__":
    main()
