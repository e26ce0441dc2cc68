"""``python -m backtest``: the same as the ``backtest`` command (see :mod:`backtest.cli`)."""

from __future__ import annotations

from backtest.cli import main
from backtest.config import CONF_DIR

__all__ = ["CONF_DIR", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
