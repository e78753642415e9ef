"""The CPC audio encoder's surface (stages, out_channels, hop, lengths), parameter counts, its checks, and its modules:
objectives sized per module, gradients to every parameter, a step of one module leaves the others alone."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import snapshot
from torch import nn

from greedy_infomax.errors import GimError
from greedy_infomax.models.audio import AudioEncoder, GRUStage
from greedy_infomax.objectives.infonce_1d import InfoNCE1d
from greedy_infomax.tasks import build_modules
from greedy_infomax.tasks.audio import AudioModelConfig, AudioObjectiveConfig, AudioRunConfig


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _conv(in_channels: int, out_channels: int, kernel: int) -> int:
    return in_channels * out_channels * kernel + out_channels  # weight + bias


def _gru(inputs: int, hidden: int) -> int:
    return 3 * (hidden * inputs + hidden * hidden + 2 * hidden)  # reset, update, new gates


TINY = AudioModelConfig(
    channels=(6, 6, 6),
    kernels=(5, 4, 8),
    strides=(5, 4, 8),
    paddings=(0, 0, 0),
    gru_hidden=5,
    stages_per_module=(1, 1, 1, 1),
)
"""A hop of 160 samples like the paper's: 2,560 samples -> 512 -> 128 -> 16 -> 16 steps, 6 channels, GRU 6 -> 5;
small enough for a step per module."""
SAMPLES = 2_560


def _tiny_encoder() -> AudioEncoder:
    torch.manual_seed(0)
    return AudioEncoder(1, TINY.channels, TINY.kernels, TINY.strides, TINY.paddings, TINY.gru_hidden)


def _tiny_modules(stages_per_module: tuple[int, ...]) -> nn.ModuleList:
    """The tiny encoder cut into modules; built with the same seed as `_tiny_encoder()`, so the weights match."""
    torch.manual_seed(0)
    objective = AudioObjectiveConfig(prediction_steps=2, num_negatives=3, subsample_window=8)
    return build_modules(
        AudioRunConfig(model=replace(TINY, stages_per_module=stages_per_module), objective=objective), 1
    )


def test_paper_encoder_parameter_counts():
    encoder = AudioEncoder()
    expected = [_conv(1, 512, 10), _conv(512, 512, 8)] + [_conv(512, 512, 4)] * 3 + [_gru(512, 256)]
    assert [_parameters(stage) for stage in encoder.stages] == expected
    assert expected == [5_632, 2_097_664, 1_049_088, 1_049_088, 1_049_088, 591_360]
    assert _parameters(encoder) == 5_841_920


def test_paper_module_parameter_counts():
    """GIM's objectives: Linear(512, 12 * 512) for each conv module; the GRU module predicts the 512-d conv
    features from its 256-d output: Linear(256, 12 * 512), as end-to-end CPC's single objective does."""
    gim = build_modules(AudioRunConfig(), 1)
    predictors = [_parameters(module.objective) for module in gim]
    assert predictors == [512 * 12 * 512] * 5 + [256 * 12 * 512]
    assert _parameters(gim) == 5_841_920 + 5 * 3_145_728 + 1_572_864 == 23_143_424
    cpc = build_modules(AudioRunConfig(model=AudioModelConfig(stages_per_module=(6,))), 1)
    assert _parameters(cpc) == 5_841_920 + 1_572_864 == 7_414_784


def test_paper_surface_hop_and_lengths():
    """20,480 samples -> 4095, 1023, 512, 257, 128 steps after conv 1-5, and 128 = 20,480 / hop after the GRU."""
    encoder = AudioEncoder()
    assert encoder.out_channels == [512] * 5 + [256]
    assert encoder.hop == 160
    assert encoder.lengths(20_480) == [4095, 1023, 512, 257, 128, 128]
    assert encoder.lengths(20_480)[-1] == 20_480 // encoder.hop


def test_stage_outputs_match_lengths_for_the_paper_window():
    """The paper's kernels, strides and paddings on a real 20,480-sample window, with narrow layers."""
    encoder = AudioEncoder(channels=(4, 4, 4, 4, 4), gru_hidden=3)
    x = torch.randn(2, 1, 20_480)  # (B, 1, samples)
    shapes = []
    with torch.no_grad():
        for stage in encoder.stages:
            x = stage(x)
            shapes.append(tuple(x.shape))
    expected_channels = encoder.out_channels
    assert shapes == [(2, c, t) for c, t in zip(expected_channels, encoder.lengths(20_480))]


def test_gru_stage_is_causal():
    """The context at step t depends on steps <= t only."""
    torch.manual_seed(0)
    stage = GRUStage(3, 4)
    x = torch.randn(2, 3, 10)
    changed = x.clone()
    changed[:, :, 6:] = torch.randn(2, 3, 4)
    with torch.no_grad():
        before, after = stage(x), stage(changed)
    assert before.shape == (2, 4, 10)
    assert torch.equal(before[:, :, :6], after[:, :, :6]) and not torch.equal(before[:, :, 6:], after[:, :, 6:])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": replace(TINY, strides=(5, 4, 4))}, r"model.strides: their product is 80, it must be the 160-sample"),
        (
            {"objective": AudioObjectiveConfig(prediction_steps=128, subsample_window=200)},
            r"objective.prediction_steps: module 3 outputs 128 steps per 20480-sample window, fewer than the 129",
        ),
    ],
)
def test_an_encoder_the_data_cannot_feed_is_a_config_error(change, message):
    with pytest.raises(GimError, match=message):
        build_modules(replace(AudioRunConfig(model=TINY), **change), 1)


def test_mismatched_layer_lists_are_rejected():
    with pytest.raises(ValueError, match="one entry per conv layer"):
        AudioEncoder(channels=(8, 8), kernels=(4,), strides=(2,), paddings=(1,))


@pytest.mark.parametrize("stages_per_module", [(1, 1), (2, 3), (0, 4)])
def test_stages_per_module_must_cover_every_stage(stages_per_module):
    with pytest.raises(ValueError, match="stages_per_module"):
        replace(TINY, stages_per_module=stages_per_module)


@pytest.mark.parametrize("stages_per_module", [(1, 1, 1, 1), (2, 2), (1, 3), (4,)])
def test_modules_chain_the_stages_with_objectives_sized_to_their_outputs(stages_per_module):
    """Conv modules score their own output; a module ending in the GRU predicts the last conv's output
    (C = 6) from the GRU's (Cc = 5), and outputs the GRU's."""
    encoder = _tiny_encoder()
    x = torch.randn(2, 1, SAMPLES)
    with torch.no_grad():
        expected = encoder(x)
    modules = _tiny_modules(stages_per_module)
    last = 0
    for module, count in zip(modules, stages_per_module):
        last += count
        has_gru = last == len(encoder.stages)
        assert isinstance(module.objective, InfoNCE1d) and isinstance(module.readout, nn.Identity)
        assert (module.autoregressor is not None) == has_gru
        z_channels = encoder.out_channels[min(last, len(encoder.stages) - 1) - 1]
        assert module.objective.predictors.in_features == encoder.out_channels[last - 1]
        assert module.objective.predictors.out_features == 2 * z_channels
        assert module.objective.subsample and module.objective.subsample_window == 8
        with torch.no_grad():
            x = module(x)
        assert x.shape == (2, encoder.out_channels[last - 1], encoder.lengths(SAMPLES)[last - 1])
    assert torch.equal(x, expected), "the modules together are the encoder"


@pytest.mark.parametrize("stages_per_module", [(1, 1, 1, 1), (4,)])
def test_every_parameter_of_every_module_gets_a_gradient_from_its_module_loss(stages_per_module):
    torch.manual_seed(0)
    modules = _tiny_modules(stages_per_module)
    x = torch.randn(3, 1, SAMPLES)
    for index, module in enumerate(modules, start=1):
        h, loss = module.loss(x)
        loss.backward()
        for name, parameter in module.named_parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"module {index}: {name}"
        x = h.detach()


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_stepping_module_k_changes_only_module_k(k):
    torch.manual_seed(0)
    modules = _tiny_modules((1, 1, 1, 1))
    for module in modules:
        module.configure_optimizer(lr=1e-2)
    x = torch.randn(3, 1, SAMPLES)
    with torch.no_grad():
        for module in modules[: k - 1]:
            x = module(x)
    before = snapshot(modules)
    out, loss, _ = modules[k - 1].step(x)
    after = snapshot(modules)
    assert torch.isfinite(loss) and not out.requires_grad
    for index in range(1, 5):
        changed = {
            name: not torch.equal(before[name], after[name]) for name in before if name.startswith(f"{index - 1}.")
        }
        assert changed, "every module has parameters"
        if index == k:
            assert all(changed.values()), f"module {k}: unchanged {[n for n, c in changed.items() if not c]}"
        else:
            assert not any(changed.values()), f"module {index} changed: {[n for n, c in changed.items() if c]}"
