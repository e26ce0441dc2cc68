"""Turns a composed config into typed objects and runs the task."""
from __future__ import annotations
from omegaconf import DictConfig, OmegaConf
def run(cfg: DictConfig) -> float | None:
    print(OmegaConf.to_yaml(cfg))
    return None
