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
from greedy_infomax.errors import GimError
from greedy_infomax.models.pixelcnn import PixelCNN
from greedy_infomax.objectives import OBJECTIVES, InfoNCE2d


def build_modules(config: RunConfig, in_channels: int) -> nn.ModuleList:
    """The encoder's stages grouped by `model.stages_per_module`, each group with its readout and objective.

    Module 1 also cuts the images into patches; every module pools its per-patch maps into the grid its
    loss scores, while the next module receives the unpooled maps. With `model.autoregressor: pixelcnn` the last
    module's InfoNCE predicts from a PixelCNN's context (end-to-end CPC); the module's output stays the encoder's.
    """
    m = config.model
    encoder = PatchResNet(in_channels, m.block, m.blocks_per_stage, m.planes, m.stem_channels, m.stem_kernel)
    layers = nn.Sequential(Patchify(m.patch_size, m.patch_stride), *encoder.stages)   # child "i" is stage i
    blocks = split(layers, after=[str(end) for end in accumulate(m.stages_per_module)][:-1])
    objectives = [_objective(config)] * len(blocks)
    if m.autoregressor == "pixelcnn":
        objectives[-1] = partial(_with_pixelcnn, objectives[-1], layers=m.pixelcnn_layers)
    sample = torch.zeros(1, in_channels, config.data.crop, config.data.crop)
    grid = m.grid(config.data.crop)
    return isolate(blocks, objectives, sample, readouts=[PatchGridPool(grid) for _ in blocks])


def _objective(config: RunConfig) -> partial:
    """The configured objective's class with the options of its name."""
    o = config.objective
    options = ({"num_classes": o.num_classes} if o.name == "supervised" else
               {"prediction_steps": o.prediction_steps, "skip_steps": o.skip_steps, "num_negatives": o.num_negatives,
                "negative_groups": o.negative_groups})
    return partial(OBJECTIVES["vision"][o.name], **options)


def _with_pixelcnn(objective: partial, channels: int, layers: int) -> nn.Module:
    if objective.func is not InfoNCE2d:
        raise GimError("model.autoregressor: the PixelCNN is the context network of InfoNCE (objective.name "
                       "infonce_2d)")
    return objective(channels, autoregressor=PixelCNN(channels, layers))
