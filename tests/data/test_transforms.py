"""ImageTransform: random windows and left-right mirrors when training, the centre otherwise; luma weights; every
output is a crop-sized square, and a crop the images cannot hold is a config error."""

from __future__ import annotations

import pytest
import torch

from greedy_infomax.data.spec import ImageSpec
from greedy_infomax.data.transforms import ImageTransform, random_hflip, to_grayscale
from greedy_infomax.errors import GimError


def _spec(height: int, width: int) -> ImageSpec:
    return ImageSpec(3, height, width, 10, (0.5,) * 3, (0.25,) * 3, 0.5, 0.25)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(("height", "width"), [(8, 12), (12, 8), (8, 8)])
def test_non_square_images_are_cut_to_the_square_crop(training: bool, height: int, width: int) -> None:
    transform = ImageTransform.for_data(8, True, True, _spec(height, width))
    images = torch.randint(0, 256, (5, 3, height, width), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0) if training else None
    assert transform(images, generator).shape == (5, 1, 8, 8)


def test_the_centre_crop_of_a_wide_image_is_its_middle() -> None:
    images = torch.arange(4 * 8, dtype=torch.uint8).reshape(1, 1, 4, 8).expand(1, 3, 4, 8)
    transform = ImageTransform(4, False, False, (0.0,) * 3, (1 / 255,) * 3)
    torch.testing.assert_close(transform(images)[0, 0], images[0, 0, :, 2:6].float())


@pytest.mark.parametrize(("height", "width"), [(28, 28), (40, 28), (28, 40)])
def test_a_crop_larger_than_the_images_names_the_option(height: int, width: int) -> None:
    with pytest.raises(GimError, match=rf"data.crop: 32 does not fit in the dataset's {width}x{height} images"):
        ImageTransform.for_data(32, False, False, _spec(height, width))


def test_training_crops_are_random_windows_and_evaluation_crops_the_centre() -> None:
    """Pixel values that encode their own position tell which window each crop is."""
    images = (torch.arange(12)[:, None] * 16 + torch.arange(12)).to(torch.uint8).expand(64, 1, 12, 12)
    transform = ImageTransform(4, False, False, (0.0,), (1 / 255,))
    crops = transform(images, torch.Generator().manual_seed(0)).round().long()  # (64, 1, 4, 4)
    top, left = crops[:, 0, 0, 0] // 16, crops[:, 0, 0, 0] % 16
    expected = (top[:, None, None] + torch.arange(4)[:, None]) * 16 + left[:, None, None] + torch.arange(4)
    assert torch.equal(crops[:, 0], expected), "each crop is one whole window of its image"
    assert len(set(zip(top.tolist(), left.tolist()))) > 20, "windows drawn over all 9 x 9 positions"
    centre = transform(images[:1]).round().long()
    assert centre[0, 0, 0, 0] == 4 * 16 + 4


def test_the_training_flip_mirrors_left_and_right() -> None:
    images = torch.arange(2 * 3, dtype=torch.uint8).reshape(1, 1, 2, 3).expand(32, 1, 2, 3)
    flipped = random_hflip(images, torch.Generator().manual_seed(0))
    mirrored = (flipped == images.flip(3)).flatten(1).all(1)
    assert torch.equal(mirrored, ~(flipped == images).flatten(1).all(1)) and 0 < mirrored.sum() < 32


def test_grayscale_is_itu_601_luma() -> None:
    red, green, blue = torch.eye(3).reshape(3, 3, 1, 1)
    luma = to_grayscale(torch.stack([red, green, blue])).flatten()
    torch.testing.assert_close(luma, torch.tensor([0.299, 0.587, 0.114]))
