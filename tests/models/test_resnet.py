"""The patch ResNet's surface (stages, out_channels, sizes), gradients to every parameter, and patch bookkeeping."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from greedy_infomax.tasks import PRESETS
from greedy_infomax.models.patches import PatchGridPool, Patchify
from greedy_infomax.models.resnet import PatchResNet, PreActBasicBlock, PreActBottleneck


def _parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_paper_encoder_parameter_count():
    """Grayscale bottleneck 3-4-6, planes 64/128/256, 5x5 stem of 64: conv weights and biases."""
    encoder = PatchResNet(1, "bottleneck", (3, 4, 6), (64, 128, 256), stem_channels=64, stem_kernel=5)
    assert _parameters(encoder) == 8_520_192
    stem = encoder.stages[0][0]
    assert stem.weight.shape == (64, 1, 5, 5) and stem.bias.shape == (64,)


@pytest.mark.parametrize("block, planes, out_channels", [
    ("bottleneck", (64, 128, 256), [256, 512, 1024]),
    ("basic", (64, 128, 256), [64, 128, 256]),
])
def test_out_channels_and_spatial_sizes(block, planes, out_channels):
    encoder = PatchResNet(1, block, (1, 1, 1), planes, stem_channels=64, stem_kernel=5)
    assert encoder.out_channels == out_channels
    x = torch.randn(2, 1, 16, 16)                                             # (patches, 1, 16, 16)
    sizes = []
    with torch.no_grad():
        for stage, channels in zip(encoder.stages, out_channels):
            x = stage(x)
            assert x.shape[:2] == (2, channels)
            sizes.append(tuple(x.shape[2:]))
    assert sizes == [(16, 16), (8, 8), (4, 4)]


@pytest.mark.parametrize(("in_channels", "stride"), [(16, 1), (8, 2)], ids=["identity", "projection"])
def test_blocks_are_pre_activation_residuals_as_the_spec_writes_them(in_channels, stride):
    """Basic: conv2(relu(conv1(relu x))) + s; bottleneck: conv3(relu(conv2(relu(conv1(relu x))))) + s, where s is
    x itself, or a strided 1x1 conv of relu x when the shape changes (spec: "on the activated input")."""
    torch.manual_seed(0)
    x = torch.randn(2, in_channels, 8, 8)          # negative values too, so every missing or extra ReLU shows
    for block in (PreActBasicBlock(in_channels, 16, stride), PreActBottleneck(in_channels, 4, stride)):
        a = F.relu(x)
        shortcut = x if stride == 1 else F.conv2d(a, block.shortcut.weight, block.shortcut.bias, stride=stride)
        convs = [block.conv1, block.conv2] + ([block.conv3] if isinstance(block, PreActBottleneck) else [])
        h = a
        for index, conv in enumerate(convs):
            h = F.conv2d(h if index == 0 else F.relu(h), conv.weight, conv.bias, stride=conv.stride,
                         padding=conv.padding)
        assert (block.shortcut is None) == (stride == 1)
        torch.testing.assert_close(block(x), h + shortcut)


def test_unknown_block_lists_the_valid_ones():
    with pytest.raises(ValueError, match="wide") as error:
        PatchResNet(1, "wide", (1,), (4,), 4, 3)
    assert "basic" in str(error.value) and "bottleneck" in str(error.value)


@pytest.mark.parametrize("block", ["bottleneck", "basic"])
def test_every_parameter_gets_a_gradient(block):
    torch.manual_seed(0)
    encoder = PatchResNet(1, block, (2, 2, 2), (4, 8, 8), stem_channels=4, stem_kernel=3)
    encoder(torch.randn(3, 1, 8, 8)).square().mean().backward()
    for name, parameter in encoder.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_parameter_of_every_preset_gets_a_gradient_from_its_module_loss(preset_step, name):
    """After one train_step the .grad of each parameter is the gradient of its own module's loss."""
    result = preset_step(name)
    for index, module in enumerate(result.modules, start=1):
        for parameter_name, parameter in module.named_parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"module {index}: {parameter_name}"


def test_patchify_cuts_row_major_windows():
    images = torch.arange(2 * 3 * 12 * 12, dtype=torch.float32).reshape(2, 3, 12, 12)    # (B, C, H, W)
    patches = Patchify(patch_size=6, stride=3)(images)                                   # (B * 3 * 3, C, 6, 6)
    assert patches.shape == (2 * 3 * 3, 3, 6, 6)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                window = images[b, :, 3 * i:3 * i + 6, 3 * j:3 * j + 6]
                assert torch.equal(patches[(b * 3 + i) * 3 + j], window)


def test_constant_patches_pool_back_to_their_grid_positions():
    B, C, g = 2, 3, 4
    values = torch.randn(B, C, g, g)                                                     # (B, C, g, g)
    patches = values.permute(0, 2, 3, 1).reshape(B * g * g, C, 1, 1).expand(-1, -1, 5, 5)  # constant 5x5 maps
    assert torch.allclose(PatchGridPool(g)(patches), values, atol=1e-6)


@pytest.mark.parametrize("size, patch, stride", [(28, 8, 4), (64, 16, 8), (12, 4, 4)])
def test_patchify_then_pool_is_average_pooling(size, patch, stride):
    """Mean of every patch, placed on the grid, is exactly avg_pool2d with the patch as kernel."""
    images = torch.randn(3, 2, size, size)
    grid = (size - patch) // stride + 1
    pooled = PatchGridPool(grid)(Patchify(patch, stride)(images))                       # (B, C, g, g)
    assert torch.allclose(pooled, F.avg_pool2d(images, patch, stride), atol=1e-6)


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
def test_pooling_returns_gradients_in_the_layout_of_the_feature_maps(memory_format):
    """A channels-last encoder must get a channels-last gradient, or its backward mixes layouts at every join."""
    leaf = torch.randn(2 * 3 * 3, 8, 5, 5).contiguous(memory_format=memory_format).requires_grad_(True)
    maps = leaf * 1                        # not a leaf: .grad of a leaf is re-laid out like the leaf anyway
    received = []
    maps.register_hook(received.append)
    pooled = PatchGridPool(3)(maps)
    pooled.backward(torch.randn_like(pooled))
    assert received[0].is_contiguous(memory_format=memory_format)
    torch.testing.assert_close(pooled, maps.detach().mean(dim=(2, 3)).unflatten(0, (2, 3, 3)).permute(0, 3, 1, 2))
