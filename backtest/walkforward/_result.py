"""What a walk-forward returns: folds, stitched out-of-sample results, statistics."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backtest.overfitting import DegradationResult
from backtest.walkforward._splitters import Splits


@dataclass(frozen=True, slots=True)
class WalkForwardOverfitting:
    """Overfitting statistics of a walk-forward, from the trials its searches ran.

    Attributes:
        n_trials: Trials run over all folds (each fold's search counts its own).
        deflated_sharpe: Mean over folds of the deflated Sharpe ratio of the chosen
            parameters' in-sample Sharpe, each with its fold's number of trials and
            the variance of their in-sample Sharpes (Bailey & López de Prado 2014).
        deflated_sharpe_min: The lowest fold value.
        pbo: Mean over folds of the probability of backtest overfitting by CSCV over
            the fold's (train bars x trials) return matrix; NaN when not computed.
        pbo_walkforward: Share of folds whose chosen parameters ranked in the bottom
            half of all trials on the test window (the walk-forward's own PBO).
        oos_probabilistic_sharpe: Probabilistic Sharpe ratio (against 0) of the
            stitched out-of-sample returns: no selection happened out of sample, so
            no deflation is needed.
        degradation: Regression of each fold's out-of-sample Sharpe on its
            in-sample Sharpe (annualised), with the share of losing folds.
        effective_trials: Effective independent trials over all folds (the sum of
            each fold's Li & Ji eigenvalue count, beside ``n_trials``); NaN unless
            the optimizer's ``effective_trials`` is on.
        deflated_sharpe_effective: Mean over folds of the deflated Sharpe ratio with
            the fold's effective number of trials as N (NaN as ``effective_trials``).
        spa_pvalue: Mean over folds of Hansen's SPA p-value of the chosen set
            against the benchmark (flat unless given); NaN unless the optimizer's
            ``spa_bootstrap`` is positive.
        spa_pvalue_max: The highest fold value (the least convincing fold).
        reality_check_pvalue: Mean over folds of White's Reality Check p-value.
    """

    n_trials: int
    deflated_sharpe: float
    deflated_sharpe_min: float
    pbo: float
    pbo_walkforward: float
    oos_probabilistic_sharpe: float
    degradation: DegradationResult
    effective_trials: float = math.nan
    deflated_sharpe_effective: float = math.nan
    spa_pvalue: float = math.nan
    spa_pvalue_max: float = math.nan
    reality_check_pvalue: float = math.nan

    def as_dict(self) -> dict[str, float]:
        """Flat ``{name: float}`` for ``result.json`` and the summary table."""
        d = self.degradation
        return {
            "n_trials": float(self.n_trials),
            "deflated_sharpe": self.deflated_sharpe,
            "deflated_sharpe_min": self.deflated_sharpe_min,
            "effective_trials": self.effective_trials,
            "deflated_sharpe_effective": self.deflated_sharpe_effective,
            "spa_pvalue": self.spa_pvalue,
            "spa_pvalue_max": self.spa_pvalue_max,
            "reality_check_pvalue": self.reality_check_pvalue,
            "pbo": self.pbo,
            "pbo_walkforward": self.pbo_walkforward,
            "oos_probabilistic_sharpe": self.oos_probabilistic_sharpe,
            "degradation_slope": d.slope,
            "degradation_r_squared": d.r_squared,
            "oos_loss_share": d.prob_oos_loss,
        }


@dataclass(frozen=True, slots=True)
class WalkForwardResult:
    """A walk-forward optimisation: what was chosen where, and how it did out of sample.

    Attributes:
        folds: One row per fold: ``fold``, train and test first/last timestamps and
            bar counts, the chosen parameters (one column each), ``n_trials``,
            ``is_score`` (the search metric in sample), ``is_sharpe``, ``is_cagr``,
            ``is_dsr``, ``effective_trials``, ``is_dsr_effective``, ``spa_pvalue``,
            ``reality_check_pvalue``, ``pbo`` (CPCV also ``test_groups``, e.g. ``"0,3"``: the test
            set is those groups, not the span from its first to its last bar),
            ``oos_rank`` (relative rank of the chosen set among
            all trials on the test window, in (0, 1)) and ``oos_<metric>`` for every
            return metric of its test window.
        trials: Every trial of every fold: ``fold``, the parameters, ``score``.
        returns: Stitched out-of-sample returns (each bar traded with the parameters
            chosen by the latest fold before it); CPCV: its first path.
        equity: ``(1 + returns).cumprod()``.
        positions: Stitched positions per asset (empty when the evaluator has none).
        trades: Trades of the stitched positions (empty without positions).
        metrics: Every metric of the stitched out-of-sample returns.
        efficiency: Walk-forward efficiency: out-of-sample CAGR over the mean
            in-sample CAGR of the chosen parameters (Pardo); NaN when that is <= 0.
        sharpe_efficiency: The same with annualised Sharpe ratios.
        stability: Per parameter: how often each value was chosen (``counts``),
            ``mode``, ``mode_share``, ``change_rate`` (share of fold-to-fold changes),
            ``mean_abs_step`` (mean move between consecutive folds) and
            ``relative_step`` (that move over the searched range).
        overfitting: :class:`WalkForwardOverfitting`.
        splitter: ``rolling``, ``anchored`` or ``cpcv``.
        metric: The search metric.
        direction: ``maximize`` or ``minimize``.
        paths: CPCV: one column of out-of-sample returns per path; else None.
        path_metrics: CPCV: one row of metrics per path; else None.
        periods_per_year: Bars per year used to annualise.
        splits: The folds as bar positions (for charts and reuse).
        index: The timestamps those positions refer to.
        figures: PNG files written (fold chart, out-of-sample equity).
        benchmark: The evaluator's ``benchmark`` (``engine.benchmark``) over the
            out-of-sample bars, bought at their first close (growth of 1); ``metrics``
            then holds ``alpha``, ``beta``, ``information_ratio``, ``tracking_error``
            and ``excess_return`` of the stitched returns against it.
        benchmark_metrics: The benchmark's own return metrics over those bars.
        verified_folds: The folds whose chosen set was re-run alone through
            :func:`~backtest.engine.simulate` and gave the fold's in-sample score and
            total return (:class:`~backtest.search._truth.FoldTruth`); every fold's
            traded run was compared with its searched returns either way.
    """

    folds: pd.DataFrame
    trials: pd.DataFrame
    returns: pd.Series
    equity: pd.Series
    positions: pd.DataFrame
    trades: pd.DataFrame
    metrics: dict[str, float]
    efficiency: float
    sharpe_efficiency: float
    stability: dict[str, dict[str, Any]]
    overfitting: WalkForwardOverfitting
    splitter: str
    metric: str
    direction: str
    paths: pd.DataFrame | None = None
    path_metrics: pd.DataFrame | None = None
    periods_per_year: int = 252
    splits: Splits | None = None
    index: pd.DatetimeIndex | None = None
    figures: tuple[Path, ...] = field(default_factory=tuple)
    benchmark: pd.Series | None = None
    benchmark_metrics: dict[str, float] = field(default_factory=dict)
    verified_folds: tuple[int, ...] = ()

    def __repr__(self) -> str:
        """One line: splitter, folds, last parameters, out-of-sample Sharpe, return, drawdown."""
        from backtest.report import _display

        return _display.walkforward_line(
            self.splitter, len(self.folds), self.overfitting.n_trials, self.metrics,
            self.efficiency, self.last_params, self.returns.index,
        )  # fmt: skip

    def _repr_html_(self) -> str:
        """The one line, the report's walk-forward facts, the folds and the OOS metrics."""
        from backtest.report import _display

        facts = [
            ("splitter", self.splitter),
            ("folds", len(self.folds)),
            ("trials", self.overfitting.n_trials),
            ("metric", f"{self.metric} ({self.direction})"),
            ("walk-forward efficiency (CAGR)", self.efficiency),
            ("walk-forward efficiency (Sharpe)", self.sharpe_efficiency),
        ]
        names = [c for c in self.trials.columns if c not in ("fold", "score")]
        return _display.walkforward_html(
            repr(self), facts, self.metrics, self.folds, names, self.metric
        )

    def plot(self) -> Any:
        """The stitched out-of-sample equity over each fold's train and test windows.

        Returns:
            A plotly ``Figure`` with a date axis (the report's walk-forward figure).
        """
        from backtest.report import _page, _walkforward

        return _page.to_plotly(_walkforward.walkforward_figure(self.equity, self.folds))

    def report(self, path: str | Path | None = None) -> Path:
        """Write the walk-forward's HTML report (the CLI's page, from this result).

        Args:
            path: The page (a ``.html`` file or a folder); default: a new run directory
                ``outputs/notebook/walkforward-<time>/`` that ``load_result`` reads back.

        Returns:
            The path of ``report.html``.
        """
        from backtest.report._notebook import write_report
        from backtest.report._performance import equity_frame

        record = {
            "params": {"walk-forward": self.parameter_path},
            "metrics": self.metrics,
            "periods_per_year": self.periods_per_year,
            "objective": self.metrics.get(self.metric),
            "walkforward": self.summary(),
            "overfitting": self.overfitting.as_dict(),
            **({"benchmark_metrics": self.benchmark_metrics} if self.benchmark_metrics else {}),
        }
        tables = {
            "equity": equity_frame(self.returns, self.equity, self.benchmark),
            "trades": self.trades,
            "positions": self.positions,
            "folds": self.folds,
            "trials": self.trials,
        }
        symbols = [str(c) for c in self.positions.columns]
        return write_report(
            "walkforward", record, tables, path, index=self.returns.index, symbols=symbols
        )

    @property
    def last_params(self) -> dict[str, Any]:
        """The parameters chosen by the last fold: what you would trade next."""
        names = [c for c in self.trials.columns if c not in ("fold", "score")]
        row = self.folds.iloc[-1]
        return {n: _plain(row[n]) for n in names}

    @property
    def parameter_path(self) -> str:
        """The parameters each fold traded, in fold order: the label of the stitched result.

        The stitched out-of-sample result traded every fold's choice in turn, not one
        parameter set; e.g. ``lookback/skip 126/5 → 63/10 ×2 → 252/0 (4 folds)``.
        """
        names = [c for c in self.trials.columns if c not in ("fold", "score")]
        return parameter_path(self.folds, names)

    def summary(self) -> dict[str, Any]:
        """JSON-able headline numbers for ``result.json`` (``walkforward`` section)."""
        return {
            "splitter": self.splitter,
            "n_folds": len(self.folds),
            "metric": self.metric,
            "direction": self.direction,
            "efficiency": self.efficiency,
            "sharpe_efficiency": self.sharpe_efficiency,
            "oos_metrics": dict(self.metrics),
            "stability": self.stability,
            "overfitting": self.overfitting.as_dict(),
            "last_params": self.last_params,
            "parameter_path": self.parameter_path,
            "n_paths": None if self.paths is None else self.paths.shape[1],
        }

    def save_figures(self, directory: str | Path) -> tuple[Path, ...]:
        """Write ``walkforward_folds.png`` and ``walkforward_equity.png`` to ``directory``."""
        from backtest.walkforward._plots import equity_chart, fold_chart

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        if self.splits is None or self.index is None:
            raise ValueError("the fold chart needs the result's splits and index")
        of = self.overfitting
        stats = {
            **{k: self.metrics.get(k, np.nan) for k in ("sharpe_ratio", "cagr", "max_drawdown")},
            "efficiency": self.efficiency,
            "deflated_sharpe": of.deflated_sharpe,
            "pbo": of.pbo,
            "spa_pvalue": of.spa_pvalue,
        }
        return (
            fold_chart(self.splits.folds, self.index, self.splitter, out / "walkforward_folds.png"),
            equity_chart(
                out / "walkforward_equity.png",
                equity=self.equity,
                test_starts=list(self.folds["test_start"]) if len(self.folds) else [],
                paths=self.paths,
                parameter_path=self.parameter_path,
                stats=stats,
            ),
        )


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value (for JSON and strategy constructors)."""
    return value.item() if isinstance(value, np.generic) else value


def parameter_stability(
    chosen: pd.DataFrame, candidates: pd.DataFrame
) -> dict[str, dict[str, Any]]:
    """How often each value was chosen and how far choices move between folds.

    Args:
        chosen: One row per fold, one column per parameter.
        candidates: Every parameter set searched (for the searched range).

    Returns:
        ``{parameter: {counts, mode, mode_share, change_rate, mean_abs_step,
        relative_step}}``; the steps are NaN for non-numeric parameters.

    Examples:
        >>> chosen = pd.DataFrame({"lookback": [20, 20, 60, 20]})
        >>> s = parameter_stability(chosen, pd.DataFrame({"lookback": [20, 60, 120]}))
        >>> s["lookback"]["mode"], s["lookback"]["change_rate"], s["lookback"]["relative_step"]
        (20, 0.6666666666666666, 0.26666666666666666)
    """
    out: dict[str, dict[str, Any]] = {}
    for name in chosen.columns:
        col = chosen[name]
        counts = col.value_counts(sort=True, dropna=False)  # (None: a searched option off)
        values = col.tolist()
        changes = [a != b for a, b in itertools.pairwise(values)]
        numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
        step = span = math.nan
        if numeric and len(values) > 1:
            step = float(np.mean(np.abs(np.diff(col.to_numpy(dtype=np.float64)))))
        if numeric and name in candidates:
            cand = candidates[name].to_numpy(dtype=np.float64)
            span = float(cand.max() - cand.min())
        out[str(name)] = {
            "counts": {str(k): int(v) for k, v in counts.items()},
            "mode": _plain(counts.index[0]),
            "mode_share": float(counts.iloc[0] / len(col)),
            "change_rate": float(np.mean(changes)) if changes else math.nan,
            "mean_abs_step": step,
            "relative_step": step / span if span and span > 0 else math.nan,
        }
    return out


def walkforward_efficiency(oos: float, in_sample: Sequence[float]) -> float:
    """Out-of-sample performance over the mean in-sample performance (NaN if that <= 0)."""
    values = np.asarray(in_sample, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0 or not math.isfinite(oos):
        return math.nan
    mean = float(values.mean())
    return oos / mean if mean > 0 else math.nan


def parameter_path(folds: pd.DataFrame, param_names: Sequence[str]) -> str:
    """The parameters each fold traded, in fold order, repeats collapsed.

    The headline of a walk-forward is the stitched out-of-sample result, which traded
    every fold's choice in turn, not one parameter set: its label is this path.

    Examples:
        >>> import pandas as pd
        >>> folds = pd.DataFrame({"lookback": [126, 63, 63, 252], "skip": [5, 10, 10, 0]})
        >>> parameter_path(folds, ["lookback", "skip"])
        'lookback/skip 126/5 → 63/10 ×2 → 252/0 (4 folds)'
    """
    chosen = ["/".join(str(row[p]) for p in param_names) for row in folds.to_dict("records")]
    steps: list[list[Any]] = []
    for value in chosen:
        if steps and steps[-1][0] == value:
            steps[-1][1] += 1
        else:
            steps.append([value, 1])
    path = " → ".join(f"{v} ×{n}" if n > 1 else str(v) for v, n in steps)
    return f"{'/'.join(param_names)} {path} ({len(chosen)} folds)"
