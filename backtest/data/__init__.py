"""Prices in: synthetic, the shipped sample, or your CSV / Parquet file; validated.

Every loader returns *wide closes*: a DataFrame with a ``DatetimeIndex`` named
``date`` (datetime64[ns], strictly increasing) and one float64 column per symbol.

* :func:`synthetic_prices`: seeded geometric Brownian motion, optionally with
  trending and mean-reverting regimes.
* :func:`sample_prices`: real daily prices shipped in ``backtest/data/sample.csv``:
  the S&P 500 (``SP500``, Yahoo ``^GSPC``) and NASDAQ Composite (``NASDAQ``,
  ``^IXIC``) indices, daily open/high/low/close/volume from 2008-01-02 to
  2018-12-31, converted by ``scripts/make_sample_data.py`` from the data sets the
  ``arch`` package ships as ``arch.data.sp500`` and ``arch.data.nasdaq``
  (prices rounded to the cent).
* :func:`read_prices`: a CSV or Parquet file in long layout (``date, symbol, open,
  high, low, close, volume``, one row per date and symbol) or wide layout (a date
  column and one close column per symbol), with column names mapped to yours.
* :func:`load_prices`: dispatches on a :class:`~backtest.config.DataConfig`.
* :class:`Bars` and :func:`load_bars`: open/high/low/close/volume of every asset (see
  :mod:`backtest.data._bars`).

* ``data=universe_sample``: a shipped synthetic panel whose universe changes (late
  listings, early delistings, a split, dividends; :mod:`backtest.data._panel`).

Universes are data (:mod:`backtest.data._universe`): a column's leading NaNs mean the
asset is not listed yet, its trailing NaNs that it has delisted; ``data.universe`` (a
membership table) narrows :attr:`Bars.tradable`, ``data.actions`` (splits and cash
dividends on unadjusted prices, :mod:`backtest.data._actions`) fills ``Bars.split`` and
``Bars.dividend``, and :meth:`Bars.adjusted` is the total-return view strategies see.

Bad data is refused by :func:`validate_prices` with a
:class:`~backtest.errors.DataValidationError` naming the column, the first bad
timestamp and the count, unless a repair mode says otherwise; every repair is
logged on the ``backtest.data`` logger. :func:`check_bars` holds data handed to the
Python API (``simulate``, the evaluators, ...) to the same rules and errors, without
repairing or copying it.
"""

from __future__ import annotations

from backtest.data._bars import Bars
from backtest.data._check import check_bars
from backtest.data._files import read_prices, sample_prices
from backtest.data._fingerprint import data_fingerprint
from backtest.data._load import load_bars, load_prices
from backtest.data._synthetic import synthetic_prices
from backtest.data._validate import validate_prices

__all__ = [
    "Bars",
    "check_bars",
    "data_fingerprint",
    "load_bars",
    "load_prices",
    "read_prices",
    "sample_prices",
    "synthetic_prices",
    "validate_prices",
]
