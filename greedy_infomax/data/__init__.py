"""Datasets by name and which split plays which role (pre-training, probe training, probe testing); where the
generated speech corpus lives. The tasks (greedy_infomax/tasks/) turn a run's data config into loaders."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from greedy_infomax.data.fashion_mnist import read_fashion_mnist
from greedy_infomax.data.image_folder import image_size, list_images, read_image_folder, split_classes
from greedy_infomax.data.imagenet import read_imagenet
from greedy_infomax.data.librispeech import LibriSpeechCorpus, read_librispeech
from greedy_infomax.data.photo_folder import PhotoFolder, read_photo_folder
from greedy_infomax.data.python_dataset import python_target, read_python_dataset
from greedy_infomax.data.roots import gim_data
from greedy_infomax.data.spec import ImageArray
from greedy_infomax.data.speech_folder import read_speech_folder
from greedy_infomax.data.stl10 import read_stl10
from greedy_infomax.data.streamed import StreamedImages
from greedy_infomax.errors import GimError


def _read_split_folder(root: Path | None, split: str) -> ImageArray:
    """An image folder laid out as root/train/<class>/* and root/test/<class>/*, read whole into memory. Reading
    train/ also checks that test/'s images have the training size, so a pre-training run does not end in a probe
    that fails."""
    classes = split_classes(root, split, "image-folder")
    if split == "train" and (root / "test").is_dir():
        first_test, first_train = list_images(root / "test", classes)[0][0], list_images(root / "train", classes)[0][0]
        if (size := image_size(first_test)) != (train_size := image_size(first_train)):
            raise GimError(
                f"{first_test}: size {size[0]}x{size[1]} differs from {train_size[0]}x{train_size[1]} of "
                f"the training images ({first_train}); the probes test on images of the training size"
            )
    return read_image_folder(root / split, classes=classes)


@dataclass(frozen=True)
class DatasetEntry:
    read: Callable[[Path | None, str], ImageArray | StreamedImages]
    """root, split -> the split, in memory (ImageArray) or read image by image by the loader's workers."""
    pretrain: str
    """Split used for self-supervised training."""
    probe_train: str
    probe_test: str


DATASETS: dict[str, DatasetEntry] = {
    "stl10": DatasetEntry(read_stl10, pretrain="unlabeled", probe_train="train", probe_test="test"),
    "fashion-mnist": DatasetEntry(read_fashion_mnist, pretrain="train", probe_train="train", probe_test="test"),
    "image-folder": DatasetEntry(_read_split_folder, pretrain="train", probe_train="train", probe_test="test"),
    "photo-folder": DatasetEntry(read_photo_folder, pretrain="train", probe_train="train", probe_test="test"),
    "imagenet": DatasetEntry(read_imagenet, pretrain="train", probe_train="train", probe_test="val"),
}


def known_dataset(name: str) -> bool:
    """A name of DATASETS, or python:package.module:factory (your own Datasets, data/python_dataset.py)."""
    return name in DATASETS or python_target(name) is not None


def read_images(
    dataset: str, root: str | None, role: str, limit: int | None = None, resize: int | None = None
) -> ImageArray | StreamedImages:
    """The split of image dataset `dataset` playing `role` ('pretrain', 'probe_train' or 'probe_test'), cut to
    `limit` images; the photos of a photo folder brought to `resize` pixels (default: photo_folder.DEFAULT_SIDE)."""
    if not known_dataset(dataset):
        raise GimError(
            f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}, python:package.module:factory"
        )
    entry = DATASETS.get(dataset) or DatasetEntry(
        partial(read_python_dataset, dataset), pretrain="train", probe_train="train", probe_test="test"
    )
    split = entry.read(Path(root).expanduser() if root else None, getattr(entry, role))
    if resize is not None and isinstance(split, PhotoFolder):
        split = split.resized(resize)
    return split if limit is None else split.first(limit)


def speech_corpus_root() -> Path:
    """Where the generated speech corpus lives by default: $GIM_DATA/speech-corpus, else the user's cache."""
    data = gim_data()
    if data:
        return data / "speech-corpus"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "greedy-infomax", "speech-corpus")


def read_speech(dataset: str, root: str | None, limit: int | None = None) -> LibriSpeechCorpus:
    """LibriSpeech or the generated corpus (same layout, same reader), or a speech folder, cut to `limit`
    utterances per split."""
    folder = Path(root).expanduser() if root else None
    if dataset == "speech-folder":
        if folder is None:
            raise GimError("data.root: the speech-folder dataset needs --data.root (a folder of speaker folders)")
        return read_speech_folder(folder, limit)
    if folder is None and dataset == "speech-corpus":
        folder = speech_corpus_root()
    return read_librispeech(folder, limit)
