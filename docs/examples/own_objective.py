"""A loss of your own, next to ours: any nn.Module with forward(z, labels=None) -> scalar is an objective.

    python docs/examples/own_objective.py
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from greedy_infomax import api as gim
from own_network import network


class RightNeighbourNCE(nn.Module):
    """L = -mean_q log softmax_k((W z_q)^T z_k)[right(q)] over the positions q of a 4 x 4 summary of the map

    Every position predicts the vector one column to its right; all other such vectors of the batch are the
    negatives. A toy next to InfoNCE2d (which predicts rows below), to show the interface: sizes come from
    `channels`, which isolate() passes, and labels are ignored.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.predictor = nn.Linear(channels, channels, bias=False)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Args: z (B, C, H, W), the module's feature map."""
        grid = F.adaptive_avg_pool2d(z, 4).permute(0, 2, 3, 1)                      # (B, 4, 4, C)
        queries = self.predictor(grid[:, :, :-1].flatten(0, 2))                     # (B*4*3, C)
        targets = grid[:, :, 1:].flatten(0, 2)                                      # (B*4*3, C)
        scores = queries @ targets.T                                                # (Q, Q): the diagonal is right
        return F.cross_entropy(scores.float(), torch.arange(len(scores), device=z.device))


def main(output: Path = Path("runs"), limit: int = 10_000) -> list[dict]:
    """Train modules 1-2 with the loss above and module 3 with labels (greedy supervised); returns the metrics."""
    data = gim.read_fashion_mnist(None, "train").first(limit)
    transform = gim.ImageTransform.for_data(crop=28, flip=False, grayscale=True, spec=data.spec)
    loader = gim.BatchLoader(data, 32, transform, torch.device("cpu"), seed=0)
    images, _ = next(loader.epoch())
    torch.manual_seed(0)
    objectives = [RightNeighbourNCE, RightNeighbourNCE, partial(gim.Supervised, num_classes=10)]   # one per module
    modules = gim.isolate(gim.split(network(), after=["relu1", "relu2"]), objectives, sample=images[:1])
    run = gim.RunFolder.create(output / "own-objective")
    gim.train(modules, loader, run, gim.TrainConfig(epochs=1, lr=1e-3, device="cpu", log_every=2))
    print(run.metrics()[-1])                       # {"step": ..., "loss/module1": ..., "loss/module3": ..., ...}
    return run.metrics()


if __name__ == "__main__":
    main()
