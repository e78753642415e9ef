"""Batch image transforms as small tensor kernels (no torchvision): crop, flip, grayscale, normalise.

They run on whole uint8 batches on the training device, so augmentation costs far less than a step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from greedy_infomax.data.spec import ImageSpec
from greedy_infomax.errors import GimError
from greedy_infomax.placement import to_device

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL's "L" mode


def random_crop(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """An independent random size x size window of each image in (B, C, H, W)."""
    B, _, H, W = images.shape
    top = torch.randint(H - size + 1, (B,), generator=generator)
    left = torch.randint(W - size + 1, (B,), generator=generator)
    rows = to_device(top[:, None] + torch.arange(size), images.device)  # (B, size)
    cols = to_device(left[:, None] + torch.arange(size), images.device)  # (B, size)
    batch = torch.arange(B, device=images.device)[:, None, None]
    return images.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    H, W = images.shape[2:]
    top, left = (H - size) // 2, (W - size) // 2
    return images[:, :, top : top + size, left : left + size]


def random_hflip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the batch left-right."""
    flip = to_device(torch.rand(images.shape[0], generator=generator) < 0.5, images.device)
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float -> (B, 1, H, W) luma; one-channel input passes through."""
    if images.shape[1] == 1:
        return images
    weights = to_device(torch.tensor(LUMA, dtype=images.dtype), images.device)
    return torch.einsum("bchw,c->bhw", images, weights)[:, None]


@dataclass(frozen=True)
class ImageTransform:
    """uint8 (B, C, H, W) -> normalised float crops; random crop and flip only when training."""

    crop: int
    flip: bool
    grayscale: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        training = generator is not None
        if images.shape[2:] != (self.crop, self.crop):
            images = random_crop(images, self.crop, generator) if training else center_crop(images, self.crop)
        if training and self.flip:
            images = random_hflip(images, generator)
        x = images.float() / 255.0
        if self.grayscale:
            x = to_grayscale(x)
        mean = to_device(torch.tensor(self.mean), x.device)[:, None, None]
        std = to_device(torch.tensor(self.std), x.device)[:, None, None]
        return (x - mean) / std

    @classmethod
    def for_data(cls, crop: int, flip: bool, grayscale: bool, spec: ImageSpec) -> ImageTransform:
        """The transform for a dataset, normalised with the spec's statistics of the channels kept."""
        if crop > min(spec.height, spec.width):
            raise GimError(f"data.crop: {crop} does not fit in the dataset's {spec.width}x{spec.height} images")
        if grayscale:
            return cls(crop, flip, True, (spec.grayscale_mean,), (spec.grayscale_std,))
        return cls(crop, flip, False, spec.mean, spec.std)
