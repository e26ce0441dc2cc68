"""Readers survive what disks and people do: a corrupt run folder is named and skipped.

Four damaged run folders (a truncated table, a garbage table, a ``result.json`` cut
mid-way, a table that is a link out of the folder), each read by ``load_result``,
``backtest report`` (alone, and among good runs) and ``backtest sync`` (real sqlite
MLflow store); a truncated store for ``compare``; ``sync`` against a closed port.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from backtest import results
from backtest.errors import BacktestError, ResultCorrupt
from backtest.report._cli import main as report_main
from backtest.results._sweep_table import summarize_sweep
from backtest.tracking._sync import main as sync_main
from backtest.tracking._sync import sync


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real, complete run directory (copied by each test)."""
    from backtest.app import compose
    from backtest.tasks import execute_job
    from backtest.tasks._jobs import BacktestJob

    out = tmp_path_factory.mktemp("good") / "run"
    cfg = compose(
        "+experiment=sma_cross", "data.n_bars=300", "tracking=none", "figures=false",
        f"output_dir={out}",
    )  # fmt: skip
    execute_job(BacktestJob.from_config(cfg))
    assert {"trades", "equity"} <= set(results.load_result(out).tables)
    return out


def copy_run(good: Path, dest: Path) -> Path:
    """A copy of ``good`` that is a result of its own (its own job id, so its own run key)."""
    shutil.copytree(good, dest, ignore=shutil.ignore_patterns(".lock", results.REPORT_FILE))
    record = json.loads((dest / results.RESULT_FILE).read_text())
    record["job_id"] = f"job-{uuid.uuid4().hex[:8]}"
    results.write_json(dest / results.RESULT_FILE, record)
    return dest


def truncate_trades(run: Path) -> str:
    data = (run / "trades.parquet").read_bytes()
    (run / "trades.parquet").write_bytes(data[: len(data) // 2])
    return "trades.parquet"


def garble_equity(run: Path) -> str:
    size = (run / "equity.parquet").stat().st_size
    (run / "equity.parquet").write_bytes(os.urandom(size))
    return "equity.parquet"


def cut_result_json(run: Path) -> str:
    data = (run / results.RESULT_FILE).read_bytes()
    (run / results.RESULT_FILE).write_bytes(data[: len(data) // 2])
    return results.RESULT_FILE


def link_out(run: Path) -> str:
    """``trades.parquet`` becomes a link to a valid Parquet file outside the run folder."""
    outside = run.parent.parent / "outside" / f"{run.name}-secret.parquet"
    outside.parent.mkdir(exist_ok=True)
    shutil.copyfile(run / "trades.parquet", outside)
    (run / "trades.parquet").unlink()
    (run / "trades.parquet").symlink_to(outside)
    return "trades.parquet"


DAMAGES: dict[str, Callable[[Path], str]] = {
    "truncated_parquet": truncate_trades,
    "garbage_parquet": garble_equity,
    "cut_result_json": cut_result_json,
    "symlink_out": link_out,
}
damage = pytest.mark.parametrize("how", list(DAMAGES))


def runs_folder(good: Path, root: Path, how: str) -> tuple[Path, Path, str]:
    """``root/runs`` holding good runs ``a`` and ``c`` and the damaged run ``b``."""
    runs = root / "runs"
    for name in ("a", "b", "c"):
        copy_run(good, runs / name)
    return runs, runs / "b", DAMAGES[how](runs / "b")


@damage
def test_load_result_names_the_folder_and_the_file(
    good_run: Path, tmp_path: Path, how: str
) -> None:
    bad = copy_run(good_run, tmp_path / "runs" / "bad")
    file = DAMAGES[how](bad)
    with pytest.raises(ResultCorrupt) as info:
        results.load_result(bad)
    assert isinstance(info.value, BacktestError)
    assert (info.value.path, info.value.file) == (bad, file)
    assert str(bad) in str(info.value) and file in str(info.value)
    assert "run it again" in str(info.value)  # the fix


@damage
def test_report_of_a_folder_skips_the_bad_run_and_reports_the_good(
    good_run: Path, tmp_path: Path, how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    runs, bad, file = runs_folder(good_run, tmp_path, how)
    table = summarize_sweep(runs)
    assert dict(zip(table["run_dir"], table["status"], strict=True)) == {
        str((runs / "a").resolve()): "ok",
        str(bad.resolve()): "corrupt",
        str((runs / "c").resolve()): "ok",
    }
    assert report_main([str(runs)]) == 1  # written, with a run skipped
    out, err = capsys.readouterr()
    assert out.strip() == str(runs / results.REPORT_FILE)
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("report: skipped: corrupt result in") and str(bad) in err and file in err
    page = (runs / results.REPORT_FILE).read_text()
    assert "corrupt result in" in page and file in page  # the page names the skipped run

    assert report_main([str(bad)]) == 2  # the bad run alone: one named error
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"report: corrupt result in '{bad}': {file}")
    assert not (bad / results.REPORT_FILE).exists()

    page_out = tmp_path / "cmp.html"
    assert report_main([str(runs / "a"), str(bad), str(runs / "c"), "-o", str(page_out)]) == 1
    assert page_out.is_file() and str(bad) in capsys.readouterr().err


@damage
def test_sync_never_logs_a_corrupt_result(good_run: Path, tmp_path: Path, how: str) -> None:
    from mlflow import MlflowClient

    runs, bad, file = runs_folder(good_run, tmp_path, how)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    report = sync(runs, uri=uri, include_untracked=True)
    assert sorted(p.name for p, _ in report.logged) == ["a", "c"]
    assert [(p, reason.split(":")[0]) for p, reason in report.failed] == [
        (bad, f"corrupt result in '{bad}'")
    ]
    assert file in report.failed[0][1]
    client = MlflowClient(tracking_uri=uri)
    logged = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(logged) == 2
    assert {r.data.tags["backtest.run_dir"] for r in logged} == {
        str((runs / n).resolve()) for n in "ac"
    }
    artifacts = tmp_path / "mlartifacts"
    assert not any("secret" in p.name for p in artifacts.rglob("*"))
    again = sync(runs, uri=uri, include_untracked=True)  # still named, still not logged
    assert [p for p, _ in again.failed] == [bad] and not again.logged


def test_a_figure_linked_out_of_the_folder_is_never_uploaded(
    good_run: Path, tmp_path: Path
) -> None:
    run = copy_run(good_run, tmp_path / "runs" / "r")
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG private")
    (run / results.FIGURES_DIR).mkdir(exist_ok=True)
    (run / results.FIGURES_DIR / "equity.png").symlink_to(secret)
    with pytest.raises(ResultCorrupt) as info:
        results.load_result(run)
    assert info.value.file == "figures/equity.png"
    report = sync(tmp_path / "runs", uri=f"sqlite:///{tmp_path}/mlflow.db", include_untracked=True)
    assert not report.logged and [p for p, _ in report.failed] == [run]
    assert not any(p.name == "equity.png" for p in tmp_path.rglob("mlartifacts/**/*"))


def test_a_table_damaged_inside_a_valid_footer_is_named_when_read(
    good_run: Path, tmp_path: Path
) -> None:
    run = copy_run(good_run, tmp_path / "r")
    path = run / "equity.parquet"
    data = bytearray(path.read_bytes())
    data[4 : len(data) // 2] = os.urandom(len(data) // 2 - 4)  # pages garbled, footer kept
    path.write_bytes(bytes(data))
    stored = results.load_result(run)  # the footer is fine
    with pytest.raises(ResultCorrupt) as info:
        stored.table("equity")
    assert (info.value.path, info.value.file) == (run, "equity.parquet")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sync_against_a_down_server_is_one_line_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    uri = f"http://127.0.0.1:{closed_port()}"
    for i in range(12):
        config = {"name": "down", "tracking": {"enabled": True, "uri": uri, "timeout_s": 2.0}}
        record = {"task": "backtest", "job_id": f"job-{i}", "metrics": {"sharpe_ratio": 1.0}}
        results.write_result(tmp_path / f"r{i}", record, config_yaml=yaml.safe_dump(config))
    assert sync_main([str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"error: server unreachable at {uri}: 12 results left for the next sync "
        "(start it, or pass --uri)"
    ]
    report = sync(tmp_path)
    assert len(report.unreachable) == 12 and not report.failed and not report.logged


def test_sync_into_a_damaged_store_is_one_line_naming_it(
    good_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    store = tmp_path / "mlflow.db"
    uri = f"sqlite:///{store}"
    for name in ("a", "b"):
        copy_run(good_run, tmp_path / "runs" / name)
    assert len(sync(tmp_path / "runs", uri=uri, include_untracked=True).logged) == 2
    with sqlite3.connect(store) as con:  # fold the WAL in, as a finished process leaves it
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = store.read_bytes()
    store.write_bytes(data[: len(data) // 2])
    for name in ("c", "d", "e"):
        copy_run(good_run, tmp_path / "runs" / name)
    argv = [str(tmp_path / "runs"), "--uri", uri, "--include-untracked"]
    assert sync_main(argv) == 1
    out, err = capsys.readouterr()
    assert out == "0 logged, 2 already in MLflow, 0 failed\n"  # a and b: by the index
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: 3 results left for the next sync: the MLflow store")
    assert f"{store} is damaged" in err and "--full" in err
