"""The result of a Monte Carlo run: per-path table, summary statistics, fan, figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.montecarlo._config import quantile_label
from backtest.montecarlo._kernels import METRICS

#: Metrics where a larger value is better; the rest of ``_LOWER_IS_BETTER`` is worse.
_HIGHER_IS_BETTER = ("total_return", "cagr", "sharpe_ratio", "mean_return")
_LOWER_IS_BETTER = ("max_drawdown", "time_under_water", "longest_drawdown_bars")

_TIE_RTOL = 1e-9
PATHS_TABLE = "montecarlo_paths"
FAN_TABLE = "montecarlo_fan"
PERCENTILES_TABLE = "montecarlo_percentiles"


@dataclass(frozen=True, slots=True)
class MonteCarloReport:
    """What a Monte Carlo run found about one strategy's robustness.

    Attributes:
        method: The method's name (``stationary_bootstrap``, ...).
        n_paths: Number of simulated paths.
        horizon_bars: Steps per path (bars, or trades for the trade methods).
        unit: ``"bar"`` or ``"trade"``: what one step of a path is.
        periods_per_year: Steps per year used to annualise (trades per year for the
            trade methods).
        seed: The root seed; the run is reproduced by running again with it.
        confidence: Percentile levels reported, in percent.
        ruin_drawdown: Drawdown counted as ruin.
        paths: One row per path (index ``path``): ``total_return``, ``cagr``,
            ``sharpe_ratio``, ``max_drawdown`` (positive fraction),
            ``time_under_water`` (fraction of steps below the running peak),
            ``longest_drawdown_bars`` (longest stretch below a peak, in steps),
            ``mean_return`` (per step), ``annual_volatility``; ``parameter_jitter``
            adds the parameters each path used.
        percentiles: Rows = confidence levels, columns = metrics (NaN-free paths).
        prob_loss: Share of paths that lose money (total return < 0).
        prob_ruin: Share of paths whose max drawdown is at least ``ruin_drawdown``.
        fan: Equity quantiles per step (index ``bar``, starting at 1 on step 0),
            columns ``p5``... plus ``observed`` when the observed equity has the same
            length. Drawn from the first ``fan_paths`` paths (see :class:`MonteCarloSimulator`).
        fan_paths: How many paths the fan quantiles come from.
        observed: The observed strategy's metrics, computed the same way.
        percentile_ranks: Percent of paths with a metric at or below the observed one.
        p_values: One-sided: the probability, under the simulation, of a result at least
            as good as the observed one (``(1 + hits) / (1 + n)``). For
            ``random_entries`` the Sharpe p-value tests skill against random timing;
            for the bootstraps, centred on the observed data, it is only a location check.
        details: Method-specific facts (fitted drift and volatility, trade counts, ...).
    """

    method: str
    n_paths: int
    horizon_bars: int
    unit: str
    periods_per_year: float
    seed: int | None
    confidence: tuple[float, ...]
    ruin_drawdown: float
    paths: pd.DataFrame
    percentiles: pd.DataFrame
    prob_loss: float
    prob_ruin: float
    fan: pd.DataFrame
    fan_paths: int
    observed: dict[str, float]
    percentile_ranks: dict[str, float]
    p_values: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        """One line: method, paths, observed Sharpe, return, drawdown, loss and ruin."""
        from backtest.report import _display

        return _display.montecarlo_line(
            self.method, self.n_paths, self.horizon_bars, self.unit, self.observed,
            self.percentile_ranks, self.prob_loss, self.prob_ruin,
        )  # fmt: skip

    def _repr_html_(self) -> str:
        """The one line, the report's Monte Carlo facts and the per-metric summary."""
        from backtest.report import _display

        facts = [
            ("method", self.method),
            ("paths", self.n_paths),
            (f"horizon ({self.unit}s)", self.horizon_bars),
            ("seed", self.seed),
            ("prob_loss", self.prob_loss),
            ("prob_ruin", self.prob_ruin),
            ("ruin drawdown", f"{self.ruin_drawdown:.0%}"),
        ]
        return _display.montecarlo_html(repr(self), facts, self.summary())

    def plot(self, dates: Any = None) -> Any:
        """The equity fan over histograms of Sharpe, max drawdown and CAGR (the report's).

        Args:
            dates: The dates of the analysed returns (a ``DatetimeIndex``, a series on
                one, or the ``BacktestResult`` analysed): the fan's x axis becomes dates,
                step 0 one bar before the first. Without them it counts steps.

        Returns:
            A plotly ``Figure``.
        """
        from backtest.report import _montecarlo, _page

        spec = _montecarlo.montecarlo_figure(
            self.fan, self.paths, self.observed, self.percentile_ranks,
            dates_of=self._dates(dates), unit=self.unit,
        )  # fmt: skip
        return _page.to_plotly(spec)

    @staticmethod
    def _dates(dates: Any) -> pd.Index | None:
        """The index of ``dates``: a ``BacktestResult``'s returns, a series' or an index."""
        if hasattr(dates, "returns"):
            dates = dates.returns
        if dates is not None and not isinstance(dates, pd.Index):
            dates = dates.index
        return dates

    def report(self, path: str | Path | None = None, dates: Any = None) -> Path:
        """Write the Monte Carlo's HTML report (the CLI's Monte Carlo section, from this result).

        The observed metrics head the page. With the analysed result's ``dates`` (as for
        :meth:`plot`), the observed equity is drawn on them too (equity, drawdown,
        monthly returns) and the fan is on dates; without, the fan counts steps.

        Args:
            path: The page (a ``.html`` file or a folder); default: a new run directory
                ``outputs/notebook/montecarlo-<time>/`` that ``load_result`` reads back.
            dates: The dates of the analysed returns (a bar method's steps).

        Returns:
            The path of ``report.html``.
        """
        from backtest.report._notebook import write_report
        from backtest.report._performance import equity_frame

        record = {
            "metrics": {k: _num(v) for k, v in self.observed.items()},
            "periods_per_year": self.periods_per_year,
            "montecarlo": self.to_dict(),
        }
        tables: dict[str, pd.DataFrame] = dict(self.tables())
        index = self._dates(dates)
        observed = self.fan["observed"] if "observed" in self.fan.columns else None
        if index is not None and observed is not None and len(index) == len(observed) - 1:
            growth = observed.to_numpy(dtype=np.float64)
            equity = pd.Series(growth[1:], index=index, name="equity")
            returns = pd.Series(growth[1:] / growth[:-1] - 1.0, index=index, name="returns")
            tables["equity"] = equity_frame(returns, equity)
        return write_report("montecarlo", record, tables, path, index=index)

    def summary(self) -> pd.DataFrame:
        """One row per metric: observed, mean, the percentiles, rank and p-value."""
        rows = {}
        for name in METRICS:
            col = self.paths[name]
            row = {"observed": self.observed.get(name, np.nan), "mean": float(col.mean())}
            for level in self.confidence:
                row[quantile_label(level)] = float(self.percentiles.loc[level, name])
            row["percentile_rank"] = self.percentile_ranks.get(name, np.nan)
            row["p_value"] = self.p_values.get(name, np.nan)
            rows[name] = row
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("metric")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary for ``result.json`` (NaN becomes ``None``)."""
        pct = {
            name: {
                quantile_label(lv): _num(self.percentiles.loc[lv, name]) for lv in self.confidence
            }
            for name in METRICS
        }
        return {
            "method": self.method,
            "n_paths": self.n_paths,
            "horizon_bars": self.horizon_bars,
            "unit": self.unit,
            "periods_per_year": _num(self.periods_per_year),
            "seed": self.seed,
            "confidence": list(self.confidence),
            "ruin_drawdown": self.ruin_drawdown,
            "prob_loss": _num(self.prob_loss),
            "prob_ruin": _num(self.prob_ruin),
            "fan_paths": self.fan_paths,
            "mean": {name: _num(self.paths[name].mean()) for name in METRICS},
            "percentiles": pct,
            "observed": {k: _num(v) for k, v in self.observed.items()},
            "percentile_ranks": {k: _num(v) for k, v in self.percentile_ranks.items()},
            "p_values": {k: _num(v) for k, v in self.p_values.items()},
            "details": _plain(self.details),
        }

    def tables(self) -> dict[str, pd.DataFrame]:
        """Parquet tables for the run directory: per-path, fan and percentiles."""
        return {
            PATHS_TABLE: self.paths.reset_index(),
            FAN_TABLE: self.fan.reset_index(),
            PERCENTILES_TABLE: self.percentiles.reset_index(),
        }

    def save_figures(self, directory: str | Path) -> list[Path]:
        """Write ``montecarlo_fan.png`` and ``montecarlo_histograms.png`` into ``directory``.

        Returns:
            The paths written.
        """
        from backtest.montecarlo._figures import FanValues, save_figures

        method = self.method.replace("_", " ")
        values = FanValues(
            fan=self.fan,
            paths=self.paths,
            percentiles=self.percentiles,
            observed=self.observed,
            percentile_ranks=self.percentile_ranks,
            confidence=tuple(self.confidence),
            ruin_drawdown=self.ruin_drawdown,
            prob_ruin=self.prob_ruin,
            prob_loss=self.prob_loss,
            title=f"{method}, {self.n_paths:,} paths of {self.horizon_bars:,} {self.unit}s",
            unit=self.unit,
            fan_paths=self.fan_paths,
        )
        return save_figures(values, Path(directory))

    def write(self, run_dir: str | Path) -> dict[str, Path]:
        """Write the tables (Parquet) and figures (PNG) into a run directory, atomically.

        ``result.json`` is not touched: put :meth:`to_dict` into it.

        Returns:
            Table name (``montecarlo_paths``...) or figure file name
            (``montecarlo_fan.png``...) -> path written.
        """
        from backtest import results

        out = {name: results.write_table(run_dir, name, t) for name, t in self.tables().items()}
        for path in self.save_figures(results.figures_dir(run_dir)):
            out[path.name] = path
        return out


def _num(value: object) -> float | None:
    x = float(value)  # type: ignore[arg-type]
    return x if np.isfinite(x) else None


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return _num(value)
    return value


def rank_and_p_value(sims: NDArray[np.float64], observed: float, name: str) -> tuple[float, float]:
    """Percentile rank of ``observed`` among ``sims`` and its one-sided p-value.

    NaN paths (a flat path has no Sharpe) are left out of both. Values within
    ``1e-9`` (relative) of the observed one count as equal to it.
    """
    valid = sims[~np.isnan(sims)]
    if np.isnan(observed) or valid.size == 0:
        return np.nan, np.nan
    # equal up to rounding counts as a tie (e.g. terminal wealth under trade_reshuffle)
    tie = np.abs(valid - observed) <= _TIE_RTOL * max(1.0, abs(observed))
    at_or_below = (valid < observed) | tie
    rank = 100.0 * float(np.mean(at_or_below))
    if name in _HIGHER_IS_BETTER:
        hits = int(np.sum((valid > observed) | tie))
    elif name in _LOWER_IS_BETTER:
        hits = int(np.sum(at_or_below))
    else:
        return rank, np.nan
    return rank, (1.0 + hits) / (1.0 + valid.size)


def build_report(
    *,
    method: str,
    unit: str,
    periods_per_year: float,
    seed: int | None,
    confidence: Sequence[float],
    ruin_drawdown: float,
    metrics: NDArray[np.float64],
    extra: Mapping[str, NDArray[Any]] | None,
    fan_quantiles: NDArray[np.float64],
    fan_paths: int,
    observed: NDArray[np.float64],
    observed_equity: NDArray[np.float64] | None,
    details: Mapping[str, Any],
) -> MonteCarloReport:
    """Assemble the report from the per-path metric rows and the fan quantiles."""
    n_paths, _ = metrics.shape
    paths = pd.DataFrame(metrics, columns=list(METRICS))
    paths["longest_drawdown_bars"] = paths["longest_drawdown_bars"].astype(np.int64)
    for name, values in (extra or {}).items():
        paths[name] = values
    paths.index.name = "path"
    levels = tuple(float(c) for c in confidence)
    with np.errstate(all="ignore"):
        pct = np.array(
            [
                np.nanpercentile(metrics[:, j], levels)
                if not np.isnan(metrics[:, j]).all()
                else np.full(len(levels), np.nan)
                for j in range(len(METRICS))
            ]
        ).T
    percentiles = pd.DataFrame(
        pct, index=pd.Index(levels, name="percentile"), columns=list(METRICS)
    )
    fan = pd.DataFrame(
        fan_quantiles,
        index=pd.RangeIndex(fan_quantiles.shape[0], name="bar"),
        columns=[quantile_label(lv) for lv in levels],
    )
    if observed_equity is not None and observed_equity.size == fan.shape[0]:
        fan["observed"] = observed_equity
    obs = {name: float(observed[j]) for j, name in enumerate(METRICS)}
    ranks, pvals = {}, {}
    for j, name in enumerate(METRICS):
        ranks[name], p = rank_and_p_value(metrics[:, j], obs[name], name)
        if not np.isnan(p):
            pvals[name] = p
    col = METRICS.index
    return MonteCarloReport(
        method=method,
        n_paths=n_paths,
        horizon_bars=fan.shape[0] - 1,
        unit=unit,
        periods_per_year=float(periods_per_year),
        seed=seed,
        confidence=levels,
        ruin_drawdown=float(ruin_drawdown),
        paths=paths,
        percentiles=percentiles,
        prob_loss=float(np.mean(metrics[:, col("total_return")] < 0.0)),
        prob_ruin=float(np.mean(metrics[:, col("max_drawdown")] >= ruin_drawdown)),
        fan=fan,
        fan_paths=fan_paths,
        observed=obs,
        percentile_ranks=ranks,
        p_values=pvals,
        details=dict(details),
    )
