"""PNG figures of a Monte Carlo report: the equity fan and the metric histograms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from backtest.montecarlo._config import quantile_label

FAN_FIGURE = "montecarlo_fan.png"
HISTOGRAM_FIGURE = "montecarlo_histograms.png"

# (column, title, scale to display units, unit label)
_PANELS = (
    ("total_return", "Total return", 100.0, "%"),
    ("max_drawdown", "Max drawdown", 100.0, "%"),
    ("sharpe_ratio", "Sharpe ratio (annualised)", 1.0, ""),
    ("cagr", "CAGR", 100.0, "% per year"),
)


@dataclass(frozen=True, slots=True)
class FanValues:
    """What the two Monte Carlo figures draw (the values, not the report holding them).

    Attributes:
        fan: Per-step quantiles of equity (columns from ``quantile_label``, and
            ``observed`` when known), indexed by step.
        paths: One row per path with the :data:`_PANELS` metric columns.
        percentiles: Metric percentiles, indexed by confidence level.
        observed: The observed backtest's metrics.
        percentile_ranks: Where each observed metric falls among the paths (0-100).
        confidence: The confidence levels drawn.
        ruin_drawdown: The ruin threshold (a fraction) and its probability, ``prob_ruin``.
        prob_ruin: Probability of ruin.
        prob_loss: Probability of a loss.
        title: ``method, N paths of H units`` for both titles.
        unit: What a step is (``bar``, ``trade``...).
        fan_paths: How many paths the fan's quantiles come from.
    """

    fan: pd.DataFrame
    paths: pd.DataFrame
    percentiles: pd.DataFrame
    observed: Mapping[str, float]
    percentile_ranks: Mapping[str, float]
    confidence: Sequence[float]
    ruin_drawdown: float
    prob_ruin: float
    prob_loss: float
    title: str
    unit: str
    fan_paths: int


def save_figures(mc: FanValues, directory: Path) -> list[Path]:
    """Draw the fan chart and the histograms of ``mc`` as PNG files in ``directory``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / FAN_FIGURE, directory / HISTOGRAM_FIGURE]

    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=110)
    fan = mc.fan
    x = fan.index.to_numpy()
    levels = sorted(mc.confidence)
    lo, hi = quantile_label(levels[0]), quantile_label(levels[-1])
    if len(levels) > 1:
        ax.fill_between(
            x,
            fan[lo],
            fan[hi],
            color="tab:blue",
            alpha=0.18,
            label=f"{levels[0]:g}th-{levels[-1]:g}th percentile",
        )
    for level in levels:
        name = quantile_label(level)
        is_mid = abs(level - 50.0) < 1e-9
        ax.plot(
            x,
            fan[name],
            color="tab:blue",
            lw=1.8 if is_mid else 0.8,
            ls="-" if is_mid else "--",
            label=f"{level:g}th percentile",
        )
    if "observed" in fan.columns:
        ax.plot(x, fan["observed"], color="black", lw=1.2, label="observed")
    ax.axhline(1.0, color="grey", lw=0.6)
    if np.all(fan[lo].to_numpy() > 0):
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(ScalarFormatter())
        ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_title(
        f"Equity fan — {mc.title}\n(per-{mc.unit} quantiles of the first {mc.fan_paths:,} paths)"
    )
    ax.set_xlabel(f"{mc.unit.capitalize()}s from the start")
    ax.set_ylabel("Equity (growth of 1 unit, log scale)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(paths[0])
    plt.close(fig)

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), dpi=110)
    for ax, (col, title, scale, unit) in zip(axes.ravel(), _PANELS, strict=True):
        values = mc.paths[col].to_numpy(dtype=float) * scale
        values = values[np.isfinite(values)]
        if values.size and np.ptp(values) <= 1e-9 * max(1.0, float(np.abs(values).max())):
            # e.g. terminal wealth under trade_reshuffle: the same on every path
            centre = float(values.mean())
            width = max(1e-3, abs(centre) * 0.05)
            ax.hist(
                values, bins=1, range=(centre - width, centre + width), color="tab:blue", alpha=0.75
            )
            ax.text(
                0.02, 0.95, "the same on every path", transform=ax.transAxes, va="top", fontsize=8
            )
        elif values.size:
            ax.hist(values, bins=60, color="tab:blue", alpha=0.75)
        for level in levels:
            q = mc.percentiles.loc[level, col] * scale
            if np.isfinite(q):
                ax.axvline(q, color="tab:blue", ls="--", lw=0.9)
        obs = mc.observed.get(col, np.nan) * scale
        if np.isfinite(obs):
            ax.axvline(
                obs,
                color="black",
                lw=1.5,
                label=f"observed ({mc.percentile_ranks[col]:.0f}th pct.)",
            )
        if col in ("max_drawdown", "total_return"):
            # the ruin / loss threshold, drawn only when it falls inside the histogram
            at, label = (
                (mc.ruin_drawdown * 100, f"ruin: P = {mc.prob_ruin:.1%}")
                if col == "max_drawdown"
                else (0.0, f"loss: P = {mc.prob_loss:.1%}")
            )
            inside = values.size and values.min() <= at <= values.max()
            if inside:
                ax.axvline(at, color="tab:red", ls=":", lw=1.2, label=label)
            else:
                ax.plot([], [], color="tab:red", ls=":", lw=1.2, label=label)
        ax.set_title(title)
        ax.set_xlabel(f"{title} ({unit})" if unit else title)
        ax.set_ylabel("Paths")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            # "best" named: matplotlib warns when its default "best" takes over a second,
            # which a busy machine's load alone can cause (a histogram has few artists)
            ax.legend(loc="best", fontsize=8)
    pct = ", ".join(f"{lv:g}" for lv in levels)
    fig.suptitle(f"Distribution over paths — {mc.title}\n(dashed: {pct}th percentiles)")
    fig.tight_layout()
    fig.savefig(paths[1])
    plt.close(fig)
    return paths
