"""The headline backtest: equity and drawdown, prices with trades, trades, months, rolling."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from backtest.report._page import (
    COLORS,
    MAX_POINTS,
    Page,
    dates,
    figure_spec,
    note,
    num,
    scale_buttons,
    table,
    thin_positions,
)
from backtest.report._summary import benchmark_curve

MAX_TRADE_ROWS = 200
MAX_PRICE_ASSETS = 6
# Exits by a rule rather than by the strategy's signal, marked apart on the price panel.
RULE_EXITS = ("stop_loss", "take_profit", "trailing_stop", "max_bars", "session_end")


def thinning_note(n: int) -> str:
    """The sentence that says a series was thinned for display, or nothing."""
    if n <= MAX_POINTS:
        return ""
    return note(
        f"Series of {n:,} bars are thinned for display to about {MAX_POINTS:,} points "
        "(every k-th bar plus each stretch's high and low); the Parquet tables in the run "
        "directory hold every bar."
    )


MAX_MARKED_TRADES = 500
"""Most trades marked on the equity curve; more are thinned to every k-th (said on the page)."""


def equity_frame(
    returns: pd.Series,
    equity: pd.Series,
    benchmark: pd.Series | None = None,
    *,
    capital: float | None = None,
) -> pd.DataFrame:
    """The ``equity`` table a run directory stores.

    Columns: ``returns`` and ``equity`` (growth of 1), ``benchmark`` (its growth of 1)
    when there is one; with ``capital`` (``engine.initial_capital``) also the book in
    currency: ``equity_value`` (``capital * equity``) and ``drawdown_value`` (the value
    less its running peak, the initial capital counting as one, as in ``max_drawdown``;
    <= 0).

    Examples:
        >>> idx = pd.bdate_range("2024-01-01", periods=3)
        >>> eq = pd.Series([1.0, 0.9, 1.2], index=idx)
        >>> frame = equity_frame(eq.pct_change().fillna(0.0), eq, capital=1000.0)
        >>> frame["equity_value"].tolist(), frame["drawdown_value"].round(6).tolist()
        ([1000.0, 900.0, 1200.0], [0.0, -100.0, 0.0])
    """
    frame = pd.DataFrame({"returns": returns, "equity": equity})
    if benchmark is not None:
        frame["benchmark"] = benchmark
    if capital is not None:
        value = frame["equity"].astype(np.float64) * float(capital)
        frame["equity_value"] = value
        frame["drawdown_value"] = value - np.maximum(value.cummax(), float(capital))
    return frame


def equity_figure(equity: pd.DataFrame, trades: pd.DataFrame | None = None) -> dict[str, Any]:
    """Equity (log-scale toggle) with trade marks and the benchmark, over the drawdown.

    Args:
        equity: The ``equity`` table (:func:`equity_frame`): ``equity``, ``returns`` and
            optionally ``benchmark`` (an equity curve or per-bar returns), on a date index.
        trades: The trades table; entries and exits are marked on the equity curve at
            their bars (at most ``MAX_MARKED_TRADES`` trades).

    Returns:
        The figure (:func:`~backtest.report._page.figure_spec`); its traces are
        ``strategy``, ``benchmark`` (when there is one), ``entries``, ``exits``,
        ``rule exits`` (when a rule closed a trade) and ``drawdown``, last. With an
        ``equity_value`` column (``engine.initial_capital`` set) the equity, the
        benchmark and the drawdown are drawn in currency (the drawdown's hover adds its
        fraction of the peak); otherwise as growth of 1 and a fraction.
    """
    growth = equity["equity"].astype(np.float64)
    frac = growth / growth.cummax() - 1.0
    money = "equity_value" in equity.columns
    scale = float(equity["equity_value"].iloc[0] / growth.iloc[0]) if money else 1.0
    eq = growth * scale
    drawdown = equity["drawdown_value"].astype(np.float64) if money else frac
    pos = thin_positions(len(eq), frac.to_numpy())
    x = dates(eq.index[pos])
    share = num((drawdown / (eq - drawdown)).to_numpy()[pos]) if money else []
    traces: list[dict[str, Any]] = [
        {"type": "scatter", "x": x, "y": num(eq.to_numpy()[pos]), "name": "strategy",
         "line": {"color": COLORS[0], "width": 1.5}},
    ]  # fmt: skip
    bench = benchmark_curve(equity)
    if bench is not None:
        bench = bench.reindex(eq.index) * scale
        traces.append(
            {"type": "scatter", "x": x, "y": num(bench.to_numpy()[pos]), "name": "benchmark",
             "line": {"color": "#6b7280", "width": 1.2, "dash": "dot"}}
        )  # fmt: skip
    if trades is not None and len(trades):
        traces.extend(_equity_marks(eq, marked_trades(trades)))
    dd_trace: dict[str, Any] = {
        "type": "scatter", "x": x, "y": num(drawdown.to_numpy()[pos]), "name": "drawdown",
        "yaxis": "y2", "fill": "tozeroy", "line": {"color": COLORS[3], "width": 1},
    }  # fmt: skip
    if money:  # the fraction of the peak beside the amount
        dd_trace["customdata"] = share
        dd_trace["hovertemplate"] = "%{y:,.0f} (%{customdata:.2%})<extra>drawdown</extra>"
    traces.append(dd_trace)
    unit = f" (currency; initial capital {scale:,.0f})" if money else ""
    layout = {
        "xaxis": {"anchor": "y2", "rangeslider": {"visible": False}, "type": "date"},
        "yaxis": {
            "domain": [0.34, 1.0],
            "title": {"text": f"equity{unit}"},
            "type": "linear",
            **({"tickformat": ",.0f"} if money else {}),
        },
        "yaxis2": {
            "domain": [0.0, 0.28],
            "title": {"text": "drawdown" + (" (currency)" if money else "")},
            "tickformat": ",.0f" if money else ".0%",
        },
        "updatemenus": scale_buttons(1.22),
    }
    return figure_spec(traces, layout, height=520)


def marked_trades(trades: pd.DataFrame) -> pd.DataFrame:
    """The trades marked on the equity curve: all, or every k-th of more than the limit."""
    if len(trades) <= MAX_MARKED_TRADES:
        return trades
    return trades.iloc[:: math.ceil(len(trades) / MAX_MARKED_TRADES)]


def _equity_marks(eq: pd.Series, trades: pd.DataFrame) -> list[dict[str, Any]]:
    """Entries, signal exits and rule exits at the equity of their bars."""
    reason = (
        trades["exit_reason"].astype(str)
        if "exit_reason" in trades.columns
        else pd.Series("signal", index=trades.index)
    )
    is_open = trades.get("is_open", pd.Series(False, index=trades.index)).astype(bool)
    closed = trades[~is_open.to_numpy()]
    rule = reason.loc[closed.index].isin(RULE_EXITS).to_numpy()

    def at(times: pd.Series) -> list[float | None]:
        when = pd.DatetimeIndex(pd.to_datetime(times))
        return num(eq.reindex(when, method="ffill").to_numpy())

    marks = [
        {"type": "scatter", "mode": "markers", "name": "entries", "x": dates(trades["entry_time"]),
         "y": at(trades["entry_time"]), "text": mark_text(trades, "entry"),
         "hovertemplate": "%{text}<extra></extra>",
         "marker": {"symbol": "triangle-up", "size": 8, "color": COLORS[2]}},
    ]  # fmt: skip
    for name, rows, symbol, color in (
        ("exits", closed[~rule], "triangle-down", COLORS[3]),
        ("rule exits", closed[rule], "x", "#111827"),
    ):
        if name == "rule exits" and not len(rows):
            continue
        marks.append(
            {"type": "scatter", "mode": "markers", "name": name, "x": dates(rows["exit_time"]),
             "y": at(rows["exit_time"]), "text": mark_text(rows, "exit"),
             "hovertemplate": "%{text}<extra></extra>",
             "marker": {"symbol": symbol, "size": 8, "color": color}}
        )  # fmt: skip
    return marks


def mark_text(trades: pd.DataFrame, what: str) -> list[str]:
    """The hover text of each trade's entry (``what="entry"``) or exit mark.

    One line for the trade (asset, side, the mark), one for its entry order (its type,
    the date of the bar that decided it, the date of the bar it filled in), one for its
    exit (the reason and the date; ``open`` for a trade still held at the end). Parts
    the trades table lacks (a run from before orders were recorded) are left out.

    Examples:
        >>> t = pd.DataFrame({"asset": ["SPY"], "direction": [1],
        ...     "entry_time": pd.to_datetime(["2024-01-03"]),
        ...     "exit_time": pd.to_datetime(["2024-01-10"]), "is_open": [False],
        ...     "exit_reason": ["stop_loss"], "order_type": ["stop"],
        ...     "decision_time": pd.to_datetime(["2024-01-02"])})
        >>> mark_text(t, "exit")[0].split("<br>")
        ['SPY long exit', 'stop order decided 2024-01-02, filled 2024-01-03', 'exit stop_loss 2024-01-10']
    """  # noqa: E501
    n = len(trades)

    def column(name: str, default: object) -> list[Any]:
        return list(trades[name]) if name in trades.columns else [default] * n

    def day(name: str) -> list[str | None]:
        return [*dates(trades[name])] if name in trades.columns else [None] * n

    lines = []
    for asset, side, kind, decided, filled, reason, exited, is_open in zip(
        column("asset", ""), column("direction", 1), column("order_type", None),
        day("decision_time"), day("entry_time"), column("exit_reason", None), day("exit_time"),
        column("is_open", False), strict=True,
    ):  # fmt: skip
        head = f"{asset} {'long' if float(side) >= 0 else 'short'} {what}".strip()
        order = " ".join(
            part
            for part in (
                f"{kind} order" if kind is not None else "entry",
                f"decided {decided}," if decided is not None else "",
                f"filled {filled}" if filled is not None else "",
            )
            if part
        )
        if bool(is_open):
            out = "open at the end"
        else:
            out = " ".join(str(p) for p in ("exit", reason, exited) if p is not None)
        lines.append("<br>".join((head, order.rstrip(","), out)))
    return lines


def equity_section(
    page: Page,
    equity: pd.DataFrame,
    title: str = "Equity and drawdown",
    trades: pd.DataFrame | None = None,
) -> None:
    """The :func:`equity_figure` with its notes."""
    eq = equity["equity"]
    pos = thin_positions(len(eq), (eq / eq.cummax() - 1.0).to_numpy())
    page.data["thinned"] = {**page.data.get("thinned", {}), "equity": [len(eq), len(pos)]}
    marked = "" if trades is None or not len(trades) else (
        " Triangles: entries (up) and exits (down) at the equity of their bar; crosses: exits "
        "by a rule (stop loss, take profit, trailing stop, holding limit, session end). "
        "Hover a mark for its entry order (type, decision and fill dates) and exit reason."
        + (f" One in {math.ceil(len(trades) / MAX_MARKED_TRADES)} of the {len(trades):,} "
           "trades is marked." if len(trades) > MAX_MARKED_TRADES else "")
    )  # fmt: skip
    page.section(
        "equity",
        title,
        page.add(equity_figure(equity, trades)),
        note(
            "Drag to zoom, double-click to reset; the buttons switch the equity axis to log."
            + marked
        ),
        thinning_note(len(eq)),
    )


def price_section(page: Page, prices: pd.DataFrame, trades: pd.DataFrame) -> None:
    """Closes of one asset (picker) with its entries, exits and rule (stop) exits."""
    if prices.empty:
        return
    traded = list(trades["asset"].astype(str).value_counts().index) if len(trades) else []
    assets = [a for a in traded if a in prices.columns] + [
        a for a in prices.columns if a not in traded
    ]
    assets = assets[:MAX_PRICE_ASSETS]
    traces: list[dict[str, Any]] = []
    groups: list[int] = []
    for i, asset in enumerate(assets):
        close = prices[asset].dropna()
        pos = thin_positions(len(close), close.to_numpy())
        visible = i == 0
        traces.append(
            {"type": "scatter", "x": dates(close.index[pos]), "y": num(close.to_numpy()[pos]),
             "name": f"{asset} close", "visible": visible, "line": {"color": COLORS[0]}}
        )  # fmt: skip
        mine = trades[trades["asset"].astype(str) == asset] if len(trades) else trades
        marks = _trade_marks(mine)
        for mark in marks:
            mark["visible"] = visible
        traces.extend(marks)
        groups.append(1 + len(marks))
    buttons = []
    start = 0
    for asset, size in zip(assets, groups, strict=True):
        vis = [False] * len(traces)
        vis[start : start + size] = [True] * size
        buttons.append({"label": asset, "method": "update", "args": [{"visible": vis}]})
        start += size
    layout: dict[str, Any] = {"yaxis": {"title": {"text": "close"}}, "hovermode": "closest"}
    if len(assets) > 1:
        layout["updatemenus"] = [
            {"buttons": buttons, "x": 0.0, "y": 1.22, "xanchor": "left", "showactive": True}
        ]
    page.section(
        "prices",
        "Prices and trades",
        page.figure(traces, layout, height=420),
        note(
            f"Pick an asset in the menu (the {len(assets)} most traded). Triangles up: "
            "entries; triangles down: exits on the strategy's signal; crosses: exits by a "
            "rule (stop loss, take profit, trailing stop, holding limit, session end). Hover "
            "a mark for its entry order (type, decision and fill dates) and exit reason."
        ),
        thinning_note(len(prices)),
    )


def _trade_marks(trades: pd.DataFrame) -> list[dict[str, Any]]:
    if trades.empty:
        return []
    reason = (
        trades["exit_reason"].astype(str)
        if "exit_reason" in trades.columns
        else pd.Series("signal", index=trades.index)
    )
    closed = trades[~trades.get("is_open", pd.Series(False, index=trades.index)).astype(bool)]
    rule = closed[reason.loc[closed.index].isin(RULE_EXITS)]
    plain = closed[~reason.loc[closed.index].isin(RULE_EXITS)]
    hover = "%{text}<br>price %{y:,.4~f}<extra></extra>"
    marks = [
        {"type": "scatter", "mode": "markers", "name": "entry", "x": dates(trades["entry_time"]),
         "y": num(trades["entry_price"]), "text": mark_text(trades, "entry"),
         "hovertemplate": hover,
         "marker": {"symbol": "triangle-up", "size": 9, "color": COLORS[2]}},
        {"type": "scatter", "mode": "markers", "name": "exit", "x": dates(plain["exit_time"]),
         "y": num(plain["exit_price"]), "text": mark_text(plain, "exit"), "hovertemplate": hover,
         "marker": {"symbol": "triangle-down", "size": 9, "color": COLORS[3]}},
    ]  # fmt: skip
    if len(rule):
        marks.append(
            {"type": "scatter", "mode": "markers", "name": "stop exit",
             "x": dates(rule["exit_time"]), "y": num(rule["exit_price"]),
             "text": mark_text(rule, "exit"), "hovertemplate": hover,
             "marker": {"symbol": "x", "size": 10, "color": "#111827"}}
        )  # fmt: skip
    return marks


def trades_section(page: Page, trades: pd.DataFrame) -> None:
    """The trades table, sortable, at most ``MAX_TRADE_ROWS`` rows."""
    if trades.empty:
        page.section("trades", "Trades", note("No trades."))
        return
    columns = [c for c in trades.columns if c != "is_open"]
    if "is_open" in trades.columns:
        columns.append("is_open")
    shown = trades.head(MAX_TRADE_ROWS)
    rows = [[_cell(v) for v in row] for row in shown[columns].itertuples(index=False)]
    parts = [f'<div class="scroll">{table(columns, rows, key="trades")}</div>']
    if len(trades) > MAX_TRADE_ROWS:
        parts.append(
            note(f"First {MAX_TRADE_ROWS} of {len(trades):,} trades; trades.parquet has all.")
        )
    if "exit_reason" in trades.columns:
        counts = trades["exit_reason"].astype(str).value_counts()
        parts.append(note("Exits by reason: " + ", ".join(f"{k} {v}" for k, v in counts.items())))
    page.section("trades", f"Trades ({len(trades):,})", note("Click a header to sort."), *parts)


def _cell(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def monthly_section(page: Page, returns: pd.Series) -> None:
    """Compounded return of each calendar month, a year per row."""
    r = returns.astype(np.float64).fillna(0.0)
    if not isinstance(r.index, pd.DatetimeIndex) or len(r) < 2:
        return
    monthly = (1.0 + r).groupby([r.index.year, r.index.month]).prod() - 1.0
    years = sorted({int(y) for y, _ in monthly.index})
    z = [[monthly.get((y, m), math.nan) for m in range(1, 13)] for y in years]
    text = [["" if math.isnan(v) else f"{v:.1%}" for v in row] for row in z]
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    bound = float(np.nanmax(np.abs(monthly.to_numpy()))) if len(monthly) else 1.0
    trace = {
        "type": "heatmap",
        "x": months,
        "y": [str(y) for y in years],
        "z": [num(row, 5) for row in z],
        "text": text,
        "texttemplate": "%{text}",
        "colorscale": [[0.0, "#b91c1c"], [0.5, "#f9fafb"], [1.0, "#15803d"]],
        "zmid": 0,
        "zmin": -bound,
        "zmax": bound,
        "hovertemplate": "%{y} %{x}: %{text}<extra></extra>",
        "colorbar": {"tickformat": ".0%"},
    }
    layout = {"yaxis": {"autorange": "reversed", "type": "category"}, "hovermode": "closest"}
    page.section(
        "monthly",
        "Monthly returns",
        page.figure([trace], layout, height=max(220, 26 * len(years) + 90)),
    )


def rolling_section(page: Page, returns: pd.Series, periods_per_year: int) -> None:
    """Rolling Sharpe ratio and annualised volatility over a quarter of a year of bars."""
    window = max(2, periods_per_year // 4)
    r = returns.astype(np.float64)
    if len(r) <= window:
        return
    mean = r.rolling(window).mean()
    std = r.rolling(window).std(ddof=1)
    sharpe = (mean / std.where(std > 0)) * math.sqrt(periods_per_year)
    vol = std * math.sqrt(periods_per_year)
    pos = thin_positions(len(r), sharpe.to_numpy())
    x = dates(r.index[pos])
    traces = [
        {"type": "scatter", "x": x, "y": num(sharpe.to_numpy()[pos]), "name": "rolling Sharpe",
         "line": {"color": COLORS[0], "width": 1.2}},
        {"type": "scatter", "x": x, "y": num(vol.to_numpy()[pos]), "name": "rolling volatility",
         "yaxis": "y2", "line": {"color": COLORS[1], "width": 1.2}},
    ]  # fmt: skip
    layout = {
        "xaxis": {"anchor": "y2"},
        "yaxis": {"domain": [0.52, 1.0], "title": {"text": "Sharpe"}},
        "yaxis2": {"domain": [0.0, 0.46], "title": {"text": "volatility"}, "tickformat": ".0%"},
    }
    page.section(
        "rolling",
        "Rolling Sharpe and volatility",
        page.figure(traces, layout, height=420),
        note(
            f"Over the last {window} bars at each bar (a quarter of the {periods_per_year} bars "
            "a year), annualised."
        ),
        thinning_note(len(r)),
    )
