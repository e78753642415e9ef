"""What a dataset is: an in-memory (or memory-mapped) uint8 image array plus the facts models need.

Every size used by models and probes (channels, classes, image size) comes from here, never from a constant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageSpec:
    """Facts about a dataset's images."""

    channels: int
    height: int
    width: int
    num_classes: int
    mean: tuple[float, ...]
    """Per-channel mean of the stored pixels scaled to [0, 1]."""
    std: tuple[float, ...]
    grayscale_mean: float
    """Mean of the grayscale image (ITU-R 601 luma), used when a transform converts to grayscale."""
    grayscale_std: float


@dataclass
class ImageArray:
    """A split of an image dataset.

    images: (N, C, H, W) uint8, possibly a lazy view of a memory-mapped file.
    labels: (N,) int64 in [0, num_classes), or None for unlabelled splits.
    """

    images: np.ndarray
    labels: np.ndarray | None
    spec: ImageSpec

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be (N, C, H, W) uint8, got {self.images.shape} {self.images.dtype}")
        if self.labels is not None and len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.labels)} labels for {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.images)

    def first(self, count: int) -> ImageArray:
        """The first `count` images (and labels): a view, no copy of a memory-mapped file."""
        labels = None if self.labels is None else self.labels[:count]
        return ImageArray(self.images[:count], labels, self.spec)
