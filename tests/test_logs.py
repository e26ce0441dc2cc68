from __future__ import annotations

import io
import logging

import pytest

from backtest.tasks._logs import kv, use_structlog


def test_kv_quotes_values_with_spaces() -> None:
    assert kv("data repaired", column="close", first="2020-01-02 00:00:00", count=3) == (
        "data repaired column=close first='2020-01-02 00:00:00' count=3"
    )


def test_structlog_renders_stdlib_records_when_installed() -> None:
    pytest.importorskip("structlog")
    stream = io.StringIO()
    logger = logging.getLogger("backtest.test_logs")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        assert use_structlog(logger)
        logger.info(kv("wrote result", job_id="j1"))
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    assert "wrote result job_id=j1" in line
    assert "info" in line.lower() and "backtest.test_logs" in line
