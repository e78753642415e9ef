"""Torch Datasets and DataLoaders as Batches: a Dataset read by workers gives BatchLoader's very batches, draws made
inside __getitem__ repeat at any batch whatever the workers, and a DataLoader resumes exactly where it is seeded."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from greedy_infomax.data.loader import BatchLoader
from greedy_infomax.data.spec import ImageArray, ImageSpec
from greedy_infomax.data.torch_data import DatasetBatches, IterableBatches, as_batches
from greedy_infomax.data.transforms import ImageTransform
from greedy_infomax.errors import GimError

CPU = torch.device("cpu")
SPEC = ImageSpec(
    channels=1, height=8, width=8, num_classes=3, mean=(0.5,), std=(0.25,), grayscale_mean=0.5, grayscale_std=0.25
)
ARRAY = ImageArray(
    np.random.default_rng(0).integers(0, 256, (22, 1, 8, 8), dtype=np.uint8), np.arange(22, dtype=np.int64) % 3, SPEC
)


class Images(Dataset):
    """The array's images and labels, one item at a time."""

    def __len__(self) -> int:
        return len(ARRAY)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(ARRAY.images[index]), int(ARRAY.labels[index])


class Noisy(Dataset):
    """Items drawn with all three global generators, as augmentation in a user's __getitem__ draws them."""

    def __init__(self, count: int = 12) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([index, torch.rand(()).item(), np.random.rand(), random.random()])


def _all(batches) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    return list(batches)


def _equal(first, second) -> bool:
    return len(first) == len(second) and all(
        torch.equal(a[0], b[0]) and (a[1] is None and b[1] is None or torch.equal(a[1], b[1]))
        for a, b in zip(first, second, strict=True)
    )


@pytest.mark.parametrize("workers", [0, 2])
def test_a_dataset_gives_the_batches_of_batch_loader_in_training_and_evaluation_order(workers):
    transform = ImageTransform(crop=6, flip=True, grayscale=False, mean=(0.5,), std=(0.25,))
    for seed in (3, None):
        mine = DatasetBatches(Images(), 4, CPU, seed=seed, workers=workers, transform=transform)
        theirs = BatchLoader(ARRAY, 4, transform, CPU, seed=seed)
        assert len(mine) == len(theirs) == (5 if seed is not None else 6)
        for epoch in (0, 1):
            assert _equal(_all(mine.epoch(epoch)), _all(theirs.epoch(epoch)))


def test_keep_last_gives_a_shuffled_epoch_its_last_incomplete_batch_as_batch_loader_does():
    """What the paper's vision probe trains on: every image every epoch, under fresh draws."""
    transform = ImageTransform(crop=6, flip=True, grayscale=False, mean=(0.5,), std=(0.25,))
    mine = DatasetBatches(Images(), 4, CPU, seed=3, workers=0, transform=transform, keep_last=True)
    theirs = BatchLoader(ARRAY, 4, transform, CPU, seed=3, keep_last=True)
    batches = _all(mine.epoch(1))
    assert len(mine) == 6 and [len(labels) for _, labels in batches] == [4] * 5 + [2]
    assert _equal(batches, _all(theirs.epoch(1)))
    assert sorted(torch.cat([labels for _, labels in batches]).tolist()) == sorted(ARRAY.labels.tolist())


def test_draws_inside_getitem_repeat_at_any_batch_whatever_the_workers():
    alone = DatasetBatches(Noisy(), 3, CPU, seed=5, workers=0)
    epoch = _all(alone.epoch(1))
    assert _equal(_all(DatasetBatches(Noisy(), 3, CPU, seed=5, workers=2).epoch(1)), epoch)
    assert _equal(_all(alone.epoch(1, start_batch=2)), epoch[2:])
    assert _equal(_all(alone.epoch(1, start_batch=1, stride=2)), epoch[1::2])
    assert not torch.equal(torch.cat([x for x, _ in alone.epoch(0)]), torch.cat([x for x, _ in epoch]))
    draws = torch.cat([x for x, _ in epoch])
    assert len(set(draws[:, 1].tolist())) == 12 and len(set(draws[:, 2].tolist())) == 12  # no draw repeats


def test_reading_in_the_training_process_leaves_its_generators_as_they_were():
    torch.manual_seed(7)
    np.random.seed(7)
    random.seed(7)
    expected = torch.rand(()), np.random.rand(), random.random()
    torch.manual_seed(7)
    np.random.seed(7)
    random.seed(7)
    _all(DatasetBatches(Noisy(), 3, CPU, seed=5, workers=0).epoch(0))
    assert (torch.rand(()), np.random.rand(), random.random()) == expected


def test_bare_inputs_have_no_labels_and_other_items_are_refused():
    (inputs, labels), *_ = DatasetBatches(Noisy(), 4, CPU, workers=0).epoch()
    assert inputs.shape == (4, 4) and labels is None

    class Triples(Noisy):
        def __getitem__(self, index: int) -> tuple:
            return torch.zeros(2), 0, "extra"

    with pytest.raises(GimError, match="inputs or \\(inputs, labels\\).*list of 3"):
        _all(DatasetBatches(Triples(), 4, CPU, workers=0).epoch())


class Refusing(Noisy):
    def __getitem__(self, index: int) -> torch.Tensor:
        raise GimError(f"item {index}: refused")


def test_an_error_raised_in_a_worker_arrives_as_its_own_line():
    with pytest.raises(GimError) as error:
        _all(DatasetBatches(Refusing(), 4, CPU, workers=1).epoch())
    assert str(error.value) == "item 0: refused"


def _shuffled(seed: int | None, workers: int = 0) -> DataLoader:
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return DataLoader(Noisy(), batch_size=3, shuffle=True, generator=generator, num_workers=workers)


def test_a_seeded_dataloader_gives_each_epoch_the_same_batches_in_any_process_and_resumes_exactly():
    batches = IterableBatches(_shuffled(4, workers=2), CPU)
    epoch1 = _all(batches.epoch(1))
    assert batches.seeded and batches.batch_size == 3 and len(batches) == 4
    assert _equal(_all(IterableBatches(_shuffled(4, workers=2), CPU).epoch(1)), epoch1)  # a fresh process's
    assert _equal(_all(batches.epoch(1, start_batch=2)), epoch1[2:])
    assert not _equal(_all(batches.epoch(0)), epoch1)


def test_an_unseeded_dataloader_warns_when_resumed_mid_epoch():
    batches = IterableBatches(_shuffled(None), CPU)
    assert not batches.seeded
    with pytest.warns(UserWarning, match="not seeded per epoch"):
        assert len(_all(batches.epoch(0, start_batch=1))) == 3
    assert IterableBatches(DataLoader(Noisy(), batch_size=3), CPU).seeded  # in stored order


def test_iterables_need_a_length_a_batch_size_and_the_batches_they_promise():
    batches = [(torch.zeros(2, 3), torch.tensor([0, 1]))] * 2
    inputs, labels = next(IterableBatches(batches, CPU, batch_size=2).epoch())
    assert inputs.shape == (2, 3) and labels.tolist() == [0, 1]
    with pytest.raises(GimError, match="no len"):
        IterableBatches(iter(batches), CPU, batch_size=2)
    with pytest.raises(GimError, match="batch size"):
        IterableBatches(batches, CPU)

    class Short(list):
        def __len__(self) -> int:
            return 3

    with pytest.raises(GimError, match="gave 2 of the 3 batches"):
        _all(IterableBatches(Short(batches), CPU, batch_size=2).epoch())


def test_as_batches_passes_batches_through_and_wraps_datasets_and_loaders():
    loader = BatchLoader(ARRAY, 4, ImageTransform(8, False, False, (0.5,), (0.25,)), CPU)
    assert as_batches(loader, None, CPU) is loader
    assert isinstance(as_batches(Images(), 4, CPU, seed=1), DatasetBatches)
    assert isinstance(as_batches(_shuffled(1), None, CPU), IterableBatches)
    with pytest.raises(GimError, match="needs a batch_size"):
        as_batches(Images(), None, CPU)

    class Stream(IterableDataset):
        def __iter__(self):
            yield torch.zeros(2)

    with pytest.raises(GimError, match="inside a DataLoader"):
        as_batches(Stream(), 4, CPU)
