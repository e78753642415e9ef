"""The paper's encoder from a preset, trained like `gim pretrain` does, then used as a feature extractor.

    python docs/examples/run_features.py         # the fashion-mnist preset: one epoch, about 4 minutes on 2 cores
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from greedy_infomax import api as gim


def main(output: Path = Path("runs"), limit: int | None = None, max_steps: int | None = None) -> torch.Tensor:
    """Returns the (8, D) features of module 3 for the first 8 test images."""
    config = gim.PRESETS["fashion-mnist"]
    config = replace(config, data=replace(config.data, limit=limit), train=replace(config.train, max_steps=max_steps))
    run = gim.RunFolder.create(output / "fashion-mnist", config=config)      # config.yaml describes the run
    gim.pretrain(config, run)                                                  # what `gim pretrain` runs

    extractor = gim.load_extractor(run.path, module=3)                        # frozen modules 1-3, newest checkpoint
    images = torch.from_numpy(gim.read_fashion_mnist(None, "test").images[:8].copy())   # uint8 (8, 1, 28, 28)
    features = extractor(extractor.transform(images))                          # (8, 128 * 6 * 6): the probes' pool
    print(features.shape)
    return features


if __name__ == "__main__":
    main()
