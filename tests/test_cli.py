"""The ``backtest`` command: subcommands, help, and one clear error before anything runs."""

from __future__ import annotations

import importlib.util
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.cli_run import backtest_command

pytestmark = pytest.mark.slow  # each test starts the command (2-5 s)

ROOT = Path(__file__).resolve().parent.parent
SUBCOMMANDS = ("run", "compare", "sync", "worker", "search-distributed", "report")


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return backtest_command(*args, cwd=cwd, env=env)


def test_help_lists_the_subcommands_and_hides_base_options(tmp_path: Path) -> None:
    proc = cli("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in SUBCOMMANDS:
        assert f"\n  {name} " in proc.stdout
    assert "walkforward" in proc.stdout and "stationary_bootstrap" in proc.stdout
    assert "base_" not in proc.stdout
    assert cli("run", "--help", cwd=tmp_path).stdout == proc.stdout


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("compare", "--metric"),
        ("sync", "--uri"),
        ("worker", "--queues"),
        ("search-distributed", "--n-trials"),
    ],
    ids=["compare", "sync", "worker", "search-distributed"],
)
def test_each_subcommand_reaches_its_module(tmp_path: Path, name: str, needle: str) -> None:
    proc = cli(name, "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert needle in proc.stdout


def test_report_subcommand_calls_the_report_module_or_says_it_is_missing(tmp_path: Path) -> None:
    proc = cli("report", "--help", cwd=tmp_path)
    if importlib.util.find_spec("backtest.report") is None:
        assert proc.returncode == 2
        assert "backtest report is not available" in proc.stderr
        assert "Traceback" not in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr


def test_run_and_plain_form_are_the_same_command(tmp_path: Path) -> None:
    args = ("tracking=none", "data.n_bars=200", "figures=false", "strategy.slow=20")
    plain = cli(*args, "output_dir=a", cwd=tmp_path)
    explicit = cli("run", *args, "output_dir=b", cwd=tmp_path)
    assert plain.returncode == 0 and explicit.returncode == 0, plain.stderr + explicit.stderr
    assert (tmp_path / "a" / "result.json").is_file() and (tmp_path / "b" / "result.json").is_file()


def _nan_csv(path: Path) -> Path:
    dates = pd.bdate_range("2020-01-01", periods=120)
    close = 100 * np.cumprod(1 + np.random.default_rng(0).normal(0, 0.01, 120))
    close[37] = np.nan
    pd.DataFrame({"date": dates, "AAA": close}).to_csv(path, index=False)
    return path


def test_bad_data_is_one_line_with_the_fix_and_leaves_nothing(tmp_path: Path) -> None:
    csv = _nan_csv(tmp_path / "prices.csv")
    store = tmp_path / "mlflow.db"
    proc = cli(
        "data=csv",
        f"data.path={csv}",
        "strategy.fast=5",
        "strategy.slow=20",
        f"tracking.uri=sqlite:///{store}",
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "NaN" in proc.stderr and "data.repair=ffill" in proc.stderr
    assert not (tmp_path / "outputs").exists()  # no run folder
    assert not store.exists()  # no MLflow run (the store is not even created)


def test_verbose_and_hydra_full_error_show_the_traceback(tmp_path: Path) -> None:
    csv = _nan_csv(tmp_path / "prices.csv")
    args = ("data=csv", f"data.path={csv}", "tracking=none", "strategy.slow=20")
    assert "Traceback" in cli(*args, "--verbose", cwd=tmp_path).stderr
    assert "Traceback" in cli(*args, cwd=tmp_path, HYDRA_FULL_ERROR="1").stderr


def test_empty_search_space_shows_the_command_line_form(tmp_path: Path) -> None:
    proc = cli("search=grid", "tracking=none", "data.n_bars=200", cwd=tmp_path)
    assert proc.returncode == 2
    assert "'+search.space.fast=[5,10,20]'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "outputs").exists()


def test_conflicting_settings_name_both_keys(tmp_path: Path) -> None:
    proc = cli(
        "walkforward=calendar",
        "walkforward.train_bars=504",
        "search=grid",
        "+search.space.fast=[5,10]",
        "tracking=none",
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "walkforward.train_bars" in proc.stderr and "walkforward.train_period" in proc.stderr


def test_unreachable_redis_is_one_line_within_seconds(tmp_path: Path) -> None:
    pytest.importorskip("rq")
    start = time.monotonic()
    proc = cli(
        "-m",
        "hydra/launcher=rq",
        "queue.redis_url=redis://:pw-never-shown@127.0.0.1:9/0",
        "strategy.fast=5,10",
        "tracking=none",
        cwd=tmp_path,
    )
    assert time.monotonic() - start < 60
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "redis://:***@127.0.0.1:9/0" in errors[0]
    assert "Traceback" not in proc.stderr and "pw-never-shown" not in proc.stderr
    assert not (tmp_path / "outputs").exists()  # the sweep stopped before any job: no folder


def test_plus_form_of_an_optional_group_works(tmp_path: Path) -> None:
    proc = cli(
        "+montecarlo=random_entries",
        "montecarlo.n_paths=50",
        "tracking=none",
        "figures=false",
        "data.n_bars=200",
        "strategy.slow=20",
        "output_dir=mc",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "montecarlo" in (tmp_path / "mc" / "result.json").read_text()
    assert "observed p-value" in proc.stdout and "p-value 0.000" not in proc.stdout


# --- typos: the closest valid name and the list, in one or two lines ------------------------


def _options(group: str) -> list[str]:
    """The options a user may choose in ``conf/<group>/``: every YAML but the base schemas."""
    return sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml") if p.stem != "base")


def _two_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Config" not in proc.stderr  # no schema class
    assert "base_" not in proc.stderr and "search path" not in proc.stderr
    return lines


def test_config_key_typo_names_the_closest_key_and_the_valid_ones(tmp_path: Path) -> None:
    import dataclasses

    from backtest.config import SmaCrossConfig

    lines = _two_lines(cli("strategy.fsat=3", "tracking=none", cwd=tmp_path))
    assert lines[0] == "error: strategy.fsat is not a key of strategy: did you mean strategy.fast?"
    keys = [f.name for f in dataclasses.fields(SmaCrossConfig) if not f.name.startswith("_")]
    assert lines[1] == f"hint: the keys of strategy are {', '.join(keys)}"
    assert "+strategy.fsat" not in proc_text(lines)  # not the wrong fix "to append use +..."

    lines = _two_lines(cli("sead=3", "tracking=none", cwd=tmp_path))
    assert "did you mean seed?" in lines[0] and "strategy" in lines[1] and "hydra" not in lines[1]


def proc_text(lines: list[str]) -> str:
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("typed", "group", "closest"),
    [
        ("strategy=momentm", "strategy", "strategy=momentum"),
        ("+experiment=sma_crss", "experiment", "+experiment=sma_cross"),
        ("search=grd", "search", "search=grid"),
    ],
    ids=["strategy", "experiment", "search"],
)
def test_group_option_typo_names_the_closest_option_and_the_valid_ones(
    tmp_path: Path, typed: str, group: str, closest: str
) -> None:
    lines = _two_lines(cli(typed, "tracking=none", cwd=tmp_path))
    wrong = typed.split("=")[1]
    assert lines[0] == f"error: {wrong!r} is not an option of {group}: did you mean {closest}?"
    options = [o for o in _options(group) if not o.startswith("base_")]
    assert lines[1] == f"hint: the options of {group} are {', '.join(options)}"


def test_search_space_typo_names_the_closest_parameter_and_leaves_nothing(tmp_path: Path) -> None:
    proc = cli("strategy=momentum", "search=grid", "+search.space.lookbak=[5,10]", cwd=tmp_path)
    lines = _two_lines(proc)
    assert lines == [
        "error: search.space.lookbak is not a parameter of Momentum: did you mean "
        "search.space.lookback? (its parameters: lookback, skip, long_short; or engine.<option>)"
    ]
    assert "run started" not in proc.stdout
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "mlruns").exists()


def test_readme_typo_examples_print_what_the_readme_shows(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text()
    block = text[text.index("A mistyped key") :]
    block = block[block.index("```text") + len("```text\n") : block.index("```\n", 10)]
    examples: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            examples.append((line[2:].split("#")[0].strip(), []))
        else:
            examples[-1][1].append(line)
    typos = [(cmd, shown) for cmd, shown in examples if "data.path" not in cmd]
    assert len(typos) == 3
    for cmd, shown in typos:
        args = cmd.removeprefix("python -m backtest ").split()
        proc = cli(*args, "tracking=none", cwd=tmp_path)
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines() == shown, cmd


def test_option_typo_inside_an_experiment_file_is_phrased_as_in_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "mine" / "experiment"
    conf.mkdir(parents=True)
    (conf / "typo.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /strategy: momentm\n"
    )
    args = ("--config-dir", str(tmp_path / "mine"), "+experiment=typo", "tracking=none")
    lines = _two_lines(cli(*args, cwd=tmp_path))
    assert lines[0] == (
        "error: 'momentm' is not an option of strategy (chosen in a config file's defaults): "
        "did you mean override /strategy: momentum?"
    )
    assert not (tmp_path / "outputs").exists()
