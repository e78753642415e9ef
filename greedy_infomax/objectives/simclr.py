"""SimCLR's NT-Xent on a module's pooled, projected output (Chen et al. 2020, Sec. 2.1, Eq. 1), one per module."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from greedy_infomax.objectives.projector import Projector


class SimCLR(nn.Module):
    """L = -mean_i log( exp(s_{i,j(i)} / tau) / sum_{k != i} exp(s_{i,k} / tau) ),  s_{i,k} = cos(p_i, p_k)

    over the 2B projections p of the batch, where j(i) is the other view of row i's image (i + B or i - B): each
    projection must pick its partner out of the 2B - 1 others, so the other 2B - 2 rows serve as negatives. The
    temperature tau sets how sharply the hardest negatives weigh; the default 0.5 is the value SimCLR reports best for
    its small CIFAR-10 images (App. B.9).

    Args:
        channels: C of the module's output z (2B, C, *positions).
        temperature: tau.
        hidden_dim: width of the hidden layer of the module's own projector.
        projection_dim: D, the width of its projections; None: 128, SimCLR's.
    """

    views = 2  # rows b and B + b of a batch are two augmented views of image b (data/views.py)

    def __init__(
        self, channels: int, temperature: float = 0.5, hidden_dim: int = 512, projection_dim: int | None = None
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"SimCLR needs a positive temperature, got {temperature}")
        self.temperature = temperature
        self.projector = Projector(channels, hidden_dim, projection_dim or 128)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Args: z (2B, C, *positions), rows [0, B) view 1 and [B, 2B) view 2; labels are unused."""
        return self.loss(*self.projector(z))

    def loss(self, p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
        """NT-Xent of the projections p1, p2 (B, D) of the two views."""
        B = p1.shape[0]
        p = F.normalize(torch.cat([p1, p2]), dim=1)  # (2B, D)
        logits = p @ p.T / self.temperature  # (2B, 2B)
        logits = logits.masked_fill(torch.eye(2 * B, dtype=torch.bool, device=p.device), float("-inf"))
        partner = torch.arange(2 * B, device=p.device).roll(B)  # (2B,): i + B mod 2B
        return F.cross_entropy(logits, partner)
