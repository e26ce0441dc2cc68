"""plotly.js for the report pages: embedded once in a page, or one shared file per sweep.

A page draws its figures with plotly.js, which is most of its weight. Two ways in:

* **Embedded** (a single run, a comparison, a sweep's own page): the bundle is written
  into the page gzip-compressed and base64-encoded (:func:`plotly_script`), so the one
  file opens from disk with no network, anywhere it is copied.
* **Shared** (the jobs of a Hydra multirun): the first job's report writes the bundle
  once into the sweep directory (``plotly-cartesian-4.1.1.min.js``, or
  ``plotly-4.1.1.min.js`` when a page needs the full bundle) and every job's
  ``report.html`` loads it by the relative path ``../plotly-...min.js``. A 40-job sweep
  holds one plotly.js instead of 40 (each job page is then tens of KB), and moving or
  copying the sweep folder whole keeps every page working. A job folder taken out of
  its sweep says on its page where it expected the file; ``python -m backtest.report
  DIR`` rebuilds it self-contained (outside a sweep a page embeds the bundle).

A directory is a sweep's job when its parent holds Hydra's ``multirun.yaml`` (Hydra's
sweepers and ours write it before the first job runs; MLflow tracking nests a job under
its sweep by the same mark).

The partial bundle (``plotly-cartesian.min.js`` beside this module, fetched by
``scripts/fetch_plotly_bundle.py``) is used when it draws every trace type of the page,
else plotly's full one.
"""

from __future__ import annotations

import base64
import functools
import gzip
import os
import re
from pathlib import Path

from backtest import results

SWEEP_MARKER = "multirun.yaml"
"""The file Hydra writes into every multirun sweep directory."""

# The partial bundle shipped beside this module and the trace types it draws.
BUNDLE_FILE = Path(__file__).with_name("plotly-cartesian.min.js")
BUNDLE_TRACES = frozenset(
    {"bar", "box", "contour", "heatmap", "histogram", "histogram2d", "histogram2dcontour",
     "image", "pie", "scatter", "scatterternary", "violin"}
)  # fmt: skip


def needs_full(trace_types: set[str]) -> bool:
    """Whether a page with these trace types needs plotly's full bundle."""
    return not trace_types <= BUNDLE_TRACES or not BUNDLE_FILE.is_file()


def plotly_script(trace_types: set[str]) -> str:
    """plotly.js for a page, gzip-compressed and base64-encoded in a data block.

    The partial bundle when it draws every trace type the page uses, else plotly's
    full one. The page's glue decompresses it with the browser's ``DecompressionStream``
    (Chromium 80, Firefox 113, Safari 16.4 and later) and runs it before drawing, so the
    file opens from disk with no network, at a third of the bundle's size. Its licence
    header is kept in clear in a comment.
    """
    return embedded_script(needs_full(trace_types))


def embedded_script(full: bool) -> str:
    """The embedded plotly.js block of :func:`plotly_script`, by bundle (full or partial)."""
    header, packed = _packed(full)
    return (
        f"<script>{header}</script>"
        f'<script type="application/octet-stream" id="plotly-gz" data-bundle='
        f'"{"full" if full else "cartesian"}">{packed}</script>'
    )


def shared_script(src: str, full: bool) -> str:
    """The ``<script src>`` of a page that loads the sweep's shared bundle (a relative URL).

    ``backtest.tracking._report_file`` finds this exact tag to upload a job's page to
    MLflow with :func:`embedded_script` in its place: change both together.
    """
    return (
        f'<script src="{src}" id="plotly-src" data-bundle='
        f'"{"full" if full else "cartesian"}"></script>'
    )


def sweep_dir_of(run_dir: str | Path) -> Path | None:
    """The sweep directory a run directory is a job of, else ``None``."""
    parent = Path(run_dir).absolute().parent
    return parent if (parent / SWEEP_MARKER).is_file() else None


def bundle_name(full: bool) -> str:
    """The shared file's name, with plotly.js's version (a rebuild never mixes versions)."""
    if full:
        return f"plotly-{_version(True)}.min.js"
    return f"plotly-cartesian-{_version(False)}.min.js"


def shared_bundle(sweep_dir: str | Path, full: bool) -> Path:
    """The sweep's shared plotly.js file, written (atomically) unless it is already there.

    Jobs running at once may each write it; every write is the same bytes, renamed
    into place, so a page never loads a half-written file.
    """
    path = Path(sweep_dir) / bundle_name(full)
    code = _code(full)
    if not path.is_file() or path.stat().st_size != len(code) or path.read_bytes() != code:
        results.atomic_write_bytes(path, code)
    return path


def shared_src(run_dir: str | Path, trace_types: set[str]) -> str | None:
    """The relative URL of the shared bundle for a sweep job's page, else ``None``.

    ``None`` (embed the bundle) outside a sweep, or when the sweep directory cannot be
    written (a read-only copy): the page is then self-contained as a single run's.
    """
    sweep = sweep_dir_of(run_dir)
    if sweep is None:
        return None
    full = needs_full(trace_types)
    try:
        path = shared_bundle(sweep, full)
    except OSError:
        return None
    return Path(os.path.relpath(path, Path(run_dir).absolute())).as_posix()


@functools.lru_cache(maxsize=2)
def _code(full: bool) -> bytes:
    if full:
        from plotly.offline import get_plotlyjs

        return get_plotlyjs().encode()
    return BUNDLE_FILE.read_bytes()


@functools.lru_cache(maxsize=2)
def _version(full: bool) -> str:
    if full:
        from plotly.offline import get_plotlyjs_version

        return str(get_plotlyjs_version())
    found = re.search(rb"\bv(\d+\.\d+\.\d+)", BUNDLE_FILE.read_bytes()[:400])
    return found.group(1).decode() if found else "unknown"


@functools.lru_cache(maxsize=2)
def _packed(full: bool) -> tuple[str, str]:
    """``(licence comment, base64 of the gzip-compressed bundle)``, once per process."""
    code = _code(full)
    text = code[:400].decode("utf-8", "replace")
    header = text[: text.index("*/") + 2] if text.startswith("/*") and "*/" in text else ""
    packed = base64.b64encode(gzip.compress(code, compresslevel=9, mtime=0)).decode("ascii")
    return header.replace("</", "<\\/"), packed
