"""The ``report.html`` a run uploads to MLflow: always a page that stands on its own.

The jobs of a Hydra multirun share one plotly.js file in their sweep directory; a job's
``report.html`` loads it by the relative path ``../plotly-...min.js`` (see
:mod:`backtest.report._bundle`). Uploaded as is, MLflow's copy would find no such file
beside it and draw no figure, so the uploaded copy gets the bundle embedded instead, in
the block a single run's page carries (gzip-compressed, base64-encoded, unpacked by the
page's own glue). Every other page is uploaded byte for byte.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The tag the report writes for a shared bundle (backtest.report._bundle.shared_script).
_SHARED = re.compile(
    r'<script src="\.\./plotly-[A-Za-z0-9.-]+\.min\.js" id="plotly-src" '
    r'data-bundle="(?P<kind>cartesian|full)"></script>'
)


def standalone(page: str) -> str | None:
    """``page`` with plotly.js embedded in place of its shared file.

    ``None`` when the page loads no shared file (it is self-contained already).
    """
    found = _SHARED.search(page)
    if found is None:
        return None
    from backtest.report._bundle import embedded_script

    block = embedded_script(full=found["kind"] == "full")
    return page[: found.start()] + block + page[found.end() :]


@contextmanager
def report_to_upload(path: Path) -> Iterator[Path]:
    """The file to upload for the report at ``path``: itself, or a standalone copy.

    The copy is written into a temporary folder (under the same name) and removed after
    the upload.
    """
    text = standalone(path.read_text(encoding="utf-8"))
    if text is None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="backtest-report-") as tmp:
        copy = Path(tmp) / path.name
        copy.write_text(text, encoding="utf-8")
        yield copy
