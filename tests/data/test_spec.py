"""ImageArray: the shape, type and label count it accepts, and `first` as a view that never copies a
memory-mapped file."""

from __future__ import annotations

import numpy as np
import pytest

from greedy_infomax.data.spec import ImageArray, ImageSpec

SPEC = ImageSpec(3, 4, 5, 10, (0.4, 0.5, 0.6), (0.2, 0.2, 0.2), 0.5, 0.2)


def images(count: int) -> np.ndarray:
    return np.arange(count * 3 * 4 * 5, dtype=np.uint8).reshape(count, 3, 4, 5)  # (N, C, H, W)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((2, 4, 5), dtype=np.uint8), r"\(N, C, H, W\) uint8, got \(2, 4, 5\) uint8"),
        (np.zeros((2, 3, 4, 5), dtype=np.float32), r"\(N, C, H, W\) uint8, got \(2, 3, 4, 5\) float32"),
    ],
)
def test_images_must_be_four_dimensional_uint8(array, message):
    with pytest.raises(ValueError, match=message):
        ImageArray(array, None, SPEC)


def test_labels_must_match_the_images_one_to_one():
    with pytest.raises(ValueError, match="3 labels for 2 images"):
        ImageArray(images(2), np.arange(3), SPEC)


def test_first_is_a_view_of_the_leading_images_and_labels():
    array = ImageArray(images(6), np.arange(6) * 2, SPEC)
    head = array.first(4)
    assert len(array) == 6 and len(head) == 4 and head.spec is SPEC
    assert np.array_equal(head.images, array.images[:4]) and head.labels.tolist() == [0, 2, 4, 6]
    assert np.shares_memory(head.images, array.images) and np.shares_memory(head.labels, array.labels)


def test_first_of_an_unlabelled_array_stays_unlabelled():
    assert ImageArray(images(3), None, SPEC).first(2).labels is None


def test_first_of_a_memory_mapped_file_reads_nothing_into_memory(tmp_path):
    path = tmp_path / "images.u8"
    images(5).tofile(path)
    mapped = np.memmap(path, dtype=np.uint8, mode="r", shape=(5, 3, 4, 5))
    head = ImageArray(mapped, None, SPEC).first(2)
    assert isinstance(head.images, np.memmap) and np.shares_memory(head.images, mapped)
    assert np.array_equal(head.images, images(2))


def test_asking_for_more_than_there_are_gives_them_all():
    assert len(ImageArray(images(3), np.arange(3), SPEC).first(10)) == 3
