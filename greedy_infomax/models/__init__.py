"""Encoders by task, each cut into gradient-isolated modules as its config says."""
from __future__ import annotations

from torch import nn

from greedy_infomax.config import AnyRunConfig
from greedy_infomax.models import audio, vision

BUILDERS = {"vision": vision.build_modules, "audio": audio.build_modules}


def build_modules(config: AnyRunConfig, in_channels: int) -> nn.ModuleList:
    """The run's encoder as an nn.ModuleList of IsolatedModules (vision or audio, by the config's task)."""
    return BUILDERS[config.task](config, in_channels)
