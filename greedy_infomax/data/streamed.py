"""Image splits too large for memory, read image by image by the loader's worker processes: ImageArray's counterpart
(photo folders, ImageNet, a user's own torch Datasets), and the loader that serves either kind to a task."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property, partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from greedy_infomax.data.loader import BatchLoader
from greedy_infomax.data.spec import ImageArray, ImageSpec
from greedy_infomax.data.torch_data import (
    DatasetBatches,
    Transform,
    default_workers,
    inputs_and_labels,
    one_line_errors,
)
from greedy_infomax.data.transforms import LUMA
from greedy_infomax.errors import GimError

SAMPLE = 512
"""Images the spec's mean and std are measured from, spread evenly over the split: the statistics of a few hundred
photos are within a percent of the whole split's, and reading every photo of a large folder would take hours."""


class StreamedImages(Dataset):
    """A split whose item i is image i as a uint8 (C, H, W) tensor of the split's one size, and its label (when the
    split has labels), made when it is read. Subclasses set `name` and `num_classes` and read the items."""

    name: str
    """What the split is called in messages: its folder, or the factory that made it."""
    num_classes: int

    @cached_property
    def spec(self) -> ImageSpec:
        """Sizes from the images, mean and std measured from SAMPLE of them (measured once, when first asked)."""
        return measure_spec(self, self.num_classes)

    def first(self, count: int) -> StreamedImages:
        """The first `count` images."""
        raise NotImplementedError

    def held_out(self, count: int) -> tuple[StreamedImages, StreamedImages]:
        """The images before the last `count`, and those last `count` (a validation share), with this split's spec."""
        return _Rows(self, 0, len(self) - count), _Rows(self, len(self) - count, len(self))

    def unpack(self, batch: Any) -> tuple[torch.Tensor, Any]:
        """(images, labels or None) of a collated batch of items."""
        return inputs_and_labels(batch)

    def report(self) -> None:
        """Say, once the loader has stopped reading an epoch, what went wrong while reading it; default: nothing."""


class _Rows(StreamedImages):
    """Images start .. stop - 1 of a split, read, described and normalised as the split's own."""

    def __init__(self, split: StreamedImages, start: int, stop: int) -> None:
        self.split, self.start, self.stop = split, start, stop
        self.name, self.num_classes = split.name, split.num_classes

    @property
    def spec(self) -> ImageSpec:
        return self.split.spec

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index: int) -> Any:
        return self.split[self.start + index]

    def unpack(self, batch: Any) -> tuple[torch.Tensor, Any]:
        return self.split.unpack(batch)

    def report(self) -> None:
        self.split.report()


class StreamLoader(DatasetBatches):
    """BatchLoader's counterpart for a StreamedImages split, with the same arguments and the same seeded order, and
    its images cut, flipped and normalised by the same transform on the device."""

    def __init__(
        self,
        array: StreamedImages,
        batch_size: int,
        transform: Transform,
        device: torch.device,
        seed: int | None = None,
        workers: int | None = None,
        keep_last: bool = False,
    ) -> None:
        super().__init__(array, batch_size, device, seed, workers, transform, keep_last)
        self.array = array

    def unpack(self, batch: Any) -> tuple[torch.Tensor, Any]:
        return self.array.unpack(batch)

    def epoch(
        self, epoch: int = 0, start_batch: int = 0, stride: int = 1
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """DatasetBatches' epoch, then the split's report of what it could not read."""
        try:
            yield from super().epoch(epoch, start_batch, stride)
        finally:
            self.array.report()


def image_batches(
    array: ImageArray | StreamedImages,
    batch_size: int,
    transform: Transform,
    device: torch.device,
    seed: int | None = None,
    workers: int | None = None,
    keep_last: bool = False,
) -> BatchLoader | StreamLoader:
    """The loader of a split: a BatchLoader of an array in memory, else a StreamLoader whose workers read it."""
    if isinstance(array, ImageArray):
        return BatchLoader(array, batch_size, transform, device, seed, keep_last)
    return StreamLoader(array, batch_size, transform, device, seed, workers, keep_last)


def measure_spec(images: Dataset, num_classes: int, sample: int = SAMPLE) -> ImageSpec:
    """The spec of a split of images of one size: per-channel and luma mean and std of the pixels (scaled to
    [0, 1]) of `sample` images spread evenly over it, read by worker processes."""
    name = getattr(images, "name", type(images).__name__)
    if len(images) == 0:
        raise GimError(f"{name}: no images")
    indices = np.unique(np.linspace(0, len(images) - 1, min(sample, len(images))).round().astype(np.int64))
    loader = DataLoader(
        Subset(images, indices.tolist()),
        batch_size=32,
        collate_fn=partial(_pixel_sums, name),
        num_workers=min(default_workers(), -(-len(indices) // 32)),
    )
    shape, totals = None, 0.0
    for batch_shape, sums in one_line_errors(loader):
        if shape not in (None, batch_shape):
            raise GimError(f"{name}: images of {_size(shape)} and of {_size(batch_shape)}; a split needs one size")
        shape, totals = batch_shape, totals + sums
    channels, height, width = shape
    mean = totals[:, 0] / (len(indices) * height * width)  # (C + 1,): channels, then luma
    std = np.sqrt(np.maximum(totals[:, 1] / (len(indices) * height * width) - mean**2, 0))
    return ImageSpec(
        channels=channels,
        height=height,
        width=width,
        num_classes=num_classes,
        mean=tuple(float(value) for value in mean[:channels]),
        std=tuple(float(value) for value in std[:channels]),
        grayscale_mean=float(mean[-1]),
        grayscale_std=float(std[-1]),
    )


def _pixel_sums(name: str, items: list[Any]) -> tuple[tuple[int, ...], np.ndarray]:
    """In a worker: the (C, H, W) size of a batch's images, and the sum and the sum of squares of their pixels in
    [0, 1], per channel, then of their luma: (C + 1, 2)."""
    images = [np.asarray(item[0] if isinstance(item, (tuple, list)) else item) for item in items]
    sizes = sorted({image.shape for image in images})
    if len(sizes) > 1:
        raise GimError(f"{name}: images of {_size(sizes[0])} and of {_size(sizes[1])}; a split needs one size")
    pixels = np.stack(images).astype(np.float64) / 255  # (B, C, H, W)
    luma = pixels[:, 0] if pixels.shape[1] == 1 else np.einsum("c,bchw->bhw", np.array(LUMA), pixels)
    planes = np.concatenate([pixels.transpose(1, 0, 2, 3).reshape(pixels.shape[1], -1), luma.reshape(1, -1)])
    return sizes[0], np.stack([planes.sum(axis=1), (planes**2).sum(axis=1)], axis=1)


def _size(shape: tuple[int, ...]) -> str:
    channels, height, width = shape
    return f"{width}x{height} pixels of {channels} channel{'s' if channels > 1 else ''}"
