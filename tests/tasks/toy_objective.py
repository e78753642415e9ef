"""A toy objective in one file, as a contributor would add one: each position predicts the next one's features,
scored against the same position of the other samples of the batch (a minimal contrastive loss). It works on any
(B, C, positions...) output: grid rows are averaged over their columns first."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class NextPosition(nn.Module):
    """L = mean_{b,t} CE(softmax_n (W z_{b,t}) . z_{n,t+1}, n = b)"""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.predict = nn.Linear(channels, channels, bias=False)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        steps = (z.mean(3) if z.ndim == 4 else z).transpose(1, 2)  # (B, T, C)
        predicted, target = self.predict(steps[:, :-1]), steps[:, 1:]
        scores = torch.einsum("btc,ntc->bnt", predicted, target).float()  # (B, B, T-1): positives on b == n
        truth = torch.arange(len(z), device=z.device)[:, None].expand(-1, scores.shape[2])
        return F.cross_entropy(scores, truth)
