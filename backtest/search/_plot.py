"""The search heatmap as a PNG (matplotlib's Agg canvas, imported on first use)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _label(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def draw_heatmap(grid: pd.DataFrame, best: tuple[Any, Any], *, x: str, y: str, metric: str,
                 path: Path, title: str) -> Path:
    """Draw ``grid`` (rows: ``y`` values, columns: ``x`` values) with the best cell marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = grid.to_numpy(dtype=np.float64)
    n_rows, n_cols = values.shape
    fig = Figure(figsize=(min(4 + 0.35 * n_cols, 16), min(3 + 0.3 * n_rows, 12)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    masked = np.ma.masked_invalid(values)
    image = ax.imshow(masked, origin="lower", aspect="auto", cmap="viridis",
                      interpolation="nearest")
    fig.colorbar(image, ax=ax, label=metric)
    step_x = max(1, n_cols // 20)
    step_y = max(1, n_rows // 20)
    ax.set_xticks(range(0, n_cols, step_x))
    ax.set_xticklabels([_label(v) for v in grid.columns[::step_x]], rotation=90)
    ax.set_yticks(range(0, n_rows, step_y))
    ax.set_yticklabels([_label(v) for v in grid.index[::step_y]])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title, fontsize=10)
    if best[0] in grid.columns and best[1] in grid.index:
        col = list(grid.columns).index(best[0])
        row = list(grid.index).index(best[1])
        ax.plot([col], [row], marker="*", markersize=14, color="red",
                markeredgecolor="white", linestyle="none", label="best")
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
