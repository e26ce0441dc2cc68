"""The example notebook runs: ``examples/research.ipynb`` executed by a real Jupyter kernel.

The notebook is run top to bottom by ``nbclient`` with an ``ipykernel`` kernel in a fresh
folder (its report goes to ``outputs/notebook/`` there), on the sample data shipped with
the package. Every cell must run without error, each result must show itself in one line
and each ``plot()`` must come out as a plotly figure. The copy in git has its outputs
stripped.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "research.ipynb"
PLOTLY = "application/vnd.plotly.v1+json"


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is missing: pip install -e '.[dev]'")
        pytest.skip(f"{module} is not installed (pip install -e '.[dev]')")


def test_the_notebook_in_git_has_its_outputs_stripped() -> None:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)


@pytest.mark.slow
def test_the_example_notebook_runs_in_a_kernel(tmp_path: Path) -> None:
    nbformat = _require("nbformat")
    _require("ipykernel")
    nbclient = _require("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    started = time.perf_counter()
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on an error
    print(f"notebook executed in {time.perf_counter() - started:.1f} s")
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    shown = [o["data"]["text/plain"] for o in outputs if "text/plain" in o.get("data", {})]
    for kind in ("BacktestResult", "SearchResult", "WalkForwardResult", "MonteCarloReport"):
        (line,) = [s for s in shown if s.startswith(f"<{kind} ")]
        assert "\n" not in line and "Sharpe" in line
    htmls = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert sum('data-table="metrics"' in h for h in htmls) >= 2  # backtest, stored run
    figures = [o["data"][PLOTLY] for o in outputs if PLOTLY in o.get("data", {})]
    kinds = [{t.get("type", "scatter") for t in f["data"]} for f in figures]
    assert kinds == [{"scatter"}, {"heatmap"}, {"scatter", "bar"}, {"scatter", "bar"}, {"scatter"}]
    assert figures[0] == figures[-1]  # the stored run draws what the live result drew
    (report,) = (tmp_path / "outputs" / "notebook").glob("backtest-*/report.html")
    assert report.stat().st_size <= 1_500_000


def test_the_readme_notebook_lines_run_and_draw_the_equity() -> None:
    readme = (NOTEBOOK.parent.parent / "README.md").read_text()
    section = readme.split("## In a notebook\n", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    lines = [line for line in code.splitlines() if line.strip()]
    assert len(lines) == 5
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines[:-1]), "README", "exec"), namespace)
    figure = eval(lines[-1], namespace)  # the last line: what the cell shows
    assert figure.data[0].name == "strategy"
    assert figure.layout.xaxis.type == "date"
