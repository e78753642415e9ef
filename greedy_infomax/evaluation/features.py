"""Frozen features of every module, extracted in one pass over a dataset and cached in memory."""
from __future__ import annotations

import hashlib

import torch
from torch import nn
from tqdm import tqdm

from greedy_infomax.data.loader import BatchLoader
from greedy_infomax.models.patches import pool_grid


def fingerprint(modules: nn.Module) -> str:
    """A hash of every parameter: equal before and after probing proves the encoder stayed frozen."""
    digest = hashlib.sha256()
    for name, tensor in modules.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())  # C order whatever the strides
    return digest.hexdigest()


def extract_features(modules: nn.ModuleList, loader: BatchLoader, pool: int,
                     description: str = "features") -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per module, (N, C * pool * pool) features of the pooled patch grid; and the (N,) labels.

    The encoder runs in eval mode without autograd; every module's features come from the same forward.
    """
    modules.eval()
    per_module: list[list[torch.Tensor]] = [[] for _ in modules]
    labels = []
    with torch.no_grad():
        for images, batch_labels in tqdm(loader.epoch(), total=len(loader), desc=description, unit="batch",
                                         leave=False, dynamic_ncols=True):
            h = images
            for module, store in zip(modules, per_module):
                with module.precision(h.device):
                    h = module(h)
                    store.append(pool_grid(module.readout(h).float(), pool).cpu())
            labels.append(batch_labels.cpu())
    return [torch.cat(store) for store in per_module], torch.cat(labels)


def raw_pixel_features(loader: BatchLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised input images, flattened: the baseline any encoder should beat."""
    batches = [(images.flatten(1).cpu(), labels.cpu()) for images, labels in loader.epoch()]
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
