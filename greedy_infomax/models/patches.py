"""Cutting images into a grid of overlapping patches and pooling per-patch features back into a grid."""

from __future__ import annotations

import torch
from torch import nn


class Patchify(nn.Module):
    """(B, C, H, W) images -> (B * gh * gw, C, p, p) patches, row-major over the grid."""

    def __init__(self, patch_size: int, stride: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.stride = stride

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        B, C = images.shape[:2]
        p = self.patch_size
        patches = images.unfold(2, p, self.stride).unfold(3, p, self.stride)  # (B, C, gh, gw, p, p)
        return patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, C, p, p)


class PatchGridPool(nn.Module):
    """(B * g * g, C, h, w) per-patch feature maps -> (B, C, g / pool, g / pool) grid of mean vectors.

    pool = 1 gives the paper's grid of patch vectors; the probes pool the grid further.
    """

    def __init__(self, grid: int) -> None:
        super().__init__()
        self.grid = grid

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # The mean's gradient is laid out like the tensor it averages: for a channels-last h, average its
        # (N, h, w, C) view, else the encoder's backward starts from a contiguous gradient that every residual join
        # then mixes with channels-last ones (slow strided kernels).
        if h.is_contiguous(memory_format=torch.channels_last) and not h.is_contiguous():
            vectors = h.permute(0, 2, 3, 1).mean(dim=(1, 2))  # (B * g * g, C)
        else:
            vectors = h.mean(dim=(2, 3))
        return vectors.unflatten(0, (-1, self.grid, self.grid)).permute(0, 3, 1, 2)  # (B, C, g, g)
