"""Assemble the vision encoder from configuration: a patch ResNet cut into gradient-isolated modules."""
from __future__ import annotations

from torch import nn

from greedy_infomax.config import RunConfig
from greedy_infomax.isolation import IsolatedModule
from greedy_infomax.models.patches import PatchGridPool, Patchify
from greedy_infomax.models.resnet import PatchResNet
from greedy_infomax.objectives import OBJECTIVES


def build_modules(config: RunConfig, in_channels: int) -> nn.ModuleList:
    """The encoder's stages grouped by `model.stages_per_module`, each group with its readout and objective.

    Module 1 also cuts the images into patches; every module pools its per-patch maps into the grid its
    loss scores, while the next module receives the unpooled maps.
    """
    m = config.model
    encoder = PatchResNet(in_channels, m.block, m.blocks_per_stage, m.planes, m.stem_channels, m.stem_kernel)
    grid = m.grid(config.data.crop)
    objective = OBJECTIVES[config.objective.name]
    o = config.objective
    modules, first = [], 0
    for count in m.stages_per_module:
        stages = list(encoder.stages[first:first + count])
        if first == 0:
            stages.insert(0, Patchify(m.patch_size, m.patch_stride))
        first += count
        channels = encoder.out_channels[first - 1]
        loss = objective(channels, prediction_steps=o.prediction_steps, skip_steps=o.skip_steps,
                         num_negatives=o.num_negatives)
        modules.append(IsolatedModule(nn.Sequential(*stages), PatchGridPool(grid), loss))
    return nn.ModuleList(modules)

