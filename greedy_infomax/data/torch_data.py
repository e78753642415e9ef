"""Torch data in the API: a map-style `Dataset` read by worker processes in a seeded, resumable order, and a user's
own `DataLoader` (or any iterable of batches) passed through; both in the `Batches` shape that training, the probes
and feature extraction read, so `train`, `probe_modules` and `embed` take either (`as_batches`)."""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, RandomSampler, SequentialSampler, default_collate

from greedy_infomax.data.loader import Batches, batch_seed, epoch_order
from greedy_infomax.errors import GimError
from greedy_infomax.placement import to_device

Data = Batches | Dataset | Iterable
"""What `train`, `probe_modules` and `embed` read: Batches, a map-style Dataset, or a DataLoader or other iterable of
batches (as_batches)."""

Transform = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]
"""A batch transform on the device (ImageTransform is one): inputs and a seeded generator when training."""


def default_workers() -> int:
    """Worker processes of a DatasetBatches: one per CPU core this process may use, at most 8. Decoding photos takes
    more CPU per sample than a small model's step, and the main process mostly waits on the accelerator."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, 8)


class DatasetBatches:
    """Batches of a map-style torch Dataset, its items read by `workers` processes (0: this one); with `seed`, a
    shuffled training order without the last incomplete batch (kept with `keep_last`), else the stored order.

    Epoch e's order, and every random draw made for batch b (those of the Dataset's `__getitem__` with torch's,
    NumPy's or Python's global generator, and those of `transform`), depend only on (seed, e, b): a run resumed at
    (e, b) reads exactly the batches an uninterrupted run would have read, whatever the number of workers. Items are
    `inputs` or `(inputs, labels)`, batched by torch's default_collate; `transform` then runs on the device.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        device: torch.device,
        seed: int | None = None,
        workers: int | None = None,
        transform: Transform | None = None,
        keep_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise GimError(f"batch_size: must be positive, got {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.device = device
        self.seed = seed
        self.workers = default_workers() if workers is None else workers
        self.transform = transform
        self.keep_last = keep_last

    def __len__(self) -> int:
        """Batches per epoch (training drops the last incomplete batch: InfoNCE wants full batches)."""
        n = len(self.dataset)
        return n // self.batch_size if self.seed is not None and not self.keep_last else -(-n // self.batch_size)

    def epoch(
        self, epoch: int = 0, start_batch: int = 0, stride: int = 1
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Batches start_batch, start_batch + stride, ... of the epoch (data-parallel replicas take turns)."""
        numbers = range(start_batch, len(self), stride)
        if not numbers:
            return
        keys = _BatchKeys(epoch_order(len(self.dataset), self.seed, epoch), self.batch_size, numbers)
        draws = (epoch,) if self.seed is None else (self.seed, epoch)
        loader = DataLoader(
            _SeededItems(self.dataset, draws),
            batch_sampler=keys,
            num_workers=self.workers,
            collate_fn=default_collate,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(batch_seed(*draws)),
        )  # not torch's global one
        for b, batch in zip(numbers, one_line_errors(loader), strict=True):
            inputs, labels = self.unpack(batch)
            inputs, labels = to_device(inputs, self.device), _labels_on(labels, self.device)
            if self.transform is not None:
                seed = None if self.seed is None else batch_seed(self.seed, epoch, b)
                inputs = self.transform(inputs, None if seed is None else torch.Generator().manual_seed(seed))
            yield inputs, labels

    def unpack(self, batch: Any) -> tuple[torch.Tensor, Any]:
        """(inputs, labels or None) of a collated batch; a subclass whose items carry more overrides this."""
        return inputs_and_labels(batch)


class _BatchKeys:
    """What the DataLoader hands its workers: (batch number, sorted item indices) for each batch to read. Sorted,
    as BatchLoader sorts them, so a batch reads files (or memory-mapped rows) in storage order."""

    def __init__(self, order: np.ndarray, batch_size: int, numbers: range) -> None:
        self.order, self.batch_size, self.numbers = order, batch_size, numbers

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        for b in self.numbers:
            yield b, np.sort(self.order[b * self.batch_size : (b + 1) * self.batch_size])

    def __len__(self) -> int:
        return len(self.numbers)


class _SeededItems(Dataset):
    """The dataset as the workers read it, one key per batch: the batch's items are read with the global generators
    seeded from (draws..., batch number), so what a Dataset draws does not depend on which worker reads it."""

    def __init__(self, dataset: Dataset, draws: tuple[int, ...]) -> None:
        self.dataset = dataset
        self.draws = draws

    def __getitems__(self, key: tuple[int, np.ndarray]) -> list[Any]:
        b, indices = key
        with seeded(batch_seed(*self.draws, b, 1)):  # 1: not the seed of the batch's transform on the device
            fetch = getattr(self.dataset, "__getitems__", None)
            return fetch(indices.tolist()) if fetch else [self.dataset[int(i)] for i in indices]

    def __len__(self) -> int:
        return len(self.dataset)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """The CPU generators of torch, NumPy and Python seeded with `seed`, and restored afterwards (workers=0 reads in
    the training process, whose draws must not change)."""
    states = torch.random.get_rng_state(), np.random.get_state(), random.getstate()
    torch.random.default_generator.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


def one_line_errors(batches: Iterable[Any]) -> Iterator[Any]:
    """The batches; a GimError raised in a worker, which torch re-raises with the worker's traceback as its
    message, is raised again with its own one line."""
    try:
        yield from batches
    except GimError as error:
        text = str(error)
        if not text.startswith("Caught GimError"):
            raise
        raise GimError(text.rstrip().splitlines()[-1].split(": ", 1)[-1]) from None


def inputs_and_labels(batch: Any) -> tuple[torch.Tensor, Any]:
    """A collated batch of `inputs` or `(inputs, labels)` items (a tensor, or a list of one or two) as (inputs,
    labels or None)."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (list, tuple)) and len(batch) in (1, 2) and isinstance(batch[0], torch.Tensor):
        return batch[0], batch[1] if len(batch) == 2 else None
    kind = f"a {type(batch).__name__} of {len(batch)}" if isinstance(batch, (list, tuple)) else type(batch).__name__
    raise GimError(f"a batch must be inputs or (inputs, labels) as tensors, got {kind}")


def _labels_on(labels: Any, device: torch.device) -> Any:
    if labels is None:
        return None
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(labels)
    return to_device(labels, device)


class IterableBatches:
    """A user's own DataLoader, or any re-iterable with len() of `inputs` or `(inputs, labels)` batches, on the device.

    Its order is its own. A resumed run skips the first `start_batch` batches of the epoch by reading them, so it
    continues exactly where an uninterrupted run would be only if iterating epoch e gives the same batches in any
    process: a DataLoader that does not shuffle, whose `generator` is set (re-seeded here from its initial seed and
    e before each epoch, which also seeds its workers' random draws), or whose sampler has `set_epoch` (called with
    e, as DistributedSampler wants); a list or tuple of batches. Elsewhere (shuffled by torch's global generator, a
    stream) a resumed epoch is another draw, and a warning says so.
    """

    def __init__(self, batches: Iterable[Any], device: torch.device, batch_size: int | None = None) -> None:
        if not hasattr(batches, "__len__"):
            raise GimError(
                f"a {type(batches).__name__} has no len(): training counts epochs in batches; give it "
                "__len__, or pass a map-style Dataset"
            )
        self.batches = batches
        self.device = device
        self.batch_size = getattr(batches, "batch_size", None) or batch_size
        if self.batch_size is None:
            raise GimError(f"a {type(batches).__name__} does not say its batch size: pass batch_size")
        self.generators = _generators(batches)
        self.initial_seeds = [generator.initial_seed() for generator in self.generators]
        self.seeded = _seeded(batches)

    def __len__(self) -> int:
        return len(self.batches)

    def epoch(
        self, epoch: int = 0, start_batch: int = 0, stride: int = 1
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Batches start_batch, start_batch + stride, ... of the epoch, the others read and passed over."""
        if start_batch and not self.seeded:
            warnings.warn(
                f"resuming at batch {start_batch} of epoch {epoch} of a {type(self.batches).__name__} whose "
                "order is not seeded per epoch: the batches passed over are not the ones trained before; "
                "give its DataLoader a generator (torch.Generator().manual_seed(S))",
                stacklevel=2,
            )
        for generator, initial in zip(self.generators, self.initial_seeds, strict=True):
            generator.manual_seed(batch_seed(initial, epoch))
        sampler = getattr(self.batches, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        expected = len(range(start_batch, len(self), stride))
        count = 0
        for batch in islice(self.batches, start_batch, None, stride):
            inputs, labels = inputs_and_labels(batch)
            count += 1
            yield to_device(inputs, self.device), _labels_on(labels, self.device)
        if count < expected:
            raise GimError(
                f"a {type(self.batches).__name__} gave {count} of the {expected} batches its len() "
                f"promises from batch {start_batch} of epoch {epoch}"
            )


def _generators(batches: Iterable[Any]) -> list[torch.Generator]:
    """The generators that decide a DataLoader's order and its workers' seeds: its own and its sampler's."""
    found = [getattr(batches, "generator", None), getattr(getattr(batches, "sampler", None), "generator", None)]
    unique = []
    for generator in found:
        if isinstance(generator, torch.Generator) and all(generator is not seen for seen in unique):
            unique.append(generator)
    return unique


def _seeded(batches: Iterable[Any]) -> bool:
    """Whether epoch e's batches are the same in any process (see IterableBatches)."""
    if isinstance(batches, (list, tuple)):
        return True
    if not isinstance(batches, DataLoader):
        return False
    sampler = getattr(batches.batch_sampler, "sampler", batches.sampler)
    return (
        isinstance(sampler, SequentialSampler)
        or hasattr(sampler, "set_epoch")
        or (isinstance(sampler, RandomSampler) and sampler.generator is not None)
    )


def as_batches(
    data: Data, batch_size: int | None, device: torch.device, seed: int | None = None, workers: int | None = None
) -> Batches:
    """`data` in the Batches shape: Batches (BatchLoader, WindowLoader, ...) as they are; a map-style torch Dataset
    in a DatasetBatches of `batch_size` (shuffled by `seed` when training, else in stored order); a DataLoader, or
    any other iterable of batches with len(), in an IterableBatches."""
    if hasattr(data, "epoch") and hasattr(data, "batch_size"):
        return data
    if isinstance(data, IterableDataset):
        raise GimError("an IterableDataset yields single items: pass it inside a DataLoader(dataset, batch_size=N)")
    if isinstance(data, Dataset):
        if batch_size is None:
            raise GimError(f"a {type(data).__name__} (a map-style Dataset) needs a batch_size")
        return DatasetBatches(data, batch_size, device, seed, workers)
    return IterableBatches(data, device, batch_size)
