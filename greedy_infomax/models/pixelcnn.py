"""The gated PixelCNN that end-to-end CPC uses as its context network on the grid of patch vectors (CPC, Sec. 3.3;
spec: 4 gated masked layers, kernel 3, vertical masking, then a 1x1 output convolution).

Row t of its output depends on rows t - L .. t of the input (L layers), never on rows below, so the context c_t
cannot see the rows t + s + k it is asked to predict. Layout of a layer (gated PixelCNN, van den Oord et al. 2016),
with the original GIM code's sizes: a vertical stack (row-causal k x k convolution, C -> 2C, gated tanh * sigmoid)
feeds, through a 1x1 map, a horizontal stack (1 x k convolution within the row, C -> 2C, gated, then 1x1 C -> C);
after the first layer the horizontal stack is residual and the vertical one adds a 1x1 map of its input. A 1x1
convolution with bias (C -> C) maps the last horizontal stack to the context.

At C = 1024 and 4 layers this is the original's 129,010,688 parameters, one for one. The last layer's vertical
output is never read, so its vertical 1x1 map (2,099,200 of them) gets no gradient and never changes: it is kept
so that the count and the parameter layout are the original's; leaving it out would compute the same function.
"""

from __future__ import annotations

import torch
from torch import nn


class RowCausalConv2d(nn.Conv2d):
    """A k x k convolution whose taps below the centre row are zero: output row t reads input rows <= t only."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int) -> None:
        super().__init__(in_channels, out_channels, kernel, padding=kernel // 2)
        mask = torch.ones(1, 1, kernel, 1)
        mask[:, :, kernel // 2 + 1 :] = 0
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class GatedLayer(nn.Module):
    """One gated layer: (vertical, horizontal) stacks (B, C, H, W) each -> the same."""

    def __init__(self, channels: int, kernel: int = 3, residual: bool = True) -> None:
        super().__init__()
        self.vertical = RowCausalConv2d(channels, 2 * channels, kernel)
        self.horizontal = nn.Conv2d(channels, 2 * channels, (1, kernel), padding=(0, kernel // 2))
        self.vertical_to_horizontal = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.horizontal_out = nn.Conv2d(channels, channels, 1)
        self.vertical_skip = nn.Conv2d(channels, 2 * channels, 1) if residual else None
        self.residual = residual

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v_pre = self.vertical(v)  # (B, 2C, H, W)
        h_pre = self.horizontal(h) + self.vertical_to_horizontal(v_pre)  # (B, 2C, H, W)
        if self.vertical_skip is not None:
            v_pre = v_pre + self.vertical_skip(v)
        h_out = self.horizontal_out(_gate(h_pre))  # (B, C, H, W)
        return _gate(v_pre), (h + h_out if self.residual else h_out)


def _gate(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class PixelCNN(nn.Module):
    """Stacked gated layers, then a 1x1 convolution of the last horizontal stack: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, layers: int = 4, kernel: int = 3) -> None:
        super().__init__()
        self.layers = nn.ModuleList(GatedLayer(channels, kernel, residual=index > 0) for index in range(layers))
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        v = h = z
        for layer in self.layers:
            v, h = layer(v, h)
        return self.out(h)
