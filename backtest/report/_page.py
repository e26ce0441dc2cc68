"""The page: one HTML document, plotly.js embedded once, figures as JSON, tables, glue.

Figures are plain plotly figure dicts (``data`` and ``layout``), each written into a
``<script type="application/json">`` element and drawn by a few lines of glue; the
plotly.js bundle is written once into the page, gzip-compressed (the partial bundle
shipped here when it draws every trace of the page, else plotly's full one), so the file
opens from disk with no network and a single run's page is under 1 MB. A sweep's job
pages load one shared copy from the sweep folder instead (:mod:`backtest.report._bundle`).
The report's own numbers (the ``result.json`` records) are embedded the same way under
``id="report-data"``, so a reader (or a test) can take them from the page.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from backtest.report._bundle import BUNDLE_FILE as BUNDLE_FILE
from backtest.report._bundle import needs_full, plotly_script, shared_script
from backtest.results._summary import PERCENT_METRICS, is_percent

MAX_POINTS = 500
"""Longest series drawn as is; longer ones are thinned for display (said on the page)."""

#: Keys shown as percentages: the metrics' one convention, plus the page's own rates.
PERCENT_KEYS = PERCENT_METRICS | {"return", "prob_loss", "prob_ruin"}

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def thin_positions(n: int, values: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """Positions of the points drawn from a series of ``n`` points.

    All of them when ``n <= MAX_POINTS``; else every k-th point plus, when ``values``
    is given, the lowest and highest point of each stretch (so drawdowns and peaks
    survive thinning), the first and the last.
    """
    if n <= MAX_POINTS:
        return np.arange(n)
    step = math.ceil(3 * n / MAX_POINTS)
    keep = [np.arange(0, n, step), np.array([n - 1])]
    if values is not None:
        arr = np.asarray(values, dtype=np.float64)
        starts = np.arange(0, n, step)
        filled = np.where(np.isfinite(arr), arr, np.nanmean(arr) if np.isfinite(arr).any() else 0)
        keep.append(starts + _reduce_at(filled, starts, np.argmin))
        keep.append(starts + _reduce_at(filled, starts, np.argmax))
    return np.unique(np.concatenate(keep))


def _reduce_at(arr: np.ndarray, starts: np.ndarray, arg: Any) -> np.ndarray:
    ends = np.r_[starts[1:], len(arr)]
    return np.array([arg(arr[s:e]) for s, e in zip(starts, ends, strict=True)], dtype=np.int64)


def num(values: Iterable[Any], digits: int = 6) -> list[float | None]:
    """Floats rounded to ``digits`` significant digits for display; NaN and inf -> None."""
    out: list[float | None] = []
    for v in np.asarray(list(values) if not isinstance(values, np.ndarray) else values).ravel():
        f = float(v)
        out.append(float(f"{f:.{digits}g}") if math.isfinite(f) else None)
    return out


def dates(index: Iterable[Any]) -> list[str]:
    """ISO dates (``YYYY-MM-DD``) or timestamps when any bar has a time of day."""
    idx = pd.DatetimeIndex(list(index) if not isinstance(index, pd.Index) else index)
    if len(idx) and (idx.normalize() == idx).all():
        return [str(s) for s in idx.strftime("%Y-%m-%d")]
    return [str(s) for s in idx.strftime("%Y-%m-%d %H:%M:%S")]


def fmt(name: str, value: Any) -> str:
    """A metric value as a person reads it: percentages, counts, 3 decimals."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float | np.integer | np.floating):
        v = float(value)
        if name in PERCENT_KEYS or is_percent(name):
            return f"{v:.2%}"
        if name in ("n_trades", "n_trials", "bars_held", "trial", "fold") or (
            isinstance(value, int | np.integer)
        ):
            return f"{v:,.0f}"
        return f"{v:.4g}" if abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3) else f"{v:.3f}"
    if isinstance(value, pd.Timestamp):
        return str(value.date()) if value == value.normalize() else str(value)
    return str(value)


def _raw(value: Any, exact: bool) -> str:
    """The sort key of a table cell (``data-v``): the number itself (exact: as in JSON)."""
    if value is None:
        return ""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        return repr(value) if exact else f"{value:.10g}"
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


def cell(name: str, value: Any, exact: bool = False) -> str:
    """One ``<td>``: the formatted value, its raw value in ``data-v`` when they differ."""
    text = html.escape(fmt(name, value))
    raw = html.escape(_raw(value, exact))
    if raw in ("", text) or (isinstance(value, pd.Timestamp) and raw.startswith(text)):
        attr = ""  # the text sorts as the value does (ISO dates, labels, integers)
    else:
        attr = f' data-v="{raw}"'
    cls = "" if isinstance(value, int | float | np.number) or value is None else ' class="t"'
    return f"<td{cls}{attr}>{text}</td>"


def table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    sortable: bool = True,
    names: Sequence[str] | None = None,
    key: str | None = None,
    exact: bool = False,
) -> str:
    """An HTML table; a cell carries its raw value in ``data-v`` (sort key, tests).

    Args:
        columns: Header labels.
        rows: Raw values per row (formatted with :func:`fmt` by column name).
        sortable: Click a header to sort (glue JS).
        names: Metric name per column for formatting (default: the labels).
        key: ``data-table`` attribute naming the table.
        exact: ``data-v`` holds floats exactly (``repr``), else to 10 digits.
    """
    names = list(names or columns)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = "".join(cell(n, v, exact) for n, v in zip(names, row, strict=True))
        body.append(f"<tr>{cells}</tr>")
    cls = ' class="sortable"' if sortable else ""
    attr = f' data-table="{html.escape(key)}"' if key else ""
    return f"<table{cls}{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def key_values(pairs: Iterable[tuple[str, Any]], key: str | None = None) -> str:
    """A two-column table of labels and values, each value formatted by its label."""
    rows = "".join(
        f'<tr><td class="t">{html.escape(k)}</td>{cell(k, v, True)}</tr>' for k, v in pairs
    )
    attr = f' data-table="{html.escape(key)}"' if key else ""
    return f'<table class="kv"{attr}><tbody>{rows}</tbody></table>'


def note(text: str) -> str:
    """A short explanatory paragraph."""
    return f'<p class="note">{html.escape(text)}</p>'


def _json_for_script(obj: Any) -> str:
    text = json.dumps(obj, allow_nan=False, separators=(",", ":"), default=_default)
    return text.replace("</", "<\\/")


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
        return None if isinstance(value, float) and not math.isfinite(value) else value
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _clean(obj: Any) -> Any:
    """Replace non-finite floats by None (JSON has no NaN)."""
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float | np.floating) and not math.isfinite(float(obj)):
        return None
    return obj


def scale_buttons(y: float, first: str = "linear") -> list[dict[str, Any]]:
    """Plotly ``updatemenus``: buttons that switch the y axis between log and linear.

    At height ``y`` (in paper units), the axis's starting scale (``first``) on the left.
    """
    scales = {"log": "log scale", "linear": "linear"}
    order = [first, *(s for s in scales if s != first)]
    buttons = [
        {"label": scales[s], "method": "relayout", "args": [{"yaxis.type": s}]} for s in order
    ]
    return [
        {
            "type": "buttons",
            "direction": "right",
            "x": 0.0,
            "y": y,
            "xanchor": "left",
            "buttons": buttons,
        }
    ]


def figure_spec(
    data: list[dict[str, Any]], layout: Mapping[str, Any], height: int = 380
) -> dict[str, Any]:
    """A figure as plain data (``data`` and ``layout``), the house layout under ``layout``.

    The report embeds it as JSON; :func:`to_plotly` makes it a plotly ``Figure``, so a
    result's ``plot()`` and its report draw the same figure.
    """
    return {"data": data, "layout": {"height": height, **_BASE_LAYOUT, **layout}}


def to_plotly(spec: Mapping[str, Any]) -> Any:
    """The plotly ``Figure`` of a :func:`figure_spec` (imports plotly: call it lazily)."""
    import plotly.graph_objects as go

    return go.Figure(_clean(spec))


@dataclass
class Page:
    """An HTML report being assembled, section by section.

    Attributes:
        title: The page title.
        sections: ``(key, title, body html)`` in order.
        data: The embedded JSON (``id="report-data"``): records, thinning notes.
    """

    title: str
    sections: list[tuple[str, str, str]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    _n_figures: int = 0
    _trace_types: set[str] = field(default_factory=set)

    def figure(self, data: list[dict[str, Any]], layout: dict[str, Any], height: int = 380) -> str:
        """A plotly figure: a placeholder ``div`` and its JSON, drawn by the glue."""
        return self.add(figure_spec(data, layout, height))

    def add(self, spec: Mapping[str, Any]) -> str:
        """A figure made by :func:`figure_spec` (the one a result's ``plot()`` shows)."""
        self._n_figures += 1
        self._trace_types.update(str(t.get("type", "scatter")) for t in spec["data"])
        fid = f"fig{self._n_figures}"
        height = int(spec["layout"]["height"])
        return (
            f'<div class="fig" id="{fid}" style="height:{height}px"></div>'
            f'<script type="application/json" data-figure="{fid}">'
            f"{_json_for_script(_clean(spec))}</script>"
        )

    def trace_types(self) -> set[str]:
        """The plotly trace types of the page's figures (they choose the bundle embedded)."""
        return set(self._trace_types)

    def section(self, key: str, title: str, *parts: str) -> None:
        """Append a section; empty parts are dropped."""
        self.sections.append((key, title, "".join(p for p in parts if p)))

    def render(self, bundle_src: str | None = None) -> str:
        """The complete HTML document.

        Args:
            bundle_src: The relative URL of a sweep's shared plotly.js file
                (:func:`backtest.report._bundle.shared_src`); ``None`` embeds plotly.js
                in the page once, compressed.
        """
        plotly = (
            plotly_script(self.trace_types())
            if bundle_src is None
            else shared_script(html.escape(bundle_src), needs_full(self.trace_types()))
        )
        nav = "".join(
            f'<a href="#{k}">{html.escape(t)}</a>' for k, t, _ in self.sections if k != "header"
        )
        body = "".join(
            f'<section id="{k}" data-section="{k}"><h2>{html.escape(t)}</h2>{b}</section>'
            for k, t, b in self.sections
        )
        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style>"
            f"{plotly}</head><body>"
            f"<header><h1>{html.escape(self.title)}</h1><nav>{nav}</nav></header>"
            f"<main>{body}</main>"
            f'<script type="application/json" id="report-data">'
            f"{_json_for_script(_clean(self.data))}</script>"
            f"<script>{_GLUE}</script></body></html>\n"
        )


_BASE_LAYOUT: dict[str, Any] = {
    "margin": {"l": 60, "r": 20, "t": 40, "b": 40},
    "hovermode": "x unified",
    "legend": {"orientation": "h", "y": 1.12},
    "paper_bgcolor": "white",
    "plot_bgcolor": "white",
    "font": {"family": "system-ui, sans-serif", "size": 12},
}

_CSS = """
body{font-family:system-ui,-apple-system,sans-serif;margin:0;color:#222;background:#f6f7f9}
header{background:#1f2937;color:#fff;padding:10px 24px;position:sticky;top:0;z-index:10}
header h1{font-size:18px;margin:0 0 4px}
nav a{color:#cbd5e1;margin-right:14px;font-size:13px;text-decoration:none}
main{max-width:1250px;margin:0 auto;padding:8px 24px}
section{background:#fff;border-radius:6px;padding:10px 18px;margin:14px 0;
box-shadow:0 1px 2px rgba(0,0,0,.08)}
h2{font-size:16px;margin:6px 0 10px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
td,th{padding:3px 10px;border-bottom:1px solid #e5e7eb;text-align:right}
td:first-child,th:first-child,td.t,th.t{text-align:left}
td{white-space:nowrap}table.kv td{text-align:left}td.wrap{white-space:normal;max-width:640px}
th{background:#f3f4f6;position:sticky;top:0}
table.sortable th{cursor:pointer}
table.sortable th:after{content:" \\2195";color:#9ca3af}
.scroll{max-height:420px;overflow:auto}
.note{font-size:12px;color:#555;margin:4px 0}
.cols{display:flex;gap:28px;flex-wrap:wrap}
.errors{color:#b91c1c}
"""

# Glue only: unpack plotly.js, draw each figure from its JSON, sort tables on a header click.
_GLUE = """
(function(){
  var errs=[];function fail(m){errs.push(String(m));
    document.body.setAttribute('data-errors',errs.join(' | '));}
  window.addEventListener('error',function(e){fail(e.message);});
  var figs=document.querySelectorAll('script[data-figure]'),done=0;
  document.body.setAttribute('data-figures',figs.length);
  function draw(){figs.forEach(function(s){
    var spec=JSON.parse(s.textContent),div=document.getElementById(s.dataset.figure);
    Plotly.newPlot(div,spec.data,spec.layout,{responsive:true,displaylogo:false})
      .then(function(){done+=1;document.body.setAttribute('data-figures-drawn',done);});
  });}
  var packed=document.getElementById('plotly-gz'),shared=document.getElementById('plotly-src');
  if(window.Plotly)draw();
  else if(shared&&figs.length){fail('plotly.js was not found at '+shared.getAttribute('src')+
    ' (one copy shared by the jobs of a sweep): open the report inside its sweep '+
    'folder, or rebuild it on its own with: python -m backtest.report <this folder>');}
  else if(packed&&typeof DecompressionStream==='undefined'){
    fail('this browser cannot unpack the figures (no DecompressionStream): open the '+
      'report in a current Chrome, Edge, Firefox or Safari');}
  else if(packed){var bin=atob(packed.textContent),bytes=new Uint8Array(bin.length);
    for(var i=0;i<bin.length;i++)bytes[i]=bin.charCodeAt(i);
    new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip')))
      .text().then(function(code){var el=document.createElement('script');
        el.textContent=code;document.head.appendChild(el);draw();})
      .catch(function(e){fail('plotly.js could not be unpacked: '+e);});}
  document.querySelectorAll('table.sortable th').forEach(function(th){
    th.addEventListener('click',function(){
      var tb=th.closest('table').tBodies[0];
      var i=Array.prototype.indexOf.call(th.parentNode.children,th);
      var asc=th.dataset.order!=='asc';th.dataset.order=asc?'asc':'desc';
      var rows=Array.prototype.slice.call(tb.rows);
      rows.sort(function(a,b){
        var x=a.cells[i].dataset.v,y=b.cells[i].dataset.v,nx=parseFloat(x),ny=parseFloat(y);
        var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:String(x).localeCompare(String(y));
        return asc?c:-c;});
      rows.forEach(function(r){tb.appendChild(r);});
    });
  });
})();
"""
