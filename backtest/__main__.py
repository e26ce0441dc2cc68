"""Command line: ``python -m backtest +experiment=NAME [overrides] [-m]``.

Thin on purpose: register the schemas, let Hydra compose ``conf/``, hand the
result to :func:`backtest.app.run`.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from backtest.config import register_configs

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _main(cfg: DictConfig) -> float | None:
    from backtest.app import run

    return run(cfg)


def main() -> None:
    """Entry point of ``python -m backtest`` and the ``backtest`` script."""
    if not Path(CONF_DIR, "config.yaml").is_file():
        raise SystemExit(
            f"backtest: no configs at {CONF_DIR}; install from a checkout with "
            "`pip install -e .` so that conf/ stays next to the package"
        )
    register_configs()
    _main()


if __name__ == "__main__":
    main()
