"""Fingerprints: one SHA-256 digest per exact data content (prices and universe fields)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd

from backtest.data._bars import Bars


def data_fingerprint(prices: pd.DataFrame | Bars) -> str:
    """A SHA-256 hex digest identifying a price frame's exact content.

    Hashes the shape, the column names, the index as int64 nanoseconds and the
    values as float64 bytes: identical data gives the same fingerprint in any
    process; changing any value, timestamp or name changes it. Given :class:`Bars`, the
    closes' digest is extended by the universe fields present (tradable, split,
    dividend, delist_return), so a run with another membership table or other actions
    has another fingerprint; bars without them hash as their closes.

    Args:
        prices: Wide closes with a ``DatetimeIndex``, or bars.

    Returns:
        64 hex characters.

    Examples:
        >>> from backtest.data import synthetic_prices
        >>> len(data_fingerprint(synthetic_prices(10, 2, seed=3)))
        64
    """
    extra: dict[str, pd.DataFrame] = {}
    if isinstance(prices, Bars):
        extra = {
            f: getattr(prices, f)
            for f in ("tradable", "split", "dividend", "delist_return")
            if getattr(prices, f) is not None
        }
        prices = prices.close
    digest = hashlib.sha256()
    digest.update(json.dumps([list(prices.shape), [str(c) for c in prices.columns]]).encode())
    digest.update(pd.DatetimeIndex(prices.index).as_unit("ns").asi8.astype("<i8").tobytes())
    digest.update(np.ascontiguousarray(prices.to_numpy(dtype=np.float64)).astype("<f8").tobytes())
    for name, frame in extra.items():
        digest.update(name.encode())
        values = np.ascontiguousarray(frame.to_numpy(dtype=np.float64))
        digest.update(values.astype("<f8").tobytes())
    return digest.hexdigest()
