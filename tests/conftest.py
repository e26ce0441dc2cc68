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
