"""Minibatches of an ImageArray: a seeded order per epoch, resumable at any batch, transformed on the device."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch

from greedy_infomax.data.spec import ImageArray
from greedy_infomax.data.transforms import ImageTransform
from greedy_infomax.data.views import TwoViewTransform
from greedy_infomax.placement import to_device


class Batches(Protocol):
    """What training and feature extraction read: BatchLoader, the speech loaders, or any class of this shape."""

    batch_size: int

    def __len__(self) -> int:
        """Batches per epoch."""

    def epoch(self, epoch: int = 0, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """(inputs, labels or None) batches of one epoch from `start_batch` on, on the device training uses."""


class BatchLoader:
    """Yields (images, labels) batches; with `seed`, a shuffled, augmented training order, else evaluation order.

    The order of epoch e and the augmentation of batch b depend only on (seed, e, b), so a run resumed at
    (e, b) sees exactly the batches an uninterrupted run would have seen.
    """

    def __init__(
        self,
        array: ImageArray,
        batch_size: int,
        transform: ImageTransform | TwoViewTransform,
        device: torch.device,
        seed: int | None = None,
        keep_last: bool = False,
    ) -> None:
        self.array = array
        self.batch_size = batch_size
        self.transform = transform
        self.device = device
        self.seed = seed
        self.keep_last = keep_last
        """With `seed`, keep the last incomplete batch too: a probe trained under augmentation sees every image
        every epoch."""

    def __len__(self) -> int:
        """Batches per epoch (training drops the last incomplete batch: InfoNCE wants full batches)."""
        n = len(self.array)
        return n // self.batch_size if self.seed is not None and not self.keep_last else -(-n // self.batch_size)

    def epoch(
        self, epoch: int = 0, start_batch: int = 0, stride: int = 1
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Batches start_batch, start_batch + stride, ... of the epoch (data-parallel replicas take turns)."""
        order = epoch_order(len(self.array), self.seed, epoch)
        for b in range(start_batch, len(self), stride):
            index = np.sort(order[b * self.batch_size : (b + 1) * self.batch_size])
            images = to_device(torch.from_numpy(np.ascontiguousarray(self.array.images[index])), self.device)
            labels = None
            if self.array.labels is not None:
                labels = to_device(torch.from_numpy(np.asarray(self.array.labels[index], dtype=np.int64)), self.device)
            generator = None if self.seed is None else torch.Generator().manual_seed(batch_seed(self.seed, epoch, b))
            yield self.transform(images, generator), labels


def batch_seed(*draws: int) -> int:
    """One seed from several numbers, e.g. (seed, epoch, batch): the random draws of a batch depend on these alone."""
    return int(np.random.SeedSequence(draws).generate_state(1)[0])


def epoch_order(count: int, seed: int | None, epoch: int) -> np.ndarray:
    """The sample order of an epoch: seeded by (seed, epoch) when shuffling, else the stored order.

    It depends on nothing else, so a run resumed at any batch sees the same order (images and audio alike).
    """
    return np.arange(count) if seed is None else np.random.default_rng((seed, epoch)).permutation(count)
