"""A supervised per-module loss: the greedy supervised baseline of the paper (Sec. 4.1, Table 1)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from greedy_infomax.errors import GimError


class Supervised(nn.Module):
    """L = -mean_b log softmax(W mean_p z_{b,p} + w_0)[y_b]

    The module's output z is averaged over its positions p (grid cells, time steps; none for (B, C) vectors)
    and scored by one linear classifier per module, trained with cross-entropy on the labels y. Every module
    then learns to classify on its own, with no gradient from the modules above it; with a single module it
    is the end-to-end supervised baseline. Each forward leaves the batch's classification accuracy in
    `metrics["accuracy"]`.

    Args:
        channels: C of the output z (B, C, *positions).
        num_classes: classes of the labels.
    """

    needs_labels = True

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(channels, num_classes)
        self.metrics: dict[str, torch.Tensor] = {}

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Args: z (B, C, *positions); labels (B,) class indices, required."""
        if labels is None:
            raise GimError("the supervised objective needs labels, and this batch has none (an unlabelled split?)")
        pooled = z.flatten(2).mean(2) if z.ndim > 2 else z  # (B, C)
        logits = self.classifier(pooled).float()  # (B, classes)
        self.metrics = {"accuracy": (logits.detach().argmax(1) == labels).float().mean()}
        return F.cross_entropy(logits, labels)
