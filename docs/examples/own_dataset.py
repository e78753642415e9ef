"""Train on a torch Dataset of your own, and probe with a DataLoader of your own.

    python docs/examples/own_dataset.py          # 4,096 generated images, one epoch
"""
from __future__ import annotations

import math
from collections import OrderedDict
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from greedy_infomax import api as gim
from own_network import network


class Stripes(Dataset):
    """Stand-in for your data: 28 x 28 noisy stripes at one of 8 angles, the label; their spacing, phase and noise
    are drawn anew each time an image is read, as a Dataset draws its augmentation. Item: ((1, 28, 28), label)."""

    def __init__(self, count: int, angles: int = 8) -> None:
        self.count = count
        self.angles = angles

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label = index % self.angles
        angle = math.pi * label / self.angles
        period = 4 + 4 * torch.rand(()).item()                            # pixels
        phase = 2 * math.pi * torch.rand(()).item()
        rows, cols = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
        waves = torch.sin(2 * math.pi * (cols * math.cos(angle) + rows * math.sin(angle)) / period + phase)
        return (waves + 1.5 * torch.randn(28, 28))[None], label


def main(output: Path = Path("runs"), train_images: int = 4096, test_images: int = 1024, epochs: int = 1) -> list[dict]:
    """Returns the probe table: one row per module with its linear and kNN test accuracy."""
    torch.manual_seed(0)
    encoder = nn.Sequential(OrderedDict(patches=gim.Patchify(8, 4), **dict(network().named_children())))
    blocks = gim.split(encoder, after=["relu1", "relu2"])
    infonce = partial(gim.InfoNCE2d, prediction_steps=2, skip_steps=1, num_negatives=16)
    modules = gim.isolate(blocks, infonce, sample=torch.zeros(1, 1, 28, 28),
                          readouts=[gim.PatchGridPool(6) for _ in blocks])

    # The library reads the Dataset with worker processes, in an order seeded by (seed, epoch); what __getitem__
    # draws from torch's, NumPy's or Python's generator is seeded by (seed, epoch, batch). So a run stopped at any
    # batch and continued with resume=True trains on exactly the batches of an uninterrupted run.
    run = gim.RunFolder.create(output / "own-dataset")
    gim.train(modules, Stripes(train_images), run, gim.TrainConfig(epochs=epochs, lr=1e-3, device="cpu"),
              batch_size=32)

    # The probe fits on the Dataset's images and tests on a DataLoader of your own; a DataLoader with a generator
    # draws the same images at every reading, as a seeded Dataset does.
    test = DataLoader(Stripes(test_images), batch_size=256, num_workers=2, generator=torch.Generator().manual_seed(1))
    rows = gim.probe_modules(modules, Stripes(train_images), test, gim.ProbeConfig(pool=2, epochs=10), num_classes=8)
    for row in rows:
        print(f"module {row['module']}: {row['features']} features, linear {row['linear']:.3f}, kNN {row['knn']:.3f}")
    return rows


if __name__ == "__main__":
    main()
