"""The patch ResNet's surface (stages, out_channels, sizes) and gradients to every parameter."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from greedy_infomax.models.resnet import PatchResNet, PreActBasicBlock, PreActBottleneck
from greedy_infomax.tasks import PRESETS


def _parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_paper_encoder_parameter_count():
    """Grayscale bottleneck 3-4-6, planes 64/128/256, 5x5 stem of 64: conv weights and biases."""
    encoder = PatchResNet(1, "bottleneck", (3, 4, 6), (64, 128, 256), stem_channels=64, stem_kernel=5)
    assert _parameters(encoder) == 8_520_192
    stem = encoder.stages[0][0]
    assert stem.weight.shape == (64, 1, 5, 5) and stem.bias.shape == (64,)


@pytest.mark.parametrize(
    "block, planes, out_channels",
    [
        ("bottleneck", (64, 128, 256), [256, 512, 1024]),
        ("basic", (64, 128, 256), [64, 128, 256]),
    ],
)
def test_out_channels_and_spatial_sizes(block, planes, out_channels):
    encoder = PatchResNet(1, block, (1, 1, 1), planes, stem_channels=64, stem_kernel=5)
    assert encoder.out_channels == out_channels
    x = torch.randn(2, 1, 16, 16)  # (patches, 1, 16, 16)
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
    x = torch.randn(2, in_channels, 8, 8)  # negative values too, so every missing or extra ReLU shows
    for block in (PreActBasicBlock(in_channels, 16, stride), PreActBottleneck(in_channels, 4, stride)):
        a = F.relu(x)
        shortcut = x if stride == 1 else F.conv2d(a, block.shortcut.weight, block.shortcut.bias, stride=stride)
        convs = [block.conv1, block.conv2] + ([block.conv3] if isinstance(block, PreActBottleneck) else [])
        h = a
        for index, conv in enumerate(convs):
            h = F.conv2d(
                h if index == 0 else F.relu(h), conv.weight, conv.bias, stride=conv.stride, padding=conv.padding
            )
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
