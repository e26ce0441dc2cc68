"""Registration of the schemas with Hydra: the one place the config layer meets Hydra.

Kept apart from :mod:`backtest.config` so that the schemas, read by the data layer and the
engine, import nothing of Hydra or OmegaConf.
"""

from __future__ import annotations

from backtest.config import _GROUP_SCHEMAS, _STRATEGY_SCHEMAS, RootConfig, unique_suffix


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore as ``base_<group>``.

    Group YAML files start with ``defaults: [base_<group>, _self_]``; strategy
    files with ``base_strategy_<name>``.
    """
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("unique_suffix"):
        # cached per config (like Hydra's ${now:}), so every read of a run dir agrees
        OmegaConf.register_new_resolver("unique_suffix", unique_suffix, use_cache=True)
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=RootConfig)
    for group, schema in _GROUP_SCHEMAS.items():
        cs.store(group=group, name=f"base_{group}", node=schema)
    for name, schema in _STRATEGY_SCHEMAS.items():
        cs.store(group="strategy", name=f"base_strategy_{name}", node=schema)
