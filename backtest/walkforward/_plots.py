"""Walk-forward figures as PNG files (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

_TRAIN, _TEST, _GAP = "#4C72B0", "#DD8452", "#BBBBBB"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: Path) -> Path:
    """Date ticks slanted, layout tightened, ``fig`` written to ``path`` (folders made), closed."""
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _runs(positions: NDArray[np.int64]) -> list[tuple[int, int]]:
    """Contiguous runs ``[start, end)`` of sorted bar positions."""
    if positions.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(positions) > 1)
    starts = np.concatenate(([positions[0]], positions[breaks + 1]))
    ends = np.concatenate((positions[breaks] + 1, [positions[-1] + 1]))
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def fold_chart(folds: Sequence[Any], index: pd.DatetimeIndex, splitter: str, path: Path) -> Path:
    """One row per fold: its train bars (blue) and test bars (orange) on a time axis.

    ``folds`` have ``fold``, ``train`` and ``test`` (bar positions into ``index``).
    Purged or embargoed bars and bars a fold does not use are left blank.
    """
    import matplotlib.dates as mdates

    plt = _pyplot()
    n = len(folds)
    fig, ax = plt.subplots(figsize=(10, min(0.28 * n + 1.8, 14.0)))
    dates = mdates.date2num(index)
    step = float(np.median(np.diff(dates))) if len(dates) > 1 else 1.0
    bar_h = 0.7 if n <= 40 else 0.9
    for colour, attr, label in ((_TRAIN, "train", "train"), (_TEST, "test", "test")):
        ys, lefts, widths = [], [], []
        for i, fold in enumerate(folds):
            for lo, hi in _runs(getattr(fold, attr)):
                ys.append(n - 1 - i)
                lefts.append(dates[lo])
                widths.append(dates[hi - 1] - dates[lo] + step)
        ax.barh(ys, widths, left=lefts, height=bar_h, color=colour, label=label)
    if n <= 40:
        ax.set_yticks(range(n))
        ax.set_yticklabels([f"fold {f.fold}" for f in folds][::-1])
    else:
        ax.set_yticks([])
        ax.set_ylabel(f"{n} folds, the first at the top")
    what = "CPCV splits" if splitter == "cpcv" else f"Walk-forward windows ({splitter})"
    ax.set_title(f"{what}: {n} folds", loc="left")
    ax.set_xlabel("Date (train window, then test window, per fold)")
    ax.xaxis_date()
    ax.set_ylim(-0.7, n - 0.3)
    fig.legend(loc="upper right", ncol=2, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return _save(plt, fig, path)


def equity_chart(
    path: Path,
    *,
    equity: pd.Series,
    test_starts: Sequence[Any],
    paths: pd.DataFrame | None,
    parameter_path: str,
    stats: Mapping[str, float],
) -> Path:
    """Stitched out-of-sample equity, fold boundaries marked; CPCV: every path.

    Args:
        path: The PNG to write.
        equity: Stitched out-of-sample equity (walk-forward).
        test_starts: Each fold's first test timestamp (boundaries drawn up to 40 folds).
        paths: CPCV's per-path returns (drawn instead of ``equity``), or ``None``.
        parameter_path: The chosen parameters' path, for the title.
        stats: ``sharpe_ratio``, ``cagr``, ``max_drawdown``, ``efficiency``,
            ``deflated_sharpe``, ``pbo``, ``spa_pvalue`` (NaN prints as n/a).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.8))
    if paths is not None:
        for name in paths.columns:
            ax.plot((1.0 + paths[name]).cumprod(), lw=0.9, alpha=0.7, label=name)
        title = f"CPCV out-of-sample equity: {paths.shape[1]} paths"
    else:
        ax.plot(equity, color=_TRAIN, lw=1.3, label="out-of-sample equity")
        if len(test_starts) <= 40:
            for start in pd.to_datetime(pd.Series(list(test_starts))).iloc[1:]:
                ax.axvline(start, color=_GAP, lw=0.6, zorder=0)
        title = f"Walk-forward out-of-sample equity: {parameter_path}"

    def fmt(key: str, spec: str) -> str:
        value = stats.get(key, np.nan)
        return "n/a" if value != value else format(value, spec)  # NaN -> n/a

    ax.set_title(
        f"{title}\nSharpe {fmt('sharpe_ratio', '.2f')}, CAGR {fmt('cagr', '.1%')}, "
        f"max drawdown {fmt('max_drawdown', '.1%')}, WFE {fmt('efficiency', '.2f')}, "
        f"DSR {fmt('deflated_sharpe', '.2f')}, PBO {fmt('pbo', '.2f')}, "
        f"SPA p {fmt('spa_pvalue', '.2f')}",
        fontsize=10,
    )
    ax.axhline(1.0, color="black", lw=0.6)
    ax.set_ylabel("Equity (growth of 1 unit, after costs)")
    ax.set_xlabel("Date (out-of-sample test windows)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", frameon=False, fontsize=8, ncol=2)
    return _save(plt, fig, path)
