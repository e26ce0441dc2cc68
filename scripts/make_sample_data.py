"""Regenerate ``backtest/data/sample.csv``, the real daily prices shipped with backtest.

Source: the daily S&P 500 (Yahoo ``^GSPC``) and NASDAQ Composite (Yahoo ``^IXIC``)
index data that the ``arch`` package (PyPI ``arch``, ``arch.data.sp500.load()`` and
``arch.data.nasdaq.load()``) ships, 1999-01-04 to 2018-12-31. We keep 2008-01-02 to
2018-12-31 (the 2008 crisis and the long recovery), rename the symbols ``SP500`` and
``NASDAQ``, round prices to the cent (index levels are quoted to the cent; the source
carries float32 noise such as 1228.099976) and write the long layout
``date, symbol, open, high, low, close, volume``. ``Adj Close`` equals ``Close`` for
these indices (no dividends or splits), so only ``close`` is kept.

Usage::

    python scripts/make_sample_data.py [--out backtest/data/sample.csv]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

FIRST, LAST = "2008-01-02", "2018-12-31"
OUT = Path(__file__).resolve().parents[1] / "backtest" / "_data" / "sample.csv"


def build() -> pd.DataFrame:
    """Return the long sample table from ``arch.data``, sorted by date then symbol."""
    from arch.data import nasdaq, sp500

    frames = []
    for symbol, module in (("NASDAQ", nasdaq), ("SP500", sp500)):
        raw = module.load().loc[FIRST:LAST]
        if not (raw["Close"] == raw["Adj Close"]).all():
            raise SystemExit(f"{symbol}: Adj Close differs from Close; keep both?")
        frame = pd.DataFrame(
            {
                "date": raw.index.strftime("%Y-%m-%d"),
                "symbol": symbol,
                "open": raw["Open"].round(2).to_numpy(),
                "high": raw["High"].round(2).to_numpy(),
                "low": raw["Low"].round(2).to_numpy(),
                "close": raw["Close"].round(2).to_numpy(),
                "volume": raw["Volume"].astype("int64").to_numpy(),
            }
        )
        frames.append(frame)
    return pd.concat(frames, ignore_index=True).sort_values(["date", "symbol"], kind="stable")


def main() -> None:
    """Write the sample CSV (``--out`` to write elsewhere)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    table = build()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False, lineterminator="\n")
    print(f"wrote {len(table)} rows, {args.out.stat().st_size / 1024:.0f} KiB to {args.out}")


if __name__ == "__main__":
    main()
