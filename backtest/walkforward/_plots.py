"""Walk-forward figures as PNG files (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

if TYPE_CHECKING:
    from backtest.walkforward._result import WalkForwardResult

_TRAIN, _TEST, _GAP = "#4C72B0", "#DD8452", "#BBBBBB"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _runs(positions: NDArray[np.int64]) -> list[tuple[int, int]]:
    """Contiguous runs ``[start, end)`` of sorted bar positions."""
    if positions.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(positions) > 1)
    starts = np.concatenate(([positions[0]], positions[breaks + 1]))
    ends = np.concatenate((positions[breaks] + 1, [positions[-1] + 1]))
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def fold_chart(result: WalkForwardResult, path: Path) -> Path:
    """One row per fold: its train bars (blue) and test bars (orange) on a time axis.

    Purged or embargoed bars and bars a fold does not use are left blank.
    """
    import matplotlib.dates as mdates

    plt = _pyplot()
    if result.splits is None or result.index is None:
        raise ValueError("the fold chart needs the result's splits and index")
    folds = result.splits.folds
    n = len(folds)
    fig, ax = plt.subplots(figsize=(10, min(0.28 * n + 1.8, 14.0)))
    dates = mdates.date2num(result.index)
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
    what = (
        "CPCV splits" if result.splitter == "cpcv" else f"Walk-forward windows ({result.splitter})"
    )
    ax.set_title(f"{what}: {n} folds", loc="left")
    ax.set_xlabel("Date (train window, then test window, per fold)")
    ax.xaxis_date()
    ax.set_ylim(-0.7, n - 0.3)
    fig.legend(loc="upper right", ncol=2, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def equity_chart(result: WalkForwardResult, path: Path) -> Path:
    """Stitched out-of-sample equity, fold boundaries marked; CPCV: every path."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.8))
    if result.paths is not None:
        for name in result.paths.columns:
            ax.plot((1.0 + result.paths[name]).cumprod(), lw=0.9, alpha=0.7, label=name)
        title = f"CPCV out-of-sample equity: {result.paths.shape[1]} paths"
    else:
        ax.plot(result.equity, color=_TRAIN, lw=1.3, label="out-of-sample equity")
        if len(result.folds) <= 40:
            for start in pd.to_datetime(result.folds["test_start"]).iloc[1:]:
                ax.axvline(start, color=_GAP, lw=0.6, zorder=0)
        title = f"Walk-forward out-of-sample equity: {result.parameter_path}"
    mt, of = result.metrics, result.overfitting

    def fmt(value: float, spec: str) -> str:
        return "n/a" if value != value else format(value, spec)  # NaN -> n/a

    ax.set_title(
        f"{title}\nSharpe {fmt(mt.get('sharpe_ratio', np.nan), '.2f')}, "
        f"CAGR {fmt(mt.get('cagr', np.nan), '.1%')}, "
        f"max drawdown {fmt(mt.get('max_drawdown', np.nan), '.1%')}, "
        f"WFE {fmt(result.efficiency, '.2f')}, DSR {fmt(of.deflated_sharpe, '.2f')}, "
        f"PBO {fmt(of.pbo, '.2f')}, SPA p {fmt(of.spa_pvalue, '.2f')}",
        fontsize=10,
    )
    ax.axhline(1.0, color="black", lw=0.6)
    ax.set_ylabel("Equity (growth of 1 unit, after costs)")
    ax.set_xlabel("Date (out-of-sample test windows)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", frameon=False, fontsize=8, ncol=2)
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
