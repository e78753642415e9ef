"""Encoders (a patch ResNet for images, strided convolutions + GRU for speech) and the tools that cut any network
into gradient-isolated modules. Builders take sizes, not run configs: the tasks (greedy_infomax/tasks/) read the
configs and call them."""

from __future__ import annotations

from torch import nn


def copy_stages(source: nn.ModuleList, destination: nn.ModuleList) -> nn.ModuleList:
    """Copy the encoder weights stage by stage between two cuts of the same encoder (objectives are not copied)."""
    pairs = list(zip(_stages(source), _stages(destination), strict=True))
    for from_stage, to_stage in pairs:
        to_stage.load_state_dict(from_stage.state_dict())
    return destination


def _stages(modules: nn.ModuleList) -> list[nn.Module]:
    """The encoder's stages in order: every module's block children, then its autoregressor (the audio GRU)."""
    return [
        stage
        for module in modules
        for stage in [*module.block.children(), *([module.autoregressor] if module.autoregressor else [])]
    ]
