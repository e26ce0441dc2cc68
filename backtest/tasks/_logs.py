"""Logging: the standard library, with structured ``key=value`` messages.

Modules log through ``logging.getLogger("backtest.<module>")`` and put the facts of
an event in ``key=value`` pairs (:func:`kv`), so a line can be grepped and parsed.
When structlog is installed, :func:`use_structlog` renders the standard library's
records through it (timestamps, levels, aligned fields); it is never required.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any


def kv(event: str, **fields: Any) -> str:
    """A log message: the event, then ``key=value`` pairs in the given order.

    Examples:
        >>> kv("wrote result", job_id="backtest-1a2b", path="outputs/x")
        'wrote result job_id=backtest-1a2b path=outputs/x'
    """
    parts = [event]
    for key, value in fields.items():
        text = str(value)
        parts.append(f"{key}={text!r}" if " " in text else f"{key}={text}")
    return " ".join(parts)


def structlog_available() -> bool:
    """Whether structlog can be imported."""
    return importlib.util.find_spec("structlog") is not None


def use_structlog(logger: logging.Logger | None = None) -> bool:
    """Render the handlers of ``logger`` (default: root) through structlog, if installed.

    Returns:
        True when structlog now formats the records, False when it is not installed.
    """
    if not structlog_available():
        return False
    import structlog

    formatter = structlog.stdlib.ProcessorFormatter(
        processor=structlog.dev.ConsoleRenderer(colors=False),
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
    )
    for handler in (logger or logging.getLogger()).handlers:
        handler.setFormatter(formatter)
    return True
