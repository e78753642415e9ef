"""Pre-activation ResNet without BatchNorm, encoding each image patch independently (paper, Sec. 4.1).

Every model exposes the same surface: `stages` (an nn.ModuleList) and `out_channels` (one per stage).
How stages are grouped into gradient-isolated modules is configuration (see models/vision.py and models/split.py).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class PreActBasicBlock(nn.Module):
    """ReLU -> 3x3 (stride s) -> ReLU -> 3x3, plus a shortcut; no normalisation."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(planes, out, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out, 1, stride=stride) if stride != 1 or in_channels != out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(x)
        shortcut = x if self.shortcut is None else self.shortcut(a)
        return self.conv2(F.relu(self.conv1(a))) + shortcut


class PreActBottleneck(nn.Module):
    """ReLU -> 1x1 -> ReLU -> 3x3 (stride s) -> ReLU -> 1x1 (4x wider), plus a shortcut; no normalisation."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1)
        self.conv3 = nn.Conv2d(planes, out, 1)
        self.shortcut = nn.Conv2d(in_channels, out, 1, stride=stride) if stride != 1 or in_channels != out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(x)
        shortcut = x if self.shortcut is None else self.shortcut(a)
        return self.conv3(F.relu(self.conv2(F.relu(self.conv1(a))))) + shortcut


BLOCKS: dict[str, type[PreActBasicBlock] | type[PreActBottleneck]] = {
    "basic": PreActBasicBlock,
    "bottleneck": PreActBottleneck,
}


class PatchResNet(nn.Module):
    """Stem conv + stages of pre-activation residual blocks; stage 1 keeps the resolution, later ones halve it.

    Input and output are batches of patches (B * patches, C, h, w); the stem belongs to stage 1.
    """

    def __init__(
        self,
        in_channels: int,
        block: str,
        blocks_per_stage: tuple[int, ...],
        planes: tuple[int, ...],
        stem_channels: int,
        stem_kernel: int,
    ) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; choose one of: {', '.join(BLOCKS)}")
        block_type = BLOCKS[block]
        stem = nn.Conv2d(in_channels, stem_channels, stem_kernel, padding=stem_kernel // 2)
        channels = stem_channels
        self.stages = nn.ModuleList()
        self.out_channels: list[int] = []
        for index, (count, width) in enumerate(zip(blocks_per_stage, planes)):
            layers: list[nn.Module] = [stem] if index == 0 else []
            for position in range(count):
                stride = 2 if index > 0 and position == 0 else 1
                layers.append(block_type(channels, width, stride))
                channels = width * block_type.expansion
            self.stages.append(nn.Sequential(*layers))
            self.out_channels.append(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x
