"""Datasets by name, and which split plays which role (pre-training, probe training, probe testing)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from greedy_infomax.config import DataConfig
from greedy_infomax.data.fashion_mnist import read_fashion_mnist
from greedy_infomax.data.image_folder import read_image_folder
from greedy_infomax.data.spec import ImageArray
from greedy_infomax.data.stl10 import read_stl10
from greedy_infomax.errors import GimError


def _read_split_folder(root: Path | None, split: str) -> ImageArray:
    """An image folder laid out as root/train/<class>/* and root/test/<class>/*."""
    if root is None:
        raise GimError("data.root: the image-folder dataset needs --data.root (a folder with train/ and test/)")
    return read_image_folder(root / split)


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


def load_split(config: DataConfig, role: str) -> ImageArray:
    """The split playing `role` ('pretrain', 'probe_train' or 'probe_test'), cut to `config.limit` images."""
    if config.dataset not in DATASETS:
        raise GimError(f"unknown dataset {config.dataset!r}; choose one of: {', '.join(DATASETS)}")
    entry = DATASETS[config.dataset]
    root = Path(config.root).expanduser() if config.root else None
    array = entry.read(root, getattr(entry, role))
    if config.limit is not None and config.limit < len(array):
        labels = None if array.labels is None else array.labels[:config.limit]
        array = replace(array, images=array.images[:config.limit], labels=labels)
    return array
