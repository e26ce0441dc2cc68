"""Fetch the partial plotly.js bundle the HTML reports embed, with npm.

The report embeds ``backtest/report/plotly-cartesian.min.js`` (npm package
``plotly.js-cartesian-dist-min``: the bar, box, contour, heatmap, histogram, image, pie,
scatter and violin traces, 1.5 MB against the full bundle's 4.8 MB), compressed, so a
single run's ``report.html`` stays near 0.8 MB. This script downloads the package with
``npm pack`` (no ``node_modules``, nothing installed) at the plotly.js version the
installed Python ``plotly`` package ships, checks the file's licence header and writes it
and the package's MIT licence next to the report code. It is committed, so the report
needs neither npm nor the network; run this again after upgrading ``plotly``::

    python scripts/fetch_plotly_bundle.py            # the installed plotly's version
    python scripts/fetch_plotly_bundle.py --version 4.1.1
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "plotly.js-cartesian-dist-min"
BUNDLE = "plotly-cartesian.min.js"
LICENSE = "plotly.js-LICENSE.txt"
TARGET = Path(__file__).resolve().parent.parent / "backtest" / "report"


def installed_version() -> str:
    """The plotly.js version the installed Python ``plotly`` package embeds."""
    from plotly.offline import get_plotlyjs_version

    return str(get_plotlyjs_version())


def fetch(version: str, target: Path = TARGET) -> Path:
    """Download ``PACKAGE@version`` with ``npm pack`` and write its bundle into ``target``.

    Returns:
        The path of the bundle written.

    Raises:
        SystemExit: npm is missing or failed, or the file is not the expected bundle.
    """
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is not installed: install Node.js (it brings npm) and run again")
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [npm, "pack", f"{PACKAGE}@{version}", "--silent"],
            cwd=tmp,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"npm pack {PACKAGE}@{version} failed:\n{done.stderr.strip()}")
        archive = Path(tmp) / done.stdout.strip().splitlines()[-1]
        with tarfile.open(archive) as tar:
            bundle = tar.extractfile(f"package/{BUNDLE}")
            licence = tar.extractfile("package/LICENSE")
            assert bundle is not None and licence is not None
            code, licence_text = bundle.read(), licence.read()
    head = code[:300].decode("utf-8", "replace")
    if f"v{version}" not in head or "Licensed under the MIT license" not in head:
        raise SystemExit(f"{BUNDLE} from npm has no plotly.js v{version} licence header: {head!r}")
    target.mkdir(parents=True, exist_ok=True)
    (target / BUNDLE).write_bytes(code)
    (target / LICENSE).write_bytes(licence_text)
    return target / BUNDLE


def main(argv: list[str] | None = None) -> int:
    """Command line: ``fetch_plotly_bundle.py [--version X.Y.Z]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=None, help="plotly.js version (default: plotly's)")
    args = parser.parse_args(argv)
    path = fetch(args.version or installed_version())
    print(f"{path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
