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


class FeatureRows:
    """Every module's (N, D) features and the (N,) labels, written batch by batch into tensors allocated for
    `capacity` rows at the first batch: concatenating the batches at the end would hold every feature twice, the
    probe's peak, and a small tensor kept per batch pins the heap between the batches' freed buffers (after
    training, glibc's heap grew by gigabytes that way). Several passes (a split, then augmented views of it) can
    fill one store. `dtype` bfloat16 halves the store (float32's range, 8 bits of mantissa); the probes compute in
    float32 whatever the store holds."""

    def __init__(self, capacity: int, dtype: torch.dtype = torch.float32) -> None:
        self.capacity = capacity
        self.dtype = dtype
        self.count = 0
        self.per_module: list[torch.Tensor] = []
        self.labels: torch.Tensor | None = None

    def add(self, features: list[torch.Tensor], labels: torch.Tensor | None) -> None:
        rows = len(features[0])
        if not self.per_module:
            self.per_module = [torch.empty(self.capacity, f.shape[1], dtype=self.dtype) for f in features]
            self.labels = None if labels is None else torch.empty(self.capacity, dtype=labels.dtype)
        if self.count + rows > len(self.per_module[0]):  # a loader longer than it said: grow, once in a while
            more = max(rows, len(self.per_module[0]))
            self.per_module = [_grown(store, more) for store in self.per_module]
            self.labels = None if self.labels is None else _grown(self.labels, more)
        written = slice(self.count, self.count + rows)
        for store, batch in zip(self.per_module, features, strict=True):
            store[written].copy_(batch)
        if self.labels is not None and labels is not None:
            self.labels[written].copy_(labels)
        self.count += rows

    def filled(self, description: str) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """The rows written so far (views of the stores, no copy), checked finite, and their labels."""
        features = finite([store[: self.count] for store in self.per_module], description)
        return features, None if self.labels is None else self.labels[: self.count]


def _grown(store: torch.Tensor, rows: int) -> torch.Tensor:
    return torch.cat([store, store.new_empty(rows, *store.shape[1:])])


def rows_of(loader: Batches) -> int:
    """The most rows one epoch of the loader yields."""
    return len(loader) * loader.batch_size


def extract_features(
    modules: nn.ModuleList,
    loader: Batches,
    pool: int,
    description: str = "features",
    epoch: int = 0,
    into: FeatureRows | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Per module, (N, D) features of every batch of the loader's epoch `epoch`; and the (N,) labels, None for an
    unlabelled split. With `into`, the rows are added to that store and all its rows so far are returned."""
    rows = FeatureRows(rows_of(loader)) if into is None else into
    for inputs, batch_labels in tqdm(
        loader.epoch(epoch), total=len(loader), desc=description, unit="batch", leave=False, dynamic_ncols=True
    ):
        rows.add(module_features(modules, inputs, pool), batch_labels)
    return rows.filled(description)


FINITE_CHUNK = 4096
"""Rows checked at a time: torch.isfinite of a whole split's features makes temporaries near twice its size."""


def finite(per_module: list[torch.Tensor], description: str) -> list[torch.Tensor]:
    """The features of each module, or an error naming the first module whose features are not all finite: a
    classifier fitted on inf or NaN reports chance, or NaN, without saying why."""
    for index, features in enumerate(per_module, start=1):
        if not all(torch.isfinite(rows).all() for rows in features.split(FINITE_CHUNK)):
            raise GimError(
                f"{description}: module {index} gives non-finite features: its weights may have diverged "
                "(metrics.jsonl counts skipped_batches), or the data holds inf or NaN"
            )
    return per_module


def raw_pixel_features(loader: BatchLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised input images, flattened: the baseline any encoder should beat."""
    batches = [(images.flatten(1).cpu(), labels.cpu()) for images, labels in loader.epoch()]
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
