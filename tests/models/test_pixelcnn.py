"""The PixelCNN context network: the spec's size, and row t of its output never sees rows below t."""

from __future__ import annotations

from dataclasses import replace

import torch

from greedy_infomax.config import end_to_end
from greedy_infomax.models.pixelcnn import PixelCNN
from greedy_infomax.tasks import PRESETS, build_modules


def test_paper_size_on_1024_channels():
    """The original's autoregressor, measured by building it: per layer a 3x3 C -> 2C vertical, a 1 x 3 C -> 2C
    horizontal, 1x1 maps 2C -> 2C and C -> C, and after the first layer a 1x1 C -> 2C vertical skip; then a 1x1
    C -> C output; every convolution with a bias."""
    C = 1024
    first = (9 * C * 2 * C + 2 * C) + (3 * C * 2 * C + 2 * C) + (2 * C * 2 * C + 2 * C) + (C * C + C)
    later = first + (C * 2 * C + 2 * C)
    assert sum(p.numel() for p in PixelCNN(C).parameters()) == first + 3 * later + (C * C + C) == 129_010_688


def test_row_t_depends_on_the_rows_above_it_only():
    """Each layer reaches one row further up (kernel 3), none down: row t sees rows t - 3 .. t after 3 layers."""
    torch.manual_seed(0)
    network = PixelCNN(6, layers=3)
    for row in range(7):
        z = torch.randn(2, 6, 7, 7, requires_grad=True)
        network(z)[:, :, row].sum().backward()
        reached = z.grad.abs().sum(dim=(0, 1, 3)) > 0  # (H,)
        assert reached.tolist() == [row - 3 <= r <= row for r in range(7)], row


def test_end_to_end_cpc_predicts_from_the_pixelcnn_and_outputs_the_encoder():
    config = end_to_end(PRESETS["smoke"])
    config = replace(config, model=replace(config.model, autoregressor="pixelcnn"))
    [module] = build_modules(config, 1)
    assert isinstance(module.objective.autoregressor, PixelCNN)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(module(x), module.block(x)), "the probes read the encoder, not the context"
    _, loss = module.loss(x)
    loss.backward()
    unread = {"layers.3.vertical_skip.weight", "layers.3.vertical_skip.bias"}  # the last vertical output's
    for name, parameter in module.objective.autoregressor.named_parameters():
        assert (parameter.grad is None) == (name in unread), name
