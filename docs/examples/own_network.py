"""Train a network of your own greedily on Fashion-MNIST, probe every module, and write module 2's features.

    python docs/examples/own_network.py          # one epoch of 60,000 images
"""
from __future__ import annotations

from collections import OrderedDict
from functools import partial
from pathlib import Path

import torch
from torch import nn

from greedy_infomax import api as gim


def network() -> nn.Sequential:
    """Any nn.Sequential with named layers: a plain CNN that knows nothing of Greedy InfoMax."""
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 32, 3, stride=2, padding=1), relu1=nn.ReLU(),        # (B, 1, H, W) -> H/2 x W/2
        conv2=nn.Conv2d(32, 64, 3, stride=2, padding=1), relu2=nn.ReLU(),       # -> H/4 x W/4
        conv3=nn.Conv2d(64, 64, 3, padding=1), relu3=nn.ReLU(),                 # -> H/4 x W/4
    ))


def main(output: Path = Path("runs"), limit: int | None = None, epochs: int = 1) -> list[dict]:
    """Returns the probe table: one row per module with its linear and kNN test accuracy."""
    device = torch.device("cpu")
    train_images, test_images = (gim.read_fashion_mnist(None, split) for split in ("train", "test"))
    if limit is not None:
        train_images, test_images = (images.first(limit) for images in (train_images, test_images))
    transform = gim.ImageTransform.for_data(crop=28, flip=False, grayscale=True, spec=train_images.spec)
    loader = gim.BatchLoader(train_images, 32, transform, device, seed=0)        # shuffled, one seed per epoch

    # The paper's recipe for images: cut every image into a 6 x 6 grid of overlapping 8 x 8 patches, encode each
    # patch on its own, and let each module's InfoNCE predict, from every row of the grid of patch vectors,
    # the rows 2 and 3 below it (row 1 below overlaps it). Cut after each ReLU: three modules.
    torch.manual_seed(0)
    encoder = nn.Sequential(OrderedDict(patches=gim.Patchify(8, 4), **dict(network().named_children())))
    blocks = gim.split(encoder, after=["relu1", "relu2"])
    infonce = partial(gim.InfoNCE2d, prediction_steps=2, skip_steps=1, num_negatives=16)
    images, _ = next(loader.epoch())
    modules = gim.isolate(blocks, infonce, sample=images[:1], readouts=[gim.PatchGridPool(6) for _ in blocks])

    run = gim.RunFolder.create(output / "own-network")      # runs/own-network/DATE-TIME: metrics, checkpoints
    gim.train(modules, loader, run, gim.TrainConfig(epochs=epochs, lr=1e-3, device="cpu"))

    # Frozen features of every module, its grid average-pooled to 2 x 2 cells: linear and kNN probes.
    probe_train, probe_test = (gim.BatchLoader(images, 256, transform, device) for images in (train_images, test_images))
    rows = gim.probe_modules(modules, probe_train, probe_test, gim.ProbeConfig(pool=2, epochs=10), num_classes=10)
    for row in rows:
        print(f"module {row['module']}: {row['features']} features, linear {row['linear']:.3f}, kNN {row['knn']:.3f}")

    features = gim.embed(modules, probe_test, module=2, pool=2)                 # {"features", "labels"}
    print("written:", gim.array_writer(run.path / "module-2-test.npz")(features))
    return rows


if __name__ == "__main__":
    main()
