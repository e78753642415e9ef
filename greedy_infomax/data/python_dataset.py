"""Your own torch Datasets from the command line: `--data.dataset python:package.module:factory` names a function
that returns the (train, test) map-style Datasets, called with `--data.root` as a string when one is given, else
with nothing. Item i is an image, or (image, label): a uint8 tensor or array, (C, H, W) or (H, W, C) with 1 or 3
channels, or a PIL image; every image of a split of one size. The run's crop, flip, grayscale and normalisation
then apply to them as to every dataset, and its run folder records the name, so resume, probe and embed import the
same function again (from the current folder or the Python path).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset

from greedy_infomax.data.streamed import StreamedImages
from greedy_infomax.errors import GimError

PREFIX = "python:"
FORM = re.compile(r"python:([A-Za-z_][\w.]*):([A-Za-z_]\w*)")


def python_target(name: str) -> tuple[str, str] | None:
    """(module, function) of a `python:package.module:factory` dataset name; None for any other name."""
    match = FORM.fullmatch(name)
    return None if match is None else (match[1], match[2])


def read_python_dataset(name: str, root: Path | None, split: str) -> UserImages:
    """The `train` or `test` Dataset that the factory `name` returns, as a split of images."""
    train, test = _made(name, root)
    return UserImages(f"{name} {split}", train if split == "train" else test)


@cache
def _made(name: str, root: Path | None) -> tuple[Dataset, Dataset]:
    """The factory's datasets, made once per process (pre-training and the probes each read both splits)."""
    module_name, function = python_target(name)
    try:
        with _current_folder_importable():
            module = importlib.import_module(module_name)
    except ImportError as error:
        raise GimError(
            f"data.dataset {name}: cannot import {module_name} ({error}); run from the folder that holds "
            f"it, or put it on PYTHONPATH"
        ) from error
    factory = getattr(module, function, None)
    if not callable(factory):
        raise GimError(f"data.dataset {name}: {module_name} has no function {function}")
    made = factory(str(root)) if root is not None else factory()
    if not (
        isinstance(made, (tuple, list))
        and len(made) == 2
        and all(hasattr(split, "__getitem__") and hasattr(split, "__len__") for split in made)
    ):
        raise GimError(
            f"data.dataset {name}: {function}() must return (train, test) map-style Datasets, got {type(made).__name__}"
        )
    return made[0], made[1]


@contextmanager
def _current_folder_importable() -> Iterator[None]:
    """Import as `python -m` would: from the current folder too, which the `gim` script does not put on the path."""
    added = os.getcwd() not in sys.path
    if added:
        sys.path.insert(0, os.getcwd())
    try:
        yield
    finally:
        if added:
            sys.path.remove(os.getcwd())


class UserImages(StreamedImages):
    """A user's Dataset as a split of images: item i as a uint8 (C, H, W) tensor, with its label if it has one."""

    def __init__(self, name: str, dataset: Dataset, num_classes: int | None = None) -> None:
        if len(dataset) == 0:
            raise GimError(f"{name}: no images")
        self.name = name
        self.dataset = dataset
        image, label = self._item(0)
        self.shape = tuple(image.shape)
        self.labelled = label is not None
        if num_classes is None:
            num_classes = _num_classes(dataset, self) if self.labelled else 0
        self.num_classes = num_classes

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, int]:
        image, label = self._item(index)
        if tuple(image.shape) != self.shape:
            raise GimError(
                f"{self.name}: image {index} is {_shape(image.shape)}, image 0 {_shape(self.shape)}; "
                f"every image of a split needs one size (resize them in the Dataset)"
            )
        return (image, label) if self.labelled else image

    def _item(self, index: int) -> tuple[torch.Tensor, int | None]:
        item = self.dataset[index]
        image, label = (item[0], item[1]) if isinstance(item, (tuple, list)) and len(item) >= 2 else (item, None)
        return as_image(image, f"{self.name}, image {index}"), None if label is None else int(label)

    def first(self, count: int) -> UserImages:
        return UserImages(self.name, Subset(self.dataset, range(min(count, len(self)))), self.num_classes)


def as_image(value: Any, where: str) -> torch.Tensor:
    """A PIL image, or a uint8 tensor or array (C, H, W), (H, W, C) or (H, W), as a uint8 (C, H, W) tensor."""
    if isinstance(value, Image.Image):
        value = value.convert("L" if value.mode in ("1", "L", "LA") else "RGB")
    array = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.dtype != np.uint8:
        raise GimError(
            f"{where}: {array.dtype} pixels; return uint8 images (0..255) or PIL images: the run's "
            f"crop, flip and normalisation happen on the device"
        )
    if array.ndim == 2:
        array = array[None]
    elif array.ndim == 3 and array.shape[0] not in (1, 3) and array.shape[2] in (1, 3):
        array = array.transpose(2, 0, 1)
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise GimError(
            f"{where}: an image of shape {tuple(array.shape)}; expected (C, H, W) or (H, W, C) with 1 or 3 channels"
        )
    return torch.from_numpy(np.array(array, order="C"))  # a copy: PIL's arrays are read-only


def _num_classes(dataset: Dataset, images: UserImages) -> int:
    """The Dataset's `classes` (as torchvision's datasets have), else 1 + its largest label, from its `targets` or
    by reading every item (once; give the Dataset a `classes` list to spare that)."""
    if hasattr(dataset, "classes"):
        return len(dataset.classes)
    if hasattr(dataset, "targets"):
        return int(np.max(np.asarray(dataset.targets))) + 1
    return max(images._item(index)[1] for index in range(len(images))) + 1


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(size) for size in shape)
