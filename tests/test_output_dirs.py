"""Output directories are never shared: claimed atomically, refused before any write."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from backtest import results
from backtest.results import DirectoryClaimed, claim_dir

RUN = [
    sys.executable,
    "-m",
    "backtest",
    "+experiment=sma_cross",
    "data.n_bars=300",
    "tracking=none",
    "summary=false",
    "figures=false",
]


def start(cwd: Path, *overrides: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    flags = [o for o in overrides if o.startswith("-")]
    return subprocess.Popen(
        [*RUN[:3], *flags, *RUN[3:], *(o for o in overrides if o not in flags)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# 200 races of 8 threads: O_EXCL is atomic in the kernel, so a second winner in any of
# them would be a bug in the claim itself, not bad luck.
def test_of_many_claims_at_once_exactly_one_wins(tmp_path: Path) -> None:
    for round_ in range(200):
        target = tmp_path / f"run{round_}"
        won: list[int] = []
        barrier = threading.Barrier(8)

        def claim(
            i: int, target: Path = target, won: list[int] = won, barrier: Any = barrier
        ) -> None:
            barrier.wait()
            try:
                claim_dir(target)
                won.append(i)
            except DirectoryClaimed:
                pass

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) == 1, (round_, won)


@pytest.mark.parametrize(
    "marker", [results.RESULT_FILE, ".hydra", "multirun.yaml"], ids=["result", "hydra", "sweep"]
)
def test_a_folder_holding_a_run_is_refused_and_left_alone(tmp_path: Path, marker: str) -> None:
    (tmp_path / marker).write_text("x") if "." in marker else (tmp_path / marker).mkdir()
    before = snapshot(tmp_path)
    with pytest.raises(DirectoryClaimed, match=r"hydra\.sweep\.dir=") as info:
        claim_dir(tmp_path, key="hydra.sweep.dir")
    assert info.value.path == tmp_path and marker in str(info.value)
    assert snapshot(tmp_path) == before
    claim_dir(tmp_path / "fresh")  # an unused folder (made here) is fine


@pytest.mark.slow
def test_a_second_run_into_a_used_run_dir_is_refused_before_writing(tmp_path: Path) -> None:
    first = start(tmp_path, "hydra.run.dir=out")
    out = first.communicate(timeout=300)[0]
    assert first.returncode == 0, out[-3000:]
    before = snapshot(tmp_path / "out")
    second = start(tmp_path, "hydra.run.dir=out", "strategy.fast=7")
    out = second.communicate(timeout=300)[0]
    assert second.returncode == 2, out[-3000:]
    assert "output directory" in out and "hydra.run.dir=" in out
    assert snapshot(tmp_path / "out") == before  # not one byte rewritten


# Three rounds of two multiruns started together into one sweep dir: before the claim
# both exited 0 every time (the second silently replacing the first's results), so a
# single round would already show a regression; three guard against a lucky ordering.
@pytest.mark.slow
@pytest.mark.parametrize("round_", range(3), ids=lambda r: f"round{r}")
def test_two_multiruns_into_one_sweep_dir_at_once_one_is_refused(
    tmp_path: Path, round_: int
) -> None:
    procs = [
        start(tmp_path, "-m", "hydra.sweep.dir=sweep", f"strategy.fast={fast}")
        for fast in ("5,6", "7,8")
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    winner = procs[[p.returncode for p in procs].index(0)]
    fasts = {"5,6": ["5", "6"], "7,8": ["7", "8"]}[winner.args[-1].split("=")[1]]
    done = sorted(
        results.load_result(p.parent).record["params"]["fast"]
        for p in (tmp_path / "sweep").glob("*/result.json")
    )
    assert [str(f) for f in done] == fasts


@pytest.mark.slow
def test_identical_runs_started_together_get_their_own_directories(tmp_path: Path) -> None:
    procs = [start(tmp_path) for _ in range(2)] + [start(tmp_path, "-m") for _ in range(2)]
    for p in procs:
        out = p.communicate(timeout=300)[0]
        assert p.returncode == 0, out[-3000:]
    runs = [p for p in (tmp_path / "outputs" / "sma_cross").iterdir() if p.name != "multirun"]
    sweeps = list((tmp_path / "outputs" / "sma_cross" / "multirun").iterdir())
    assert len(runs) == 2 and len(sweeps) == 2
    assert all(results.has_result(r) for r in runs)
    assert all(results.has_result(s / "0") for s in sweeps)


@pytest.mark.slow
def test_a_relative_data_path_means_the_folder_the_user_ran_in_with_chdir(
    tmp_path: Path,
) -> None:
    from backtest.data import sample_prices

    prices = sample_prices()
    prices.to_csv(tmp_path / "px.csv")
    proc = start(
        tmp_path,
        "data.source=csv",
        "data.path=px.csv",
        "hydra.job.chdir=true",
        "hydra.run.dir=deep/er/run",
    )
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-3000:]
    record = results.load_result(tmp_path / "deep" / "er" / "run").record
    assert record["n_bars"] == len(prices)
    assert record["start"] == str(prices.index[0].date())


@pytest.mark.slow
@pytest.mark.parametrize("chdir", [False, True], ids=["plain", "chdir"])
def test_output_dir_leaves_exactly_one_folder(tmp_path: Path, chdir: bool) -> None:
    """Hydra's run directory is output_dir: no outputs/<name>/<time>/ with only a log."""
    proc = start(tmp_path, "output_dir=mine", f"hydra.job.chdir={str(chdir).lower()}")
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    run = tmp_path / "mine"
    assert results.has_result(run) and (run / "backtest.log").is_file()
    assert (run / ".hydra" / "overrides.yaml").is_file()
    assert "run started" in (run / "backtest.log").read_text()
    again = start(tmp_path, "output_dir=mine", "strategy.fast=7")  # never shared
    out = again.communicate(timeout=300)[0]
    assert again.returncode == 2 and "output_dir=" in out, out[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
