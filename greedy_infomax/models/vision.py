"""Assemble the vision encoder from configuration: a patch ResNet cut into gradient-isolated modules."""
from __future__ import annotations

from functools import partial
from itertools import accumulate

import torch
from torch import nn

from greedy_infomax.config import RunConfig
from greedy_infomax.models.patches import PatchGridPool, Patchify
from greedy_infomax.models.resnet import PatchResNet
from greedy_infomax.models.split import isolate, split
from greedy_infomax.objectives import OBJECTIVES


def build_modules(config: RunConfig, in_channels: int) -> nn.ModuleList:
    """The encoder's stages grouped by `model.stages_per_module`, each group with its readout and objective.

    Module 1 also cuts the images into patches; every module pools its per-patch maps into the grid its
    loss scores, while the next module receives the unpooled maps.
    """
    m, o = config.model, config.objective
    encoder = PatchResNet(in_channels, m.block, m.blocks_per_stage, m.planes, m.stem_channels, m.stem_kernel)
    layers = nn.Sequential(Patchify(m.patch_size, m.patch_stride), *encoder.stages)   # child "i" is stage i
    blocks = split(layers, after=[str(end) for end in accumulate(m.stages_per_module)][:-1])
    objective = partial(OBJECTIVES[o.name], prediction_steps=o.prediction_steps, skip_steps=o.skip_steps,
                        num_negatives=o.num_negatives)
    sample = torch.zeros(1, in_channels, config.data.crop, config.data.crop)
    grid = m.grid(config.data.crop)
    return isolate(blocks, objective, sample, readouts=[PatchGridPool(grid) for _ in blocks])
