"""The network of own_network.py trained module-parallel: one module per process, the processes started by torchrun.

    torchrun --nproc-per-node 3 docs/examples/parallel.py     # 3 processes, one module each (gloo on CPU)
    python docs/examples/parallel.py                           # the very same training in one process
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from greedy_infomax import api as gim
from own_network import network


def main(output: Path = Path("runs"), limit: int | None = None, epochs: int = 1) -> gim.RunFolder | None:
    """Every process runs all of this; rank 0 alone creates the run folder and returns it, the others None."""
    images = gim.read_fashion_mnist(None, "train")
    if limit is not None:
        images = images.first(limit)
    transform = gim.ImageTransform.for_data(crop=28, flip=False, grayscale=True, spec=images.spec)
    loader = gim.BatchLoader(images, 32, transform, torch.device("cpu"), seed=0)   # only rank 0 reads batches

    torch.manual_seed(0)                         # reproducible; the processes start from rank 0's weights anyway
    blocks = gim.split(network(), after=["relu1", "relu2"])
    modules = gim.isolate(blocks, partial(gim.InfoNCE2d, prediction_steps=2), sample=next(loader.epoch())[0][:1])

    run = gim.RunFolder.create(output / "parallel") if gim.is_first_rank() else None
    gim.train(modules, loader, run, gim.TrainConfig(epochs=epochs, lr=1e-3, device="cpu"))
    return run                                   # rank 0: metrics.jsonl and one checkpoint file per module


if __name__ == "__main__":
    main()
