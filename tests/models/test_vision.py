"""The vision encoder as modules: how many, what each outputs and scores, and that every cut holds the same
layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from greedy_infomax.models.vision import patch_resnet_modules

# 20x20 crops -> a 4x4 grid of 8x8 patches; stage 1 keeps 8x8 maps, stages 2 and 3 halve them.
CROP, GRID, PATCH_SIDES = 20, 4, [8, 4, 2]


class Scored(nn.Module):
    """A stand-in objective that remembers the channels it was built for."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels


def build(stages_per_module: tuple[int, ...], block: str = "basic", seed: int = 0) -> nn.ModuleList:
    torch.manual_seed(seed)
    return patch_resnet_modules(
        1,
        CROP,
        [Scored] * len(stages_per_module),
        block=block,
        blocks_per_stage=(1, 1, 1),
        planes=(4, 8, 6),
        stem_channels=4,
        stem_kernel=3,
        patch_size=8,
        patch_stride=4,
        stages_per_module=stages_per_module,
    )


@pytest.mark.parametrize(
    ("stages_per_module", "block", "stage_channels"),
    [
        ((1, 1, 1), "basic", [4, 8, 6]),
        ((1, 2), "basic", [4, 8, 6]),
        ((2, 1), "basic", [4, 8, 6]),
        ((3,), "basic", [4, 8, 6]),
        ((1, 2), "bottleneck", [16, 32, 24]),  # 4x the planes
    ],
)
def test_each_module_outputs_the_patch_maps_of_its_last_stage_and_scores_their_grid(
    stages_per_module, block, stage_channels
):
    modules = build(stages_per_module, block)
    assert len(modules) == len(stages_per_module)
    x = torch.randn(2, 1, CROP, CROP)  # (B, 1, crop, crop)
    last_stage = -1
    with torch.no_grad():
        for module, stages in zip(modules, stages_per_module):
            last_stage += stages
            channels, side = stage_channels[last_stage], PATCH_SIDES[last_stage]
            x = module(x)
            assert x.shape == (2 * GRID * GRID, channels, side, side)  # (B * g * g, C, h, w): unpooled
            assert module.readout(x).shape == (2, channels, GRID, GRID)  # (B, C, g, g): what the loss scores
            assert module.objective.channels == channels


def test_one_module_and_three_modules_hold_the_same_layers():
    """Built with the same seed, the end-to-end cut and GIM's cut have the same weights in the same order, and the
    end-to-end module's output is the last of the three modules' chained outputs."""
    [whole] = build((3,))
    cut = build((1, 1, 1))
    whole_weights = list(whole.block.parameters())
    cut_weights = [parameter for module in cut for parameter in module.block.parameters()]
    assert len(whole_weights) == len(cut_weights)
    assert all(torch.equal(a, b) for a, b in zip(whole_weights, cut_weights))
    x = torch.randn(2, 1, CROP, CROP)
    with torch.no_grad():
        chained = x
        for module in cut:
            chained = module(chained)
        assert torch.equal(whole(x), chained)
