"""BatchLoader and epoch_order: a seeded order per epoch that holds every sample once, full training batches (the
rest dropped), evaluation in stored order, and a run resumed at any batch seeing the batches it would have seen."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from greedy_infomax.data.loader import BatchLoader, epoch_order
from greedy_infomax.data.spec import ImageArray, ImageSpec
from greedy_infomax.data.transforms import ImageTransform

SPEC = ImageSpec(1, 6, 6, 23, (0.5,), (0.25,), 0.5, 0.25)
CPU = torch.device("cpu")
# Random 4x4 windows of 6x6 images, randomly mirrored: what a batch looks like depends on its generator.
AUGMENT = ImageTransform(4, True, False, (0.0,), (1.0,))


def numbered(count: int, labelled: bool = True) -> ImageArray:
    """`count` random 6x6 images whose label is their index, so a batch's labels say which images it holds."""
    images = np.random.default_rng(0).integers(0, 256, (count, 1, 6, 6), dtype=np.uint8)
    return ImageArray(images, np.arange(count) if labelled else None, SPEC)


def unchanged(images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return images


def labels_of(batches) -> list[list[int]]:
    return [labels.tolist() for _, labels in batches]


def test_an_epoch_order_is_a_permutation_seeded_by_seed_and_epoch():
    orders = {(seed, epoch): epoch_order(50, seed, epoch).tolist() for seed in (0, 1) for epoch in (0, 1)}
    assert all(sorted(order) == list(range(50)) for order in orders.values())
    assert len({tuple(order) for order in orders.values()}) == 4, "each (seed, epoch) its own order"
    assert epoch_order(50, 1, 1).tolist() == orders[1, 1], "and the same order every time it is asked for"


def test_without_a_seed_the_order_is_the_stored_one():
    assert epoch_order(7, None, 3).tolist() == list(range(7))


@pytest.mark.parametrize(("count", "batch_size"), [(23, 5), (20, 5), (4, 5)])
def test_training_batches_are_full_slices_of_the_epoch_order_and_the_rest_is_dropped(count, batch_size):
    loader = BatchLoader(numbered(count), batch_size, unchanged, CPU, seed=3)
    assert len(loader) == count // batch_size
    for epoch in (0, 1):
        order = epoch_order(count, 3, epoch)
        expected = [sorted(order[b * batch_size : (b + 1) * batch_size].tolist()) for b in range(count // batch_size)]
        batches = labels_of(loader.epoch(epoch))
        assert batches == expected
        seen = [index for batch in batches for index in batch]
        assert len(seen) == len(set(seen)) == (count // batch_size) * batch_size, "no image twice, only full batches"


def test_evaluation_batches_follow_the_stored_order_and_keep_the_last_partial_batch():
    loader = BatchLoader(numbered(23), 5, unchanged, CPU)
    assert len(loader) == 5
    batches = list(loader.epoch())
    assert labels_of(batches) == [list(range(start, min(start + 5, 23))) for start in range(0, 23, 5)]
    images = torch.cat([images for images, _ in batches])
    assert torch.equal(images, torch.from_numpy(numbered(23).images))


def test_evaluation_batches_get_no_generator_and_training_batches_one_each():
    received = []

    def recording(images, generator):
        received.append(generator)
        return images

    list(BatchLoader(numbered(10), 4, recording, CPU).epoch())
    assert received == [None] * 3
    received.clear()
    list(BatchLoader(numbered(10), 4, recording, CPU, seed=0).epoch())
    assert len(received) == 2 and all(isinstance(generator, torch.Generator) for generator in received)


@pytest.mark.parametrize("start_batch", [0, 1, 3])
def test_an_epoch_resumed_at_a_batch_gives_the_remaining_batches_of_the_uninterrupted_epoch(start_batch):
    """Images and their random crops and mirrors alike, from a fresh loader as a resumed run builds it."""
    whole = list(BatchLoader(numbered(23), 5, AUGMENT, CPU, seed=7).epoch(2))
    resumed = list(BatchLoader(numbered(23), 5, AUGMENT, CPU, seed=7).epoch(2, start_batch=start_batch))
    assert len(resumed) == len(whole) - start_batch
    for (images, labels), (expected_images, expected_labels) in zip(resumed, whole[start_batch:]):
        assert torch.equal(labels, expected_labels) and torch.equal(images, expected_images)


def test_an_epoch_draws_its_own_augmentations():
    loader = BatchLoader(numbered(8), 8, AUGMENT, CPU, seed=7)
    [(first, labels)], [(second, _)] = list(loader.epoch(0)), list(loader.epoch(1))
    assert torch.equal(labels, torch.arange(8)), "one batch holds every image, sorted"
    assert not torch.equal(first, second), "the same images, drawn anew in another epoch"


@pytest.mark.parametrize(("start_batch", "stride"), [(0, 2), (1, 2), (2, 3)])
def test_replicas_taking_turns_get_every_stride_th_batch(start_batch, stride):
    loader = BatchLoader(numbered(23), 2, AUGMENT, CPU, seed=1)
    whole = list(loader.epoch(0))
    taken = list(loader.epoch(0, start_batch, stride))
    assert len(taken) == len(range(start_batch, len(whole), stride))
    for (images, labels), (expected_images, expected_labels) in zip(taken, whole[start_batch::stride]):
        assert torch.equal(labels, expected_labels) and torch.equal(images, expected_images)


def test_an_unlabelled_array_gives_none_for_labels():
    batches = list(BatchLoader(numbered(6, labelled=False), 4, unchanged, CPU).epoch())
    assert [labels for _, labels in batches] == [None, None]
    assert [len(images) for images, _ in batches] == [4, 2]


def test_labels_are_int64_whatever_the_stored_type():
    array = numbered(6)
    array.labels = array.labels.astype(np.uint8)
    [(_, labels)] = list(BatchLoader(array, 6, unchanged, CPU).epoch())
    assert labels.dtype == torch.int64 and labels.tolist() == list(range(6))
