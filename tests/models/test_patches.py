"""Patch bookkeeping: Patchify against a loop over the grid, PatchGridPool against per-patch means, and the two
together as average pooling."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from greedy_infomax.models.patches import PatchGridPool, Patchify


@pytest.mark.parametrize(("height", "width", "patch", "stride"), [(12, 12, 6, 3), (10, 14, 4, 2), (9, 9, 3, 3)])
def test_patchify_cuts_row_major_windows(height, width, patch, stride):
    images = torch.arange(2 * 3 * height * width, dtype=torch.float32).reshape(2, 3, height, width)  # (B, C, H, W)
    rows, columns = (height - patch) // stride + 1, (width - patch) // stride + 1
    patches = Patchify(patch, stride)(images)  # (B * rows * columns, C, p, p)
    assert patches.shape == (2 * rows * columns, 3, patch, patch)
    for b in range(2):
        for i in range(rows):
            for j in range(columns):
                window = images[b, :, stride * i : stride * i + patch, stride * j : stride * j + patch]
                assert torch.equal(patches[(b * rows + i) * columns + j], window)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_grid_pool_places_each_patch_mean_at_its_grid_position(memory_format):
    B, C, g = 2, 3, 4
    maps = torch.randn(B * g * g, C, 5, 3).contiguous(memory_format=memory_format)  # (B * g * g, C, h, w)
    pooled = PatchGridPool(g)(maps)  # (B, C, g, g)
    assert pooled.shape == (B, C, g, g)
    for b in range(B):
        for i in range(g):
            for j in range(g):
                torch.testing.assert_close(pooled[b, :, i, j], maps[(b * g + i) * g + j].mean(dim=(1, 2)))


def test_constant_patches_pool_back_to_their_grid_positions():
    B, C, g = 2, 3, 4
    values = torch.randn(B, C, g, g)  # (B, C, g, g)
    patches = values.permute(0, 2, 3, 1).reshape(B * g * g, C, 1, 1).expand(-1, -1, 5, 5)  # constant 5x5 maps
    assert torch.allclose(PatchGridPool(g)(patches), values, atol=1e-6)


@pytest.mark.parametrize("size, patch, stride", [(28, 8, 4), (64, 16, 8), (12, 4, 4)])
def test_patchify_then_pool_is_average_pooling(size, patch, stride):
    """Mean of every patch, placed on the grid, is exactly avg_pool2d with the patch as kernel."""
    images = torch.randn(3, 2, size, size)
    grid = (size - patch) // stride + 1
    pooled = PatchGridPool(grid)(Patchify(patch, stride)(images))  # (B, C, g, g)
    assert torch.allclose(pooled, F.avg_pool2d(images, patch, stride), atol=1e-6)


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
def test_pooling_returns_gradients_in_the_layout_of_the_feature_maps(memory_format):
    """A channels-last encoder must get a channels-last gradient, or its backward mixes layouts at every join."""
    leaf = torch.randn(2 * 3 * 3, 8, 5, 5).contiguous(memory_format=memory_format).requires_grad_(True)
    maps = leaf * 1  # not a leaf: .grad of a leaf is re-laid out like the leaf anyway
    received = []
    maps.register_hook(received.append)
    pooled = PatchGridPool(3)(maps)
    pooled.backward(torch.randn_like(pooled))
    assert received[0].is_contiguous(memory_format=memory_format)
    torch.testing.assert_close(pooled, maps.detach().mean(dim=(2, 3)).unflatten(0, (2, 3, 3)).permute(0, 3, 1, 2))
