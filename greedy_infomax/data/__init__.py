"""Datasets by name, which split plays which role (pre-training, probe training, probe testing), and the
pre-training loader of each task."""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from greedy_infomax.config import AnyRunConfig, AudioDataConfig, DataConfig, RunConfig
from greedy_infomax.data.fashion_mnist import read_fashion_mnist
from greedy_infomax.data.image_folder import (check_classes, class_names, image_size, list_images,
                                              read_image_folder)
from greedy_infomax.data.librispeech import LibriSpeechCorpus, WindowLoader, read_librispeech
from greedy_infomax.data.loader import BatchLoader
from greedy_infomax.data.roots import gim_data
from greedy_infomax.data.spec import ImageArray, ImageSpec
from greedy_infomax.data.speech_folder import read_speech_folder
from greedy_infomax.data.stl10 import read_stl10
from greedy_infomax.data.transforms import ImageTransform
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


def load_split(config: DataConfig, role: str) -> ImageArray:
    """The split playing `role` ('pretrain', 'probe_train' or 'probe_test'), cut to `config.limit` images."""
    if config.dataset not in DATASETS:
        raise GimError(f"unknown dataset {config.dataset!r}; choose one of: {', '.join(DATASETS)}")
    entry = DATASETS[config.dataset]
    root = Path(config.root).expanduser() if config.root else None
    array = entry.read(root, getattr(entry, role))
    return array if config.limit is None else array.first(config.limit)


def input_channels(config: DataConfig, spec: ImageSpec) -> int:
    """Channels the encoder receives: one after the grayscale transform, else the dataset's."""
    return 1 if config.grayscale else spec.channels


def eval_loader(config: RunConfig, role: str, device: torch.device, spec: ImageSpec | None = None) -> BatchLoader:
    """The split playing `role` in stored order with the evaluation transform (centre crop, no flip), normalised
    with the statistics of `spec` (default: the split's own; the probes use their training split's for both).

    Batches are twice the training batch: forward-only passes are cheap, and small batches keep activations in cache.
    """
    array = load_split(config.data, role)
    return BatchLoader(array, 2 * config.data.batch_size, eval_transform(config.data, spec or array.spec), device)


def eval_transform(config: DataConfig, spec: ImageSpec) -> ImageTransform:
    """uint8 images -> the encoder's evaluation input: centre crop, grayscale if configured, normalised by `spec`."""
    return ImageTransform.for_data(config.crop, False, config.grayscale, spec)


def speech_corpus_root() -> Path:
    """Where the generated speech corpus lives by default: $GIM_DATA/speech-corpus, else the user's cache."""
    data = gim_data()
    if data:
        return data / "speech-corpus"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "greedy-infomax", "speech-corpus")


def load_speech(config: AudioDataConfig) -> LibriSpeechCorpus:
    """LibriSpeech or the generated corpus (same layout, same reader), or a speech folder, cut to `config.limit`
    utterances per split."""
    root = Path(config.root).expanduser() if config.root else None
    if config.dataset == "speech-folder":
        if root is None:
            raise GimError("data.root: the speech-folder dataset needs --data.root (a folder of speaker folders)")
        return read_speech_folder(root, config.limit)
    if root is None and config.dataset == "speech-corpus":
        root = speech_corpus_root()
    return read_librispeech(root, config.limit)


def pretrain_loader(config: AnyRunConfig, device: torch.device) -> tuple[BatchLoader | WindowLoader, int]:
    """The seeded, augmented pre-training batches of the run's task, and the encoder's input channels.

    A supervised objective trains on the labelled split (STL-10's 5k `train` images, not `unlabeled`) and must
    be sized for the dataset's classes."""
    supervised = config.objective.name == "supervised"
    if config.task == "audio":
        corpus = load_speech(config.data)
        if supervised:
            if corpus.alignment_file is None:
                raise GimError("objective.name: the supervised objective trains a phone classifier, and the corpus "
                               "has no phone alignments")
            _check_classes("objective.num_speakers", config.objective.num_speakers, corpus.spec.num_speakers)
            _check_classes("objective.num_phones", config.objective.num_phones, corpus.spec.num_phones)
        loader = WindowLoader(corpus, "train", config.data.batch_size, device, config.train.seed, phones=supervised)
        in_channels, count = 1, f"{len(loader.utterances)} training utterances"
    else:
        data = load_split(config.data, "probe_train" if supervised else "pretrain")
        if supervised:
            _check_classes("objective.num_classes", config.objective.num_classes, data.spec.num_classes)
        transform = ImageTransform.for_data(config.data.crop, config.data.flip, config.data.grayscale, data.spec)
        loader = BatchLoader(data, config.data.batch_size, transform, device, seed=config.train.seed)
        in_channels, count = input_channels(config.data, data.spec), f"{len(data)} pre-training images"
    if len(loader) == 0:
        raise GimError(f"{count} do not fill one batch of {config.data.batch_size}")
    return loader, in_channels


def _check_classes(option: str, configured: int, dataset: int) -> None:
    if configured != dataset:
        raise GimError(f"{option}: the supervised objective is sized for {configured} classes, the data has {dataset}; "
                       f"pass --{option} {dataset}")
