"""Frozen features of every module, extracted in one pass over a dataset and cached in memory."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from greedy_infomax.data.loader import Batches, BatchLoader
from greedy_infomax.errors import GimError

POOLS = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}
"""Average pooling by the number of position axes after (B, C): time, grid rows and columns, ..."""


def fingerprint(modules: nn.Module) -> str:
    """A hash of every parameter: equal before and after probing proves the encoder stayed frozen."""
    digest = hashlib.sha256()
    for name, tensor in modules.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())  # C order whatever the strides
    return digest.hexdigest()


@contextmanager
def left_unchanged(modules: nn.Module, name: str) -> Iterator[None]:
    """Fail if the block changed any parameter: the proof that probing kept the encoder frozen."""
    before = fingerprint(modules)
    yield
    if fingerprint(modules) != before:
        raise RuntimeError(f"probing changed the {name} encoder's parameters")


def pool_positions(z: torch.Tensor, cells: int) -> torch.Tensor:
    """(B, C, *positions) -> (B, C * cells ** len(positions)): every position axis (grid rows and columns, time)
    averaged into `cells` regions, flattened; (B, C) vectors pass through."""
    return z if z.ndim == 2 else POOLS[z.ndim - 2](z, cells).flatten(1)


def frozen_pass(
    modules: nn.ModuleList, x: torch.Tensor, view: Callable[[nn.Module, torch.Tensor], torch.Tensor]
) -> list[torch.Tensor]:
    """`view(module, output)` of every module for the batch x, from one frozen forward pass (eval mode, no
    autograd; each module and its view run in the module's own precision)."""
    modules.eval()
    views = []
    with torch.no_grad():
        for module in modules:
            with module.precision(x.device):
                x = module(x)
                views.append(view(module, x))
    return views


def module_features(modules: nn.ModuleList, x: torch.Tensor, pool: int) -> list[torch.Tensor]:
    """Each module's (B, D) features of the batch x: its readout of its output, pooled."""
    return frozen_pass(modules, x, lambda module, h: pool_positions(module.readout(h).float(), pool))


def extract_features(
    modules: nn.ModuleList, loader: Batches, pool: int, description: str = "features", epoch: int = 0
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Per module, (N, D) features of every batch of the loader's epoch `epoch`; and the (N,) labels, None for an
    unlabelled split."""
    per_module: list[list[torch.Tensor]] = [[] for _ in modules]
    labels = []
    for inputs, batch_labels in tqdm(
        loader.epoch(epoch), total=len(loader), desc=description, unit="batch", leave=False, dynamic_ncols=True
    ):
        for store, features in zip(per_module, module_features(modules, inputs, pool)):
            store.append(features.cpu())
        if batch_labels is not None:
            labels.append(batch_labels.cpu())
    return finite([torch.cat(store) for store in per_module], description), torch.cat(labels) if labels else None


def finite(per_module: list[torch.Tensor], description: str) -> list[torch.Tensor]:
    """The features of each module, or an error naming the first module whose features are not all finite: a
    classifier fitted on inf or NaN reports chance, or NaN, without saying why."""
    for index, features in enumerate(per_module, start=1):
        if not torch.isfinite(features).all():
            raise GimError(
                f"{description}: module {index} gives non-finite features: its weights may have diverged "
                "(metrics.jsonl counts skipped_batches), or the data holds inf or NaN"
            )
    return per_module


def raw_pixel_features(loader: BatchLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised input images, flattened: the baseline any encoder should beat."""
    batches = [(images.flatten(1).cpu(), labels.cpu()) for images, labels in loader.epoch()]
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
