"""The vision encoder as gradient-isolated modules: images cut into patches, a patch ResNet, cut between stages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import accumulate

import torch
from torch import nn

from greedy_infomax.models.patches import PatchGridPool, Patchify
from greedy_infomax.models.resnet import PatchResNet
from greedy_infomax.models.split import isolate, split


def patch_resnet_modules(
    in_channels: int,
    crop: int,
    objectives: Sequence[Callable[[int], nn.Module]],
    *,
    block: str,
    blocks_per_stage: Sequence[int],
    planes: Sequence[int],
    stem_channels: int,
    stem_kernel: int,
    patch_size: int,
    patch_stride: int,
    stages_per_module: Sequence[int],
    overlap: int = 0,
) -> nn.ModuleList:
    """The encoder's stages grouped by `stages_per_module`, module i scored by `objectives[i]` (a function of its
    output channels); with `overlap` N each module's loss also trains the next module's first N stages (LoCo).

    Module 1 also cuts the `crop`-sized images into patches; every module pools its per-patch maps into the grid
    its loss scores, while the next module receives the unpooled maps.
    """
    encoder = PatchResNet(in_channels, block, tuple(blocks_per_stage), tuple(planes), stem_channels, stem_kernel)
    layers = nn.Sequential(Patchify(patch_size, patch_stride), *encoder.stages)  # child "i" is stage i
    blocks = split(layers, after=[str(end) for end in accumulate(stages_per_module)][:-1])
    sample = torch.zeros(1, in_channels, crop, crop)
    grid = (crop - patch_size) // patch_stride + 1
    readouts = [PatchGridPool(grid) for _ in blocks]
    return isolate(blocks, list(objectives), sample, readouts=readouts, overlap=overlap)
