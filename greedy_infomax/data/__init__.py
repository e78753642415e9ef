"""Datasets by name and which split plays which role (pre-training, probe training, probe testing); where the
generated speech corpus lives. The tasks (greedy_infomax/tasks/) turn a run's data config into loaders."""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from greedy_infomax.data.fashion_mnist import read_fashion_mnist
from greedy_infomax.data.image_folder import check_classes, class_names, image_size, list_images, read_image_folder
from greedy_infomax.data.librispeech import LibriSpeechCorpus, read_librispeech
from greedy_infomax.data.roots import gim_data
from greedy_infomax.data.spec import ImageArray
from greedy_infomax.data.speech_folder import read_speech_folder
from greedy_infomax.data.stl10 import read_stl10
from greedy_infomax.errors import GimError


def _read_split_folder(root: Path | None, split: str) -> ImageArray:
    """An image folder laid out as root/train/<class>/* and root/test/<class>/*, with the same classes (two at
    least: with one, every probe scores 100%). Reading train/ also checks test/'s layout and image size, if there
    is one, so a pre-training run does not end in a probe that fails."""
    if root is None:
        raise GimError("data.root: the image-folder dataset needs --data.root (a folder with train/ and test/)")
    classes = class_names(root / "train")
    if len(classes) < 2:
        raise GimError(f"{root / 'train'}: one class folder ({classes[0]}); the probes classify images, which "
                       "needs two classes at least (with one, every accuracy is 100%)")
    if split == "train" and (root / "test").is_dir():
        check_classes(root / "test", classes)
        first_test, first_train = list_images(root / "test", classes)[0][0], list_images(root / "train", classes)[0][0]
        if (size := image_size(first_test)) != (train_size := image_size(first_train)):
            raise GimError(f"{first_test}: size {size[0]}x{size[1]} differs from {train_size[0]}x{train_size[1]} of "
                           f"the training images ({first_train}); the probes test on images of the training size")
    return read_image_folder(root / split, classes=classes)


@dataclass(frozen=True)
class DatasetEntry:
    read: Callable[[Path | None, str], ImageArray]
    pretrain: str
    """Split used for self-supervised training."""
    probe_train: str
    probe_test: str


DATASETS: dict[str, DatasetEntry] = {
    "stl10": DatasetEntry(read_stl10, pretrain="unlabeled", probe_train="train", probe_test="test"),
    "fashion-mnist": DatasetEntry(read_fashion_mnist, pretrain="train", probe_train="train", probe_test="test"),
    "image-folder": DatasetEntry(_read_split_folder, pretrain="train", probe_train="train", probe_test="test"),
}


def read_images(dataset: str, root: str | None, role: str, limit: int | None = None) -> ImageArray:
    """The split of image dataset `dataset` playing `role` ('pretrain', 'probe_train' or 'probe_test'), cut to
    `limit` images."""
    if dataset not in DATASETS:
        raise GimError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}")
    entry = DATASETS[dataset]
    array = entry.read(Path(root).expanduser() if root else None, getattr(entry, role))
    return array if limit is None else array.first(limit)


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
