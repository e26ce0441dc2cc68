"""The HTML report: every kind of run gets one, its numbers are the run's, it opens offline.

Run directories are made by real runs (small data). The numbers are read back from the
page itself (the embedded JSON, the tables' ``data-v`` cells, the figures' JSON) and
compared with ``result.json`` and with plain loops over the Parquet tables. The page is
opened by a real headless Chromium with the network pointed at a closed port.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from omegaconf import open_dict

from backtest import results
from backtest.report import build_comparison, build_report, build_sweep_report, main
from tests import configs
from tests.devtools import HEADLESS_FLAGS, chromium

ROOT = Path(__file__).resolve().parent.parent


# --- reading a page back ------------------------------------------------------------


class _PageParser(HTMLParser):
    """Tables by ``data-table`` (cells: ``data-v`` else text), sections, figures, data."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.sections: list[str] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._table: str | None = None
        self._cell: dict[str, Any] | None = None
        self._script: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self.sections.append(str(a.get("data-section")))
        elif tag == "table" and a.get("data-table"):
            self._table = str(a["data-table"])
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag == "td" and self._table:
            self._cell = {"v": a.get("data-v"), "text": ""}
        elif tag == "script":
            self._script, self._text = a, []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag == "td" and self._cell is not None and self._table:
            value = self._cell["v"] if self._cell["v"] is not None else self._cell["text"]
            self.tables[self._table][-1].append(value)
            self._cell = None
        elif tag == "script" and self._script is not None:
            self.scripts.append((self._script, "".join(self._text)))
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += data
        if self._script is not None:
            self._text.append(data)


def read_page(path: Path) -> _PageParser:
    parser = _PageParser()
    parser.feed(path.read_text())
    return parser


def embedded(page: _PageParser) -> dict[str, Any]:
    return next(json.loads(t) for a, t in page.scripts if a.get("id") == "report-data")


def figures(page: _PageParser) -> list[dict[str, Any]]:
    return [json.loads(t) for a, t in page.scripts if a.get("data-figure")]


def body_rows(page: _PageParser, key: str) -> list[list[str]]:
    """The rows of a table's body (header rows have no ``td``)."""
    return [row for row in page.tables[key] if row]


def rows_by_label(page: _PageParser, key: str) -> dict[str, list[str]]:
    return {row[0]: row[1:] for row in body_rows(page, key)}


# --- run directories made by real runs ------------------------------------------------


def _run(run_dir: Path, *overrides: str, n_bars: int = 600) -> Path:
    from backtest.app import run

    cfg = configs.compose(
        *overrides,
        f"output_dir={run_dir}",
        "tracking=none",
        "figures=false",
        "summary=false",
        f"data.n_bars={n_bars}",
    )
    with open_dict(cfg):
        cfg.data.n_assets = min(int(cfg.data.n_assets), 3)
        if cfg.get("montecarlo"):
            cfg.montecarlo.n_paths = 300
    run(cfg)
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One run directory per task (the report is written by the run itself)."""
    root = tmp_path_factory.mktemp("runs")
    return {
        "single": _run(root / "single"),
        "search": _run(root / "search", "+experiment=sma_grid"),
        "walkforward": _run(root / "walkforward", "+experiment=wf_momentum", n_bars=1300),
        "montecarlo": _run(root / "montecarlo", "+experiment=mc_sma_cross"),
    }


EXPECTED_SECTIONS = {
    "single": ["header", "metrics", "equity", "prices", "trades", "monthly", "rolling"],
    "search": ["header", "metrics", "equity", "prices", "trades", "search", "overfitting"],
    "walkforward": ["header", "equity", "prices", "walkforward", "overfitting", "montecarlo"],
    "montecarlo": ["header", "metrics", "equity", "trades", "montecarlo"],
}


@pytest.mark.parametrize("kind", list(EXPECTED_SECTIONS), ids=list(EXPECTED_SECTIONS))
def test_every_run_writes_its_report_with_its_sections(runs: dict[str, Path], kind: str) -> None:
    path = runs[kind] / results.REPORT_FILE
    assert path.is_file(), f"the {kind} run wrote no report.html"
    page = read_page(path)
    assert set(EXPECTED_SECTIONS[kind]) <= set(page.sections)
    assert embedded(page)["sections"] == page.sections


@pytest.mark.parametrize("kind", list(EXPECTED_SECTIONS), ids=list(EXPECTED_SECTIONS))
def test_numbers_on_the_page_equal_result_json(runs: dict[str, Path], kind: str) -> None:
    record = json.loads((runs[kind] / results.RESULT_FILE).read_text())
    page = read_page(runs[kind] / results.REPORT_FILE)
    assert embedded(page)["record"] == record
    shown = rows_by_label(page, "metrics")
    assert set(shown) == set(record["metrics"])
    for name, value in record["metrics"].items():
        cell = shown[name][0]
        if value is None:
            assert cell == "n/a"
        else:
            assert float(cell) == value, name
    header = rows_by_label(page, "data") | rows_by_label(page, "code")
    assert header["data fingerprint"][0] == record["data_fingerprint"]
    assert header["config hash"][0] == record["config_hash"]
    assert int(header["bars"][0]) == record["n_bars"]


def test_equity_figure_is_the_equity_table_thinned(runs: dict[str, Path]) -> None:
    run_dir = runs["walkforward"]
    equity = pd.read_parquet(run_dir / "equity.parquet")["equity"]
    page = read_page(run_dir / results.REPORT_FILE)
    fig = next(f for f in figures(page) if f["data"][0].get("name") == "strategy")
    strategy, drawdown = fig["data"][0], fig["data"][-1]
    by_date = dict(zip(equity.index.strftime("%Y-%m-%d"), equity.to_numpy(), strict=True))
    for x, y in zip(strategy["x"], strategy["y"], strict=True):
        assert y == pytest.approx(by_date[x], rel=1e-5)
    assert strategy["x"][-1] == equity.index[-1].strftime("%Y-%m-%d")
    # the deepest drawdown survives thinning: a plain running-peak loop finds it
    peak, worst = -math.inf, 0.0
    for value in equity:
        peak = max(peak, value)
        worst = min(worst, value / peak - 1.0)
    assert min(v for v in drawdown["y"] if v is not None) == pytest.approx(worst, rel=1e-5)


def test_search_section_shows_the_best_trial_and_the_overfitting_block(
    runs: dict[str, Path],
) -> None:
    run_dir = runs["search"]
    record = json.loads((run_dir / results.RESULT_FILE).read_text())
    page = read_page(run_dir / results.REPORT_FILE)
    top = body_rows(page, "top_trials")
    trials = pd.read_parquet(run_dir / "trials.parquet")
    metric = record["search"]["metric"]
    assert len(top) == 20
    assert float(top[0][0]) == record["search"]["best_trial"]
    # the heatmap's best cell is the best trial (a plain loop over the trials table)
    best = max(trials[metric])
    heat = next(f for f in figures(page) if " x " in f["data"][0].get("name", ""))["data"][0]
    cells = [v for row in heat["z"] for v in row if v is not None]
    assert max(cells) == pytest.approx(best, rel=1e-5)
    assert best == pytest.approx(record["search"]["best_score"])
    of = rows_by_label(page, "overfitting")
    for key in ("deflated_sharpe", "pbo"):
        assert float(of[key][0]) == record["overfitting"][key]
        assert len(of[key][1]) > 30  # one sentence of meaning


def test_walkforward_and_montecarlo_sections_hold_the_run_numbers(runs: dict[str, Path]) -> None:
    run_dir = runs["walkforward"]
    record = json.loads((run_dir / results.RESULT_FILE).read_text())
    page = read_page(run_dir / results.REPORT_FILE)
    wf = rows_by_label(page, "walkforward")
    assert float(wf["walk-forward efficiency (CAGR)"][0]) == record["walkforward"]["efficiency"]
    folds = pd.read_parquet(run_dir / "folds.parquet")
    assert len(body_rows(page, "folds")) == len(folds)
    chosen = list(record["walkforward"]["last_params"])  # the searched parameters
    assert chosen  # the folds table starts with them, right after the fold number
    first = body_rows(page, "folds")[0]
    for cell, name in zip(first[1 : 1 + len(chosen)], chosen, strict=True):
        value = folds[name].iloc[0]
        if isinstance(value, str):
            assert cell == value, name
        else:
            assert float(cell) == pytest.approx(float(value)), name
    mc = rows_by_label(page, "montecarlo")
    assert float(mc["prob_loss"][0]) == record["montecarlo"]["prob_loss"]
    assert float(mc["prob_ruin"][0]) == record["montecarlo"]["prob_ruin"]
    mc_fig = next(f for f in figures(page) if any(t.get("name") == "observed" for t in f["data"]))
    hists = [t for t in mc_fig["data"] if t["type"] == "bar"]
    assert len(hists) == 3
    paths = pd.read_parquet(run_dir / "montecarlo_paths.parquet")
    for trace, shape in zip(hists, mc_fig["layout"]["shapes"], strict=True):
        metric = trace["name"]
        assert sum(trace["y"]) == int(np.isfinite(paths[metric]).sum())
        assert shape["x0"] == record["montecarlo"]["observed"][metric]
    # the fan is on dates: the observed equity at each date is the run's equity there
    equity = pd.read_parquet(run_dir / "equity.parquet")["equity"]
    by_date = dict(zip(equity.index.strftime("%Y-%m-%d"), equity.to_numpy(), strict=True))
    observed = next(t for t in mc_fig["data"] if t["name"] == "observed")
    assert mc_fig["layout"]["xaxis"]["type"] == "date"
    for x, y in zip(observed["x"][1:], observed["y"][1:], strict=True):
        assert y == pytest.approx(by_date[x], rel=1e-5)


def _with_benchmark_and_exit_reasons(src: Path, dst: Path) -> tuple[Path, pd.Series]:
    """A copy of a run as the extended engine will write it: benchmark and exit reasons."""
    shutil.copytree(src, dst)
    (dst / results.REPORT_FILE).unlink()
    equity = pd.read_parquet(dst / "equity.parquet")
    rng = np.random.default_rng(7)
    bench_returns = pd.Series(rng.normal(0.0003, 0.01, len(equity)), index=equity.index)
    equity["benchmark"] = 100.0 * (1.0 + bench_returns).cumprod()
    results.write_table(dst, "equity", equity)
    trades = pd.read_parquet(dst / "trades.parquet")
    reasons = ["signal", "stop_loss", "take_profit", "trailing_stop", "max_bars", "end"]
    trades["exit_reason"] = [reasons[i % len(reasons)] for i in range(len(trades))]
    results.write_table(dst, "trades", trades)
    record = json.loads((dst / results.RESULT_FILE).read_text())
    record["metrics"].update(alpha=0.01, beta=0.5, information_ratio=0.3, tracking_error=0.1)
    results.write_json(dst / results.RESULT_FILE, record)
    first = bench_returns.copy()
    first.iloc[0] = 0.0  # the curve's first bar has no return before it
    return dst, first


def test_benchmark_beside_the_metrics_and_stop_exits_marked(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    run_dir, bench_returns = _with_benchmark_and_exit_reasons(runs["single"], tmp_path / "b")
    page = read_page(build_report(run_dir))
    metrics = rows_by_label(page, "metrics")
    growth = 1.0
    for r in bench_returns:  # plain loop: compounded benchmark return
        growth *= 1.0 + r
    assert float(metrics["total_return"][1]) == pytest.approx(growth - 1.0, rel=1e-9)
    assert metrics["beta"] == ["0.5", "n/a"]  # relative metrics have no benchmark value
    names = [t.get("name") for f in figures(page) for t in f["data"]]
    assert "benchmark" in names
    trades = pd.read_parquet(run_dir / "trades.parquet")
    rule = {"stop_loss", "take_profit", "trailing_stop", "max_bars"}
    marked = sum(
        len(t["x"]) for f in figures(page) for t in f["data"] if t.get("name") == "stop exit"
    )
    closed = trades[~trades["is_open"]]  # an open trade has no exit to mark
    assert marked == int(closed["exit_reason"].isin(rule).sum()) > 0


def test_report_false_writes_none_and_keeps_the_job_identity(tmp_path: Path) -> None:
    from backtest import BacktestJob

    run_dir = _run(tmp_path / "off", "report=false", n_bars=300)
    assert results.has_result(run_dir)
    assert not (run_dir / results.REPORT_FILE).exists()
    on = configs.compose("data.n_bars=300", "tracking=none")
    off = configs.compose("data.n_bars=300", "tracking=none", "report=false")
    assert BacktestJob.from_config(on).job_id == BacktestJob.from_config(off).job_id


def test_search_report_builds_fast_and_small(runs: dict[str, Path]) -> None:
    build_report(runs["search"])  # warm imports
    started = time.perf_counter()
    path = build_report(runs["search"])
    elapsed = time.perf_counter() - started
    # a hang guard, not a benchmark (benchmarks/report.py measures it: under 1 s)
    assert elapsed < 30
    assert path.stat().st_size < 1_500_000


@pytest.mark.parametrize("kind", list(EXPECTED_SECTIONS), ids=list(EXPECTED_SECTIONS))
def test_a_single_run_report_is_light_and_embeds_the_shipped_bundle(
    runs: dict[str, Path], kind: str
) -> None:
    import base64
    import gzip

    from backtest.report._page import BUNDLE_FILE

    path = runs[kind] / results.REPORT_FILE
    assert path.stat().st_size <= 1_500_000  # was 4.9 MB with plotly.js inline
    page = read_page(path)
    (attrs, packed), *_ = [(a, t) for a, t in page.scripts if a.get("id") == "plotly-gz"]
    assert attrs["data-bundle"] == "cartesian"
    assert gzip.decompress(base64.b64decode(packed)) == BUNDLE_FILE.read_bytes()
    assert "Licensed under the MIT license" in path.read_text()[:5000]  # the header, in clear


def test_a_page_with_another_trace_type_embeds_the_full_bundle() -> None:
    import base64
    import gzip

    from plotly.offline import get_plotlyjs

    from backtest.report._page import Page

    page = Page(title="t")
    page.section("p", "P", page.figure([{"type": "parcoords", "dimensions": []}], {}))
    text = page.render()
    packed = text.split('data-bundle="full">')[1].split("</script>")[0]
    assert gzip.decompress(base64.b64decode(packed)).decode() == get_plotlyjs()


def test_comparison_and_cli(runs: dict[str, Path], tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = build_comparison([runs["single"], runs["search"]], tmp_path / "cmp.html")
    page = read_page(out)
    shown = body_rows(page, "metrics")
    single = json.loads((runs["single"] / results.RESULT_FILE).read_text())["metrics"]
    search = json.loads((runs["search"] / results.RESULT_FILE).read_text())["metrics"]
    row = next(r for r in shown if r[0] == "sharpe_ratio")
    assert [float(v) for v in row[1:]] == [single["sharpe_ratio"], search["sharpe_ratio"]]
    overlaid = next(f for f in figures(page) if len(f["data"]) == 2)
    assert all(t["y"][0] == pytest.approx(1.0, abs=0.05) for t in overlaid["data"])
    assert main([str(runs["single"]), str(runs["search"]), "-o", str(tmp_path / "c2.html")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "c2.html")
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_sweep_report_compares_the_jobs(runs: dict[str, Path], tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for i, fast in enumerate((5, 10, 20)):
        _run(sweep / str(i), f"strategy.fast={fast}", "report=false", n_bars=300)
    path = build_sweep_report(sweep)
    page = read_page(path)
    objectives = [float(r[2]) for r in body_rows(page, "jobs")]
    assert objectives == sorted(objectives, reverse=True)
    assert {"jobs", "params", "equity"} <= set(page.sections)


# --- a real browser, network off -----------------------------------------------------

CHROMIUM_FLAGS = [
    *HEADLESS_FLAGS,
    "--proxy-server=127.0.0.1:9",  # nothing listens there: any network request fails
    "--proxy-bypass-list=<-loopback>",
    "--enable-logging=stderr",
    "--v=0",
    "--window-size=1400,3000",
    "--virtual-time-budget=15000",
]


def _open(path: Path, profile: Path, *action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *action, path.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )


@pytest.mark.slow
def test_chromium_opens_every_kind_of_report_offline(runs: dict[str, Path], tmp_path: Path) -> None:
    chromium()
    sweep = tmp_path / "sweep"
    for i, fast in enumerate((5, 10)):
        _run(sweep / str(i), f"strategy.fast={fast}", "report=false", n_bars=300)
    pages = {kind: runs[kind] / results.REPORT_FILE for kind in runs}
    pages["sweep"] = build_sweep_report(sweep)
    pages["comparison"] = build_comparison(list(runs.values()), tmp_path / "cmp.html")
    for kind, path in pages.items():
        text = path.read_text()
        assert "<script src" not in text and "<link" not in text  # nothing to fetch
        dom = _open(path, tmp_path / f"profile-{kind}", "--dump-dom")
        assert "Uncaught" not in dom.stderr, dom.stderr[-2000:]
        body = dom.stdout[
            dom.stdout.index("<body") : dom.stdout.index(">", dom.stdout.index("<body"))
        ]
        assert "data-errors" not in body, body
        drawn = embedded(read_page(path))["sections"]
        n_figs = text.count("data-figure=")
        assert f'data-figures="{n_figs}"' in body and f'data-figures-drawn="{n_figs}"' in body
        for section in drawn:
            assert f'data-section="{section}"' in dom.stdout
        assert dom.stdout.count('class="main-svg"') >= n_figs  # plotly drew every figure
        shot = tmp_path / f"{kind}.png"
        _open(path, tmp_path / f"shot-{kind}", f"--screenshot={shot}")
        assert shot.stat().st_size > 20_000


@pytest.mark.slow
def test_module_cli_rebuilds_a_report(runs: dict[str, Path]) -> None:
    run_dir = runs["single"]
    (run_dir / results.REPORT_FILE).unlink()
    out = subprocess.run(
        [sys.executable, "-m", "backtest.report", str(run_dir)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.strip() == str(run_dir / results.REPORT_FILE)
    assert (run_dir / results.REPORT_FILE).is_file()


@pytest.mark.slow
def test_report_is_an_mlflow_artifact_of_the_run(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from backtest.app import run

    store = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = configs.compose(
        f"output_dir={tmp_path / 'run'}",
        f"tracking.uri={store}",
        "tracking.experiment_name=report-artifact",
        "figures=false",
        "summary=false",
        "data.n_bars=300",
    )
    run(cfg)
    client = MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name("report-artifact")
    (logged,) = client.search_runs([exp.experiment_id])
    names = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert results.REPORT_FILE in names
    local = client.download_artifacts(logged.info.run_id, results.REPORT_FILE, str(tmp_path))
    assert Path(local).read_bytes() == (tmp_path / "run" / results.REPORT_FILE).read_bytes()


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backtest", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.slow
def test_a_multirun_writes_the_sweep_report(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    _cli(
        "-m",
        "strategy.fast=5,10",
        "data.n_bars=300",
        "tracking=none",
        "figures=false",
        "summary=false",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    page = read_page(sweep / results.REPORT_FILE)
    assert len(body_rows(page, "jobs")) == 2
    assert all((sweep / str(i) / results.REPORT_FILE).is_file() for i in (0, 1))
    # the jobs share one plotly.js beside them; each job page loads it by a relative path
    from backtest.report._bundle import BUNDLE_FILE

    (shared,) = sweep.glob("plotly*.js")
    assert shared.read_bytes() == BUNDLE_FILE.read_bytes()
    for i in (0, 1):
        text = (sweep / str(i) / results.REPORT_FILE).read_text()
        assert f'<script src="../{shared.name}"' in text and 'id="plotly-gz"' not in text
        assert len(text) < 300_000  # tables and figures only
    names = {t.get("name") for fig in figures(page) for t in fig.get("data", [])}
    assert {"fast=5", "fast=10"} <= names  # lines named by what varied
    assert not any(str(n).startswith("job ") for n in names)
    # a job's equity damaged inside a sound footer: named on the page, the other drawn
    from backtest.report import build_sweep_report

    equity = sweep / "1" / "equity.parquet"
    data = bytearray(equity.read_bytes())
    data[4 : len(data) // 2] = bytes(len(data) // 2 - 4)  # pages zeroed, footer kept
    equity.write_bytes(bytes(data))
    page = read_page(build_sweep_report(sweep))
    assert "skipped" in page.sections
    names = {t.get("name") for fig in figures(page) for t in fig.get("data", [])}
    assert "fast=5" in names and "fast=10" not in names


@pytest.mark.slow
def test_flagship_ends_by_printing_its_report_path(tmp_path: Path) -> None:
    out = _cli(
        "+experiment=wf_momentum",
        "data.n_bars=1300",
        "montecarlo.n_paths=200",
        "tracking=none",
        f"output_dir={tmp_path / 'wf'}",
        cwd=tmp_path,
    ).stdout
    last = out.strip().splitlines()[-1]
    assert last == f"report: {tmp_path / 'wf' / results.REPORT_FILE}"
    assert {"walkforward", "montecarlo"} <= set(read_page(Path(last.split(" ", 1)[1])).sections)


def test_surface_has_a_pair_picker_and_each_cell_is_the_best_over_the_rest() -> None:
    from backtest.report._page import Page
    from backtest.report._search import surface

    rng = np.random.default_rng(3)
    grid = [(a, b, c) for a in (1, 2, 3) for b in (10, 20) for c in (5, 6, 7, 8)]
    trials = pd.DataFrame(grid, columns=["a", "b", "c"])
    trials["sharpe_ratio"] = rng.normal(size=len(trials))
    page = Page(title="t")
    html = surface(page, trials, ["a", "b", "c"], "sharpe_ratio", maximize=True)
    spec = json.loads(html.split('data-figure="fig1">')[1].split("</script>")[0])
    assert [t["name"] for t in spec["data"]] == ["a x b", "a x c", "b x c"]
    assert [t["visible"] for t in spec["data"]] == [True, False, False]
    assert len(spec["layout"]["updatemenus"][0]["buttons"]) == 3
    b_x_c = spec["data"][2]
    for i, c in enumerate(b_x_c["y"]):
        for j, b in enumerate(b_x_c["x"]):
            best = -math.inf
            for row in trials.itertuples():  # plain loop: best over the third parameter
                if row.b == b and row.c == c:
                    best = max(best, row.sharpe_ratio)
            assert b_x_c["z"][i][j] == pytest.approx(best, rel=1e-5)


def test_continuous_parameters_are_binned_and_the_best_trial_survives() -> None:
    from backtest.report._page import Page
    from backtest.report._search import MAX_CELLS, surface

    rng = np.random.default_rng(5)
    trials = pd.DataFrame({"a": rng.uniform(0, 1, 500), "b": rng.uniform(10, 20, 500)})
    trials["sharpe_ratio"] = rng.normal(size=500)
    html = surface(Page(title="t"), trials, ["a", "b"], "sharpe_ratio", maximize=True)
    heat = json.loads(html.split('data-figure="fig1">')[1].split("</script>")[0])["data"][0]
    assert len(heat["x"]) <= MAX_CELLS and len(heat["y"]) <= MAX_CELLS
    cells = [v for row in heat["z"] for v in row if v is not None]
    assert max(cells) == pytest.approx(max(trials["sharpe_ratio"]), rel=1e-5)
    assert "binned" in html


def _sweep_by_hand(sweep: Path, n_jobs: int) -> list[Path]:
    """Jobs of a sweep as Hydra lays them out: ``multirun.yaml`` first, one folder per job."""
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    return [_run(sweep / str(i), f"strategy.fast={5 + 5 * i}", n_bars=300) for i in range(n_jobs)]


def test_a_sweeps_jobs_share_one_plotly_file_and_a_single_run_stays_self_contained(
    tmp_path: Path,
) -> None:
    """Three jobs write one shared bundle (not three); outside a sweep a page embeds it."""
    from backtest.report._bundle import BUNDLE_FILE, bundle_name

    jobs = _sweep_by_hand(tmp_path / "sweep", 3)
    shared = tmp_path / "sweep" / bundle_name(full=False)
    assert [p.name for p in (tmp_path / "sweep").glob("*.js")] == [shared.name]
    assert shared.read_bytes() == BUNDLE_FILE.read_bytes()
    written = shared.stat().st_mtime_ns
    for job in jobs:
        page = read_page(job / results.REPORT_FILE)
        (attrs,) = [a for a, _ in page.scripts if a.get("id") == "plotly-src"]
        assert attrs["src"] == f"../{shared.name}" and attrs["data-bundle"] == "cartesian"
        assert not [a for a, _ in page.scripts if a.get("id") == "plotly-gz"]
        assert (job / results.REPORT_FILE).stat().st_size < 300_000
    build_report(jobs[0])  # a rebuild finds the file in place and leaves it alone
    assert shared.stat().st_mtime_ns == written
    # the same job outside a sweep (no multirun.yaml above it): self-contained again
    alone = shutil.copytree(jobs[0], tmp_path / "alone")
    page = read_page(build_report(alone))
    assert [a["data-bundle"] for a, _ in page.scripts if a.get("id") == "plotly-gz"] == [
        "cartesian"
    ]
    assert not [a for a, _ in page.scripts if a.get("id") == "plotly-src"]


def test_a_job_page_that_needs_the_full_bundle_shares_that_one(tmp_path: Path) -> None:
    from plotly.offline import get_plotlyjs

    from backtest.report._bundle import bundle_name, shared_src

    sweep = tmp_path / "sweep"
    (sweep / "3").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    assert shared_src(sweep / "3", {"parcoords", "scatter"}) == f"../{bundle_name(full=True)}"
    assert (sweep / bundle_name(full=True)).read_text() == get_plotlyjs()
    assert shared_src(tmp_path / "elsewhere", {"scatter"}) is None


@pytest.mark.slow
def test_chromium_draws_job_pages_from_the_shared_file_after_the_sweep_moves(
    tmp_path: Path,
) -> None:
    """Offline, the job pages of a moved sweep folder draw every figure; a job folder
    copied out alone says on its page where plotly.js was expected."""
    chromium()
    _sweep_by_hand(tmp_path / "sweep", 2)
    moved = (tmp_path / "sweep").rename(tmp_path / "moved")
    for i in (0, 1):
        path = moved / str(i) / results.REPORT_FILE
        dom = _open(path, tmp_path / f"profile-{i}", "--dump-dom")
        body = dom.stdout[
            dom.stdout.index("<body") : dom.stdout.index(">", dom.stdout.index("<body"))
        ]
        assert "data-errors" not in body, body
        n_figs = path.read_text().count("data-figure=")
        assert n_figs >= 3 and f'data-figures-drawn="{n_figs}"' in body, body
        assert dom.stdout.count('class="main-svg"') >= n_figs
    lone = shutil.copytree(moved / "0", tmp_path / "lone")
    dom = _open(lone / results.REPORT_FILE, tmp_path / "profile-lone", "--dump-dom")
    assert "plotly.js was not found at ../plotly-cartesian-" in dom.stdout
    assert "python -m backtest.report" in dom.stdout


def test_a_sweep_jobs_report_goes_to_mlflow_with_plotly_embedded(tmp_path: Path) -> None:
    """MLflow's copy of a job page has no sweep folder around it: the bundle goes inside."""
    import base64
    import gzip

    from mlflow import MlflowClient

    from backtest.config import TrackingConfig
    from backtest.report._bundle import BUNDLE_FILE
    from backtest.tracking import log_result

    (job,) = _sweep_by_hand(tmp_path / "sweep", 1)
    store = f"sqlite:///{tmp_path}/mlflow.db"
    logged = log_result(job, TrackingConfig(uri=store, experiment_name="shared-bundle"))
    local = MlflowClient(store).download_artifacts(
        logged.run_id, results.REPORT_FILE, str(tmp_path / "down")
    )
    page = read_page(Path(local))
    (attrs, packed), *_ = [(a, t) for a, t in page.scripts if a.get("id") == "plotly-gz"]
    assert attrs["data-bundle"] == "cartesian"
    assert gzip.decompress(base64.b64decode(packed)) == BUNDLE_FILE.read_bytes()
    assert not [a for a, _ in page.scripts if a.get("id") == "plotly-src"]
    original = (job / results.REPORT_FILE).read_text()
    uploaded = Path(local).read_text()
    tag = original[
        original.index("<script src=") : original.index("</script>", original.index("<script src="))
        + 9
    ]
    head, tail = original.split(tag)
    assert uploaded.startswith(head) and uploaded.endswith(tail)  # nothing else changed


def test_a_self_contained_page_is_uploaded_as_it_is(tmp_path: Path) -> None:
    from backtest.tracking._report_file import report_to_upload

    page = tmp_path / "job" / results.REPORT_FILE
    page.parent.mkdir()
    page.write_text('<html><head><script src="https://cdn.example/plotly.js"></script></head>')
    with report_to_upload(page) as upload:
        assert upload == page
