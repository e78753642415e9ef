"""The PixelCNN context network: the spec's size, and row t of its output never sees rows below t."""
from __future__ import annotations

from dataclasses import replace

import torch

from greedy_infomax.config import end_to_end

from greedy_infomax.tasks import PRESETS
from greedy_infomax.tasks import build_modules
from greedy_infomax.models.pixelcnn import PixelCNN


def test_paper_size_on_1024_channels():
    """Spec: about 129M parameters. The original's layers hold 29 C^2 + 3 x 31 C^2 weights plus biases, 2 C^2 + 2 C
    of them in a map whose output is never used, which ours leaves out."""
    assert sum(p.numel() for p in PixelCNN(1024).parameters()) == 127_961_088 - 2 * 1024 ** 2 - 2 * 1024


def test_row_t_depends_on_the_rows_above_it_only():
    """Each layer reaches one row further up (kernel 3), none down: row t sees rows t - 3 .. t after 3 layers."""
    torch.manual_seed(0)
    network = PixelCNN(6, layers=3)
    for row in range(7):
        z = torch.randn(2, 6, 7, 7, requires_grad=True)
        network(z)[:, :, row].sum().backward()
        reached = z.grad.abs().sum(dim=(0, 1, 3)) > 0                                  # (H,)
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
    assert all(p.grad is not None for p in module.objective.autoregressor.parameters())
