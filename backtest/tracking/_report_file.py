"""The ``report.html`` a run uploads to MLflow: always a page that stands on its own.

The jobs of a Hydra multirun share one plotly.js file in their sweep directory; a job's
``report.html`` loads it by the relative path ``../plotly-...min.js`` (see
:mod:`backtest.report._bundle`). Uploaded as is, MLflow's copy would find no such file
beside it and draw no figure, so the uploaded copy gets the bundle embedded instead,
gzip-compressed and base64-encoded in the same data block a single run's page carries
(the page's own glue unpacks it). Every other page is uploaded byte for byte.
"""

from __future__ import annotations

import base64
import gzip
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The tag the report writes for a shared bundle (backtest.report._bundle.shared_script):
# only a plotly file right in the sweep directory is ever read, never a path a page names.
_SHARED = re.compile(
    r'<script src="\.\./(?P<name>plotly-[A-Za-z0-9.-]+\.min\.js)" id="plotly-src" '
    r'data-bundle="(?P<kind>cartesian|full)"></script>'
)


def standalone(page: str, page_dir: Path) -> str | None:
    """``page`` with its shared plotly.js embedded; ``None`` when it loads no shared file.

    Raises:
        OSError: the shared file is missing (the sweep folder was moved in part).
    """
    found = _SHARED.search(page)
    if found is None:
        return None
    shared = page_dir.parent / found["name"]
    if shared.is_symlink():
        raise OSError(f"{shared} is a link")
    code = shared.read_bytes()
    packed = base64.b64encode(gzip.compress(code, compresslevel=9, mtime=0)).decode("ascii")
    block = (
        f'<script type="application/octet-stream" id="plotly-gz" '
        f'data-bundle="{found["kind"]}">{packed}</script>'
    )
    return page[: found.start()] + block + page[found.end() :]


@contextmanager
def report_to_upload(path: Path) -> Iterator[Path]:
    """The file to upload for the report at ``path``: itself, or a standalone copy.

    A standalone copy is written into a temporary folder (under the same name) and
    removed after the upload; when the shared file is missing the page is uploaded as is.
    """
    page = path.read_text(encoding="utf-8")
    try:
        text = standalone(page, path.parent)
    except OSError:
        text = None
    if text is None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="backtest-report-") as tmp:
        copy = Path(tmp) / path.name
        copy.write_text(text, encoding="utf-8")
        yield copy
