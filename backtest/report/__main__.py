"""``python -m backtest.report PATH...``: (re)build reports, or compare several runs."""

from __future__ import annotations

from backtest.report._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
