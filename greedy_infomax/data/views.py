"""Two augmented views of every image of a batch, for the two-view objectives (SimCLR, Barlow Twins, VICReg).

The augmentations are SimCLR's (Chen et al. 2020, Sec. 3 and App. A): a random resized crop, a left-right flip,
colour jitter (brightness, contrast and, for colour images, saturation) and, for colour images, a random grayscale.
Every parameter of the 2B views is drawn in one call from the batch's seeded CPU generator, and the pixels are
transformed as whole-batch tensor operations on the training device: one grid_sample does every crop, resize and
flip at once, and the jitter is a few broadcast multiplications. No image passes through Python on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from greedy_infomax.data.spec import ImageSpec
from greedy_infomax.data.transforms import to_grayscale
from greedy_infomax.placement import to_device


def sample_boxes(
    count: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float], uniform: torch.Tensor
) -> torch.Tensor:
    """Crop boxes (count, 4) as (top, left, box height, box width) in pixels, from uniform draws (count, 4).

    The box covers a fraction of the image's area drawn uniformly from `scale`, with an aspect ratio (width /
    height) drawn log-uniformly from `ratio`. A box that does not fit is shrunk, keeping its aspect ratio, until its
    longer side fits (instead of redrawing until one fits, which needs a loop; torchvision redraws, then falls back
    to the whole image); then it is placed uniformly where it fits."""
    area = height * width * (scale[0] + (scale[1] - scale[0]) * uniform[:, 0])
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_low + (log_high - log_low) * uniform[:, 1])
    box_height, box_width = torch.sqrt(area / aspect), torch.sqrt(area * aspect)
    shrink = torch.minimum(height / box_height, width / box_width).clamp(max=1)
    box_height, box_width = box_height * shrink, box_width * shrink
    top = (height - box_height).clamp(min=0) * uniform[:, 2]  # clamp: a fitted side may round up
    left = (width - box_width).clamp(min=0) * uniform[:, 3]
    return torch.stack([top, left, box_height, box_width], dim=1)


def resized_crop(images: torch.Tensor, boxes: torch.Tensor, size: int, flip: torch.Tensor) -> torch.Tensor:
    """Each box of (N, C, H, W) float images resampled to size x size (bilinear), mirrored left-right where `flip`.

    Output pixel (i, j) samples the box at its own centre: row top + (i + 1/2) * box height / size, column
    left + (j + 1/2) * box width / size (pixel k spanning [k, k + 1]), from the right edge when flipped; the
    image's edge pixels extend beyond it. Shrinking a box does not low-pass filter first, so a box much larger than
    the view aliases; at 1.5x (a whole 96 px STL-10 image into a 64 px view) the effect is small."""
    N, C, H, W = images.shape
    top, left, box_height, box_width = boxes.unbind(1)
    mirror = 1.0 - 2.0 * flip.to(images.dtype)
    # The affine map from output to input coordinates, both normalised to [-1, 1] across the pixel edges.
    theta = torch.zeros(N, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = box_width / W * mirror
    theta[:, 0, 2] = (2 * left + box_width) / W - 1
    theta[:, 1, 1] = box_height / H
    theta[:, 1, 2] = (2 * top + box_height) / H - 1
    grid = F.affine_grid(theta, [N, C, size, size], align_corners=False)  # (N, size, size, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def color_jitter(
    images: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor
) -> torch.Tensor:
    """Per-image factors (N,) applied to (N, C, H, W) images in [0, 1], in this order, clipping to [0, 1] after each:

    brightness scales the pixels; contrast scales their distance from the image's mean luma; saturation (colour
    images only) scales each pixel's distance from its own luma. A factor of 1 leaves the image unchanged."""
    x = (images * brightness[:, None, None, None]).clamp(0, 1)
    mean = to_grayscale(x).mean(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1)
    x = ((x - mean) * contrast[:, None, None, None] + mean).clamp(0, 1)
    if x.shape[1] == 3:
        luma = to_grayscale(x)  # (N, 1, H, W)
        x = ((x - luma) * saturation[:, None, None, None] + luma).clamp(0, 1)
    return x


@dataclass(frozen=True)
class TwoViewTransform:
    """uint8 (B, C, H, W) -> normalised float (2B, C', crop, crop): rows b and B + b are two views of image b.

    Each view of each image draws its own crop box, flip, jitter factors and grayscale. The colour defaults are
    SimCLR's for CIFAR-10 (strength 0.5: factors in [0.6, 1.4], jitter with chance 0.8, grayscale with chance 0.2),
    without its hue shift; the smallest crop is a fifth of the image, not 0.08, which would leave a few pixels of a
    28-96 px image.
    """

    crop: int
    """Side of the square views."""
    grayscale: bool
    """Convert colour images to one luma channel first (data.grayscale): then they are jittered as gray images."""
    mean: tuple[float, ...]
    """Per-channel mean the views are normalised with (of the channels kept: one after grayscale)."""
    std: tuple[float, ...]
    """Per-channel standard deviation the views are normalised with."""
    scale: tuple[float, float] = (0.2, 1.0)
    """Range of the fraction of the image's area a crop covers."""
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    """Range of the crop's aspect ratio (width / height), drawn log-uniformly."""
    flip_probability: float = 0.5
    """Chance that a view is mirrored left-right."""
    jitter_probability: float = 0.8
    """Chance that a view is colour-jittered at all."""
    brightness: float = 0.4
    """A jittered view's pixels are scaled by a factor drawn uniformly from [1 - brightness, 1 + brightness]."""
    contrast: float = 0.4
    """Likewise the distance of its pixels from its mean luma, by a factor from [1 - contrast, 1 + contrast]."""
    saturation: float = 0.4
    """Likewise, for colour images, each pixel's distance from its luma, by [1 - saturation, 1 + saturation]."""
    grayscale_probability: float = 0.2
    """Chance that a colour view is turned gray (its three channels set to its luma); none for gray images."""

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Args: images uint8 (B, C, H, W) on any device; generator: a seeded CPU generator, the source of every
        random draw, so the views of a batch depend on its seed alone, not on the device."""
        x = images.float() / 255.0
        if self.grayscale:
            x = to_grayscale(x)
        x = torch.cat([x, x])  # (2B, C, H, W): [view 1; view 2]
        draws = to_device(torch.rand(x.shape[0], 10, generator=generator), x.device)
        boxes = sample_boxes(x.shape[0], x.shape[2], x.shape[3], self.scale, self.ratio, draws[:, :4])
        x = resized_crop(x, boxes, self.crop, draws[:, 4] < self.flip_probability)
        jittered = draws[:, 5] < self.jitter_probability
        factors = [
            torch.where(jittered, 1 + strength * (2 * draws[:, 6 + i] - 1), 1.0)
            for i, strength in enumerate((self.brightness, self.contrast, self.saturation))
        ]
        x = color_jitter(x, *factors)
        if x.shape[1] == 3:
            gray = (draws[:, 9] < self.grayscale_probability)[:, None, None, None]
            x = torch.where(gray, to_grayscale(x).expand_as(x), x)
        mean = to_device(torch.tensor(self.mean), x.device)[:, None, None]
        std = to_device(torch.tensor(self.std), x.device)[:, None, None]
        return (x - mean) / std

    @classmethod
    def for_data(cls, crop: int, grayscale: bool, spec: ImageSpec, **options) -> TwoViewTransform:
        """The views of a dataset, normalised with the spec's statistics of the channels kept."""
        if grayscale:
            return cls(crop, grayscale, (spec.grayscale_mean,), (spec.grayscale_std,), **options)
        return cls(crop, False, spec.mean, spec.std, **options)
