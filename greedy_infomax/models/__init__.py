"""Encoders by task, each cut into gradient-isolated modules as its config says."""
from __future__ import annotations

from dataclasses import replace

from torch import nn

from greedy_infomax.config import AnyRunConfig
from greedy_infomax.models import audio, vision

BUILDERS = {"vision": vision.build_modules, "audio": audio.build_modules}


def build_modules(config: AnyRunConfig, in_channels: int) -> nn.ModuleList:
    """The run's encoder as an nn.ModuleList of IsolatedModules (vision or audio, by the config's task)."""
    return BUILDERS[config.task](config, in_channels)


def cut_at(config: AnyRunConfig, stages_per_module: tuple[int, ...]) -> AnyRunConfig:
    """The same encoder cut into other modules, for reading features only (e.g. an end-to-end run probed at GIM's
    module boundaries): the objectives' context networks, which no feature passes through, are left out."""
    model = replace(config.model, stages_per_module=tuple(stages_per_module))
    if config.task == "vision":
        model = replace(model, autoregressor="none")
    return replace(config, model=model)


def copy_stages(source: nn.ModuleList, destination: nn.ModuleList) -> nn.ModuleList:
    """Copy the encoder weights stage by stage between two cuts of the same encoder (objectives are not copied)."""
    pairs = list(zip(_stages(source), _stages(destination), strict=True))
    for from_stage, to_stage in pairs:
        to_stage.load_state_dict(from_stage.state_dict())
    return destination


def _stages(modules: nn.ModuleList) -> list[nn.Module]:
    """The encoder's stages in order: every module's block children, then its autoregressor (the audio GRU)."""
    return [stage for module in modules
            for stage in [*module.block.children(), *([module.autoregressor] if module.autoregressor else [])]]
