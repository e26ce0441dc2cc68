"""Size bounds checked before a run starts: a named error with the memory estimate.

``data.n_bars=10**11`` or ``montecarlo.n_paths=10**11`` used to fail deep inside
numpy with an ``OverflowError`` or a memory error after the run had started. Here the
memory a setting needs is estimated from the sizes alone and compared with this
machine's memory (half of it is the budget), so the error names the key, the
estimate and the fix, before any data is made or any directory written.
"""

from __future__ import annotations

import math
import os
from typing import Any

from backtest.errors import ConfigError

_MAX_INDEX = 2**31 - 1  # numpy/numba kernels index bars and paths with C ints
_BAR_BYTES = 8 * 12  # float64 prices, returns, targets, positions, equity ... per bar and asset
_PATH_BYTES = 8 * 32  # one row of Monte Carlo metrics per path, plus working space
_TRIAL_BYTES = 8 * 64  # one row of the trials table (params and every metric)


def machine_memory() -> int:
    """Physical memory of this machine in bytes (a large default when unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 64 * 2**30


def human(n_bytes: float) -> str:
    """``1.5 GiB``-style size.

    >>> human(3 * 2**30)
    '3.0 GiB'
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n_bytes < 1024 or unit == "PiB":
            return f"{n_bytes:.1f} {unit}" if unit != "B" else f"{int(n_bytes)} B"
        n_bytes /= 1024
    return f"{n_bytes:.1f} PiB"  # pragma: no cover


def check_size(key: str, value: int, n_bytes: float, what: str) -> None:
    """Refuse ``key=value`` when it needs more than half this machine's memory.

    Raises:
        ConfigError: names ``key``, the estimate and the machine's memory.
    """
    total = machine_memory()
    if value > _MAX_INDEX or n_bytes > total / 2:
        raise ConfigError(
            f"{key}={value:,} needs about {human(n_bytes)} of memory for {what}; this "
            f"machine has {human(total)} (a run may use half): lower {key}",
            key=key,
        )


def check_sizes(settings: Any) -> None:
    """Check the sizes of a run's settings (a :class:`~backtest.config.RootConfig`).

    Raises:
        ConfigError: a size whose memory estimate exceeds the budget (see :func:`check_size`).
    """
    data = settings.data
    source = getattr(data.source, "value", data.source)
    n_assets = max(1, int(data.n_assets)) if source == "synthetic" else 1
    if source == "synthetic":
        check_size("data.n_bars", int(data.n_bars), data.n_bars * n_assets * _BAR_BYTES, "prices")
        _check_calendar(int(data.n_bars), str(data.start_date))
        check_size("data.n_assets", int(n_assets), data.n_bars * n_assets * _BAR_BYTES, "prices")
    mc = settings.montecarlo
    if mc is not None:
        check_size("montecarlo.n_paths", int(mc.n_paths), mc.n_paths * _PATH_BYTES, "paths")
    search = settings.search
    if getattr(search.method, "value", search.method) == "grid" and search.space:
        from backtest.search._space import parse_space

        try:
            size = math.prod(len(d.grid()) for d in parse_space(search.space).values())
        except (ConfigError, ValueError, OverflowError):
            return  # a bad space is reported by the search itself, with its own key
        check_size("search.space", size, size * _TRIAL_BYTES, f"a grid of {size:,} trials")


def _check_calendar(n_bars: int, start_date: str) -> None:
    """Synthetic bars are business days: they must end before pandas' last date (2262)."""
    import numpy as np
    import pandas as pd

    try:
        start = pd.Timestamp(start_date)
    except ValueError:
        return  # the data loader names a bad start_date
    last = pd.Timestamp.max.normalize() - pd.Timedelta(days=1)
    room = int(np.busday_count(start.date(), last.date()))
    if n_bars > room:
        raise ConfigError(
            f"data.n_bars={n_bars:,} business days from data.start_date={start_date} run past "
            f"{last.date()}, the last date pandas can hold: at most {room:,}",
            key="data.n_bars",
        )


def check_windows(settings: Any, task: str, strategy: Any, index: Any) -> None:
    """The task's windows fit the data, checked before a run folder or MLflow run exists.

    A walk-forward whose first fold does not fit, a Monte Carlo with no paths, or a
    strategy whose warm-up (its longest lookback) leaves no bar to trade used to fail
    only once the run had started, leaving a folder without ``result.json``.

    Args:
        settings: The typed settings (``RootConfig``).
        task: The job's task (``backtest``, ``search``, ``walkforward``, ``montecarlo``).
        strategy: The strategy with its configured parameters.
        index: The data's bars.

    Raises:
        ConfigError: naming the key (``walkforward.train_bars``, ``montecarlo.n_paths``,
            a strategy parameter) and what would fit.
    """
    if task == "walkforward" and settings.walkforward is not None:
        from backtest.walkforward import make_splits

        make_splits(settings.walkforward, index)  # too short for one fold: a named error
    if settings.montecarlo is not None:
        from backtest.montecarlo._config import check_config

        check_config(settings.montecarlo)
    warmup = getattr(strategy, "warmup_bars", None)
    if isinstance(warmup, int) and task in ("backtest", "montecarlo") and warmup >= len(index) - 1:
        raise ConfigError(
            f"the strategy needs {warmup + 1:,} bars before its first position but the data "
            f"has {len(index):,}: nothing would trade; shorten its lookback or load more data",
            key="strategy",
        )
