"""Two-view augmentation: the batched crop against a per-pixel bilinear loop, box sampling inside its ranges, the
jitter's analytic cases, and the whole transform's layout [view 1; view 2], seeding, and channel handling."""

from __future__ import annotations

import math

import pytest
import torch

from greedy_infomax.data.spec import ImageSpec
from greedy_infomax.data.views import TwoViewTransform, color_jitter, resized_crop, sample_boxes


def reference_crop(image: torch.Tensor, box: torch.Tensor, size: int, flip: bool) -> torch.Tensor:
    """Pixel by pixel: the box point under the output pixel's centre, bilinear between the four nearest pixel
    centres, coordinates clamped to the image (pixel k's centre at k)."""
    image = image.double()
    C, H, W = image.shape
    top, left, box_height, box_width = box.double().tolist()
    out = torch.zeros(C, size, size, dtype=torch.float64)
    for i in range(size):
        for j in range(size):
            column = size - 1 - j if flip else j
            y = min(max(top + (i + 0.5) * box_height / size - 0.5, 0.0), H - 1.0)
            x = min(max(left + (column + 0.5) * box_width / size - 0.5, 0.0), W - 1.0)
            y0, x0 = math.floor(y), math.floor(x)
            y1, x1 = min(y0 + 1, H - 1), min(x0 + 1, W - 1)
            wy, wx = y - y0, x - x0
            out[:, i, j] = (
                (1 - wy) * (1 - wx) * image[:, y0, x0]
                + (1 - wy) * wx * image[:, y0, x1]
                + wy * (1 - wx) * image[:, y1, x0]
                + wy * wx * image[:, y1, x1]
            )
    return out


@pytest.mark.parametrize("C, H, W, size", [(1, 28, 28, 28), (1, 28, 28, 32), (3, 12, 20, 8), (3, 9, 7, 11)])
def test_resized_crop_matches_the_pixel_loop(C, H, W, size):
    generator = torch.Generator().manual_seed(H * W + size)
    images = torch.rand(6, C, H, W, generator=generator)
    boxes = sample_boxes(6, H, W, (0.1, 1.0), (0.5, 2.0), torch.rand(6, 4, generator=generator))
    flip = torch.tensor([False, True, False, True, True, False])
    crops = resized_crop(images, boxes, size, flip)
    assert crops.shape == (6, C, size, size)
    for n in range(6):
        expected = reference_crop(images[n], boxes[n], size, bool(flip[n]))
        torch.testing.assert_close(crops[n].double(), expected, atol=1e-5, rtol=1e-5)


def test_a_whole_pixel_box_of_the_view_size_is_a_plain_slice():
    images = torch.rand(2, 3, 10, 12)
    boxes = torch.tensor([[2.0, 3.0, 5.0, 5.0], [0.0, 7.0, 5.0, 5.0]])
    crops = resized_crop(images, boxes, 5, torch.tensor([False, True]))
    torch.testing.assert_close(crops[0], images[0, :, 2:7, 3:8])
    torch.testing.assert_close(crops[1], images[1, :, 0:5, 7:12].flip(2))


@pytest.mark.parametrize("H, W", [(28, 28), (96, 96), (20, 40)])
def test_boxes_lie_in_the_image_with_area_and_aspect_in_range(H, W):
    """Also when the drawn box does not fit: it shrinks, keeping its aspect; these images still hold a fifth of
    their area at any aspect in range, so the area stays in range too."""
    scale, ratio = (0.2, 1.0), (3 / 4, 4 / 3)
    boxes = sample_boxes(4000, H, W, scale, ratio, torch.rand(4000, 4, generator=torch.Generator().manual_seed(0)))
    top, left, height, width = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + height <= H + 1e-4).all() and (left + width <= W + 1e-4).all()
    area, aspect = height * width / (H * W), width / height
    assert (area >= scale[0] - 1e-5).all() and (area <= scale[1] + 1e-5).all()
    assert (aspect >= ratio[0] - 1e-5).all() and (aspect <= ratio[1] + 1e-5).all()
    assert area.min() < 0.21 and aspect.min() < 0.76 and aspect.max() > 1.32, "the ranges are used"
    assert area.max() > (0.99 if H == W else 0.49), "up to the largest box of that aspect that fits"


def test_jitter_factors_of_one_change_nothing_and_the_analytic_cases_hold():
    images = torch.rand(4, 3, 5, 6) * 0.5
    ones = torch.ones(4)
    torch.testing.assert_close(color_jitter(images, ones, ones, ones), images)
    torch.testing.assert_close(color_jitter(images, ones * 2, ones, ones), images * 2)
    flat = color_jitter(images, ones, ones * 0, ones)  # contrast 0: every pixel the mean luma
    luma = (images * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(1).mean((1, 2))
    torch.testing.assert_close(flat, luma[:, None, None, None].expand_as(images))
    gray = color_jitter(images, ones, ones, ones * 0)  # saturation 0: every channel the luma
    torch.testing.assert_close(gray, gray[:, :1].expand_as(gray))
    assert color_jitter(images, ones * 3, ones, ones).max() == 1.0, "clipped to [0, 1]"


def _spec(channels: int, size: int) -> ImageSpec:
    return ImageSpec(channels, size, size, 10, (0.5,) * channels, (0.25,) * channels, 0.5, 0.25)


@pytest.mark.parametrize(
    "channels, size, crop, grayscale, out_channels",
    [(1, 28, 28, False, 1), (1, 28, 32, False, 1), (3, 96, 64, False, 3), (3, 96, 64, True, 1)],
)
def test_views_are_two_rows_per_image_of_the_crop_size(channels, size, crop, grayscale, out_channels):
    transform = TwoViewTransform.for_data(crop, grayscale, _spec(channels, size))
    images = torch.randint(0, 256, (5, channels, size, size), dtype=torch.uint8)
    views = transform(images, torch.Generator().manual_seed(0))
    assert views.shape == (10, out_channels, crop, crop) and views.dtype == torch.float32


def test_row_b_and_row_b_plus_B_are_views_of_image_b():
    """Flat images of distinct grays, no jitter: every view keeps its image's gray, whatever its crop and flip."""
    B = 6
    images = (torch.arange(B, dtype=torch.uint8) * 40)[:, None, None, None].expand(B, 1, 20, 20)
    transform = TwoViewTransform(12, False, (0.0,), (1 / 255,), jitter_probability=0.0)
    views = transform(images, torch.Generator().manual_seed(1))
    expected = torch.cat([images, images]).float()[:, :, :12, :12]
    torch.testing.assert_close(views, expected, atol=1e-3, rtol=0)


def test_a_full_unflipped_unjittered_view_is_the_normalised_image():
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    transform = TwoViewTransform(
        16,
        False,
        (0.5,) * 3,
        (0.25,) * 3,
        scale=(1.0, 1.0),
        ratio=(1.0, 1.0),
        flip_probability=0.0,
        jitter_probability=0.0,
        grayscale_probability=0.0,
    )
    expected = (images.float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(
        transform(images, torch.Generator().manual_seed(0)), torch.cat([expected, expected]), atol=1e-4, rtol=0
    )


def test_the_same_seed_gives_the_same_views_and_the_two_views_differ():
    transform = TwoViewTransform.for_data(24, False, _spec(3, 32))
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    first = transform(images, torch.Generator().manual_seed(5))
    assert torch.equal(first, transform(images, torch.Generator().manual_seed(5)))
    assert not torch.allclose(first, transform(images, torch.Generator().manual_seed(6)))
    view1, view2 = first.chunk(2)
    assert ((view1 - view2).abs().flatten(1).amax(1) > 0.1).all(), "every image's two views differ"


@pytest.mark.parametrize("probability", [0.0, 1.0])
def test_random_grayscale_sets_the_three_channels_of_a_colour_view_alike(probability):
    transform = TwoViewTransform(
        8, False, (0.0,) * 3, (1.0,) * 3, jitter_probability=0.0, grayscale_probability=probability
    )
    views = transform(torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8), torch.Generator().manual_seed(0))
    alike = (views == views[:, :1]).flatten(1).all(1)
    assert alike.all() if probability == 1.0 else not alike.any()
