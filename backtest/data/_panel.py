"""The shipped universe panel, and a loaded panel's membership and corporate actions.

:func:`universe_sample_bars` reads ``backtest/data/universe_sample.csv``: a small
*synthetic* daily panel (seeded; written by ``scripts/make_universe_sample.py``) of 16
stocks over 2016-2018, whose prices are **unadjusted** and whose universe changes: three
list late, two delist early (one with a delisting return), one splits 2-for-1 and
several pay cash dividends (``universe_actions.csv``, attached unless ``data.actions``
names another file). :func:`attach_universe` gives any loaded panel its ``tradable``,
``split`` and ``dividend`` frames from ``data.universe`` / ``data.actions`` and logs the
universe's one line.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import fields
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backtest.config import DataLayout, RepairMode
from backtest.data._actions import read_actions
from backtest.data._bars import Bars
from backtest.data._files import read_bars
from backtest.data._reading import confine_reads
from backtest.data._universe import check_universe_fields, read_universe, universe_summary

logger = logging.getLogger("backtest.data")

SAMPLE_PANEL = "universe_sample.csv"
SAMPLE_ACTIONS = "universe_actions.csv"


def shipped_file(name: str) -> Path:
    """The path of a data file shipped in ``backtest/data`` (the package is installed as files)."""
    return Path(str(resources.files("backtest.data") / name))


def universe_sample_bars(
    symbols: Sequence[str] | None = None,
    *,
    start: str | None = None,
    end: str | None = None,
    repair: RepairMode | str = RepairMode.none,
) -> Bars:
    """The shipped universe panel's closes and delisting returns (no actions attached yet).

    ``data.source=universe_sample`` (``data=universe_sample``); its corporate actions are
    attached by :func:`attach_universe`.
    """
    previous = confine_reads(None)  # the package's own file: readable on a worker too
    try:
        return read_bars(
            shipped_file(SAMPLE_PANEL),
            layout=DataLayout.long,
            symbols=symbols,
            start=start,
            end=end,
            repair=repair,
        )
    finally:
        confine_reads(previous)


def attach_universe(bars: Bars, config: Any) -> Bars:
    """``bars`` with ``data.universe``'s ``tradable`` and ``data.actions``' split and dividend.

    A panel with listings gets an explicit ``tradable`` (its listed cells) even without a
    membership table. The shipped universe panel gets its own actions unless
    ``data.actions`` names a file. Logs one line on the ``backtest.data`` logger, e.g.
    ``"3 assets list late, 2 delist early; trading only while listed"``.

    Raises:
        ConfigError: a bad membership table or actions file (names ``data.universe`` /
            ``data.actions``, the row and the fix).
        DataValidationError: an action on a bar where its asset is not listed.
    """
    close = bars.close
    subset = bool(getattr(config, "symbols", None))
    changes: dict[str, pd.DataFrame] = {}
    universe = getattr(config, "universe", None)
    if universe:
        changes["tradable"] = read_universe(universe, close, subset=subset)
    elif np.isnan(close.to_numpy(dtype=np.float64)).any():
        changes["tradable"] = close.notna()
    actions = getattr(config, "actions", None)
    source = getattr(getattr(config, "source", None), "value", getattr(config, "source", None))
    if not actions and source == "universe_sample":
        actions, subset = shipped_file(SAMPLE_ACTIONS), True
    if actions:
        previous = confine_reads(None) if Path(actions) == shipped_file(SAMPLE_ACTIONS) else None
        try:
            changes["split"], changes["dividend"] = read_actions(actions, close, subset=subset)
        finally:
            if previous is not None:
                confine_reads(previous)
    if changes:
        values = {f.name: getattr(bars, f.name) for f in fields(bars)}
        values.update(changes)
        bars = Bars(**values)
        check_universe_fields(bars)
    line = universe_summary(bars)
    if line:
        logger.info(line)
    return bars
