"""Never serve half a result: a table missing from a run directory is named, not emptied."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backtest import results
from backtest.errors import ResultPathMissing
from backtest.tasks import execute_job, load_backtest
from backtest.tasks._jobs import BacktestJob


@pytest.fixture
def job(compose: Any, tmp_path: Path) -> BacktestJob:
    cfg = compose(
        "+experiment=sma_cross", "data.n_bars=400", "tracking=none", f"output_dir={tmp_path / 'r'}"
    )
    return BacktestJob.from_config(cfg)


def test_a_result_with_a_missing_table_is_incomplete_and_named(
    job: BacktestJob, tmp_path: Path
) -> None:
    first = execute_job(job)
    run_dir = Path(first.run_dir)
    n_trades = len(first.trades)
    assert n_trades > 0
    (run_dir / "trades.parquet").unlink()
    with pytest.raises(ResultPathMissing) as info:
        results.load_result(run_dir)
    assert info.value.path == run_dir / "trades.parquet"
    assert results.incomplete_reason(run_dir) == f"{run_dir / 'trades.parquet'} is missing"
    again = execute_job(job)  # recomputed, never served with empty trades
    assert len(again.trades) == n_trades == len(load_backtest(run_dir).trades)
    assert results.incomplete_reason(run_dir) is None


def test_a_table_removed_after_load_is_result_path_missing(
    job: BacktestJob, tmp_path: Path
) -> None:
    run_dir = Path(execute_job(job).run_dir)
    stored = results.load_result(run_dir)
    (run_dir / "equity.parquet").unlink()
    with pytest.raises(ResultPathMissing) as info:
        stored.table("equity")
    assert info.value.path == run_dir / "equity.parquet"
    assert not isinstance(info.value.__cause__, ResultPathMissing)


def test_a_damaged_table_is_computed_again_a_cut_record_is_refused(
    job: BacktestJob, tmp_path: Path
) -> None:
    from backtest.errors import ResultCorrupt

    first = execute_job(job)
    run_dir = Path(first.run_dir)
    trades = run_dir / "trades.parquet"
    trades.write_bytes(trades.read_bytes()[:100])  # cut short: its footer is gone
    assert "trades.parquet cannot be read as Parquet" in str(results.incomplete_reason(run_dir))
    again = execute_job(job)  # recomputed, never served with a broken table
    assert len(again.trades) == len(first.trades) == len(load_backtest(run_dir).trades)
    record = run_dir / results.RESULT_FILE
    record.write_bytes(record.read_bytes()[:40])  # whose run is this? nothing says
    with pytest.raises(ResultCorrupt) as info:
        execute_job(job)
    assert info.value.file == results.RESULT_FILE
    assert len(record.read_bytes()) == 40  # left as found
