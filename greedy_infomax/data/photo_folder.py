"""Folders of real photos, `root/<class>/<file>`, streamed from disk: any mix of sizes and formats (JPEG, PNG, WebP,
... in RGB, grayscale or palette), each photo decoded, its shorter side resized and its centre square kept by the
loader's worker processes when a batch needs it, never the whole folder in memory.

A split holds its file names (one NumPy array of bytes, which forked workers share without copying) and labels, so
its memory grows only by a few dozen bytes per photo. A photo that cannot be read is replaced by the next readable
photo of its class, and the files skipped are counted and named in one warning; a class none of whose photos can be
read is an error.
"""

from __future__ import annotations

import os
import warnings
from itertools import chain
from math import ceil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from greedy_infomax.data.image_folder import image_files, split_classes, to_8_bits
from greedy_infomax.data.streamed import StreamedImages
from greedy_infomax.errors import GimError

DEFAULT_SIDE = 96
"""The side photos are brought to unless the run says otherwise (data.resize): STL-10's, whose 96-pixel images
the paper crops to 64."""


class PhotoFolder(StreamedImages):
    """The photos `names` (paths under `root`) of the classes `labels` (ascending, so each class's photos are
    consecutive), each read as a (3, side, side) uint8 tensor."""

    def __init__(
        self, root: Path, names: np.ndarray, labels: np.ndarray, classes: list[str], side: int = DEFAULT_SIDE
    ) -> None:
        self.root = root
        self.name = str(root)
        self.names = names
        self.labels = labels
        self.classes = classes
        self.num_classes = len(classes)
        self.side = side
        self.skipped: dict[str, str] = {}
        """Each unreadable file met so far (in the training process) -> why it could not be read."""
        self._warned = False

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        """Photo `index` (or, where it cannot be read, the next readable photo of its class), its label, and the
        files that could not be read on the way, one "path NUL reason" line each."""
        label = int(self.labels[index])
        failures = []
        for candidate in self._class_from(index, label):
            path = self.root / os.fsdecode(self.names[candidate])
            try:
                return torch.from_numpy(decode(path, self.side)), label, "\n".join(failures)
            except Exception as error:  # noqa: BLE001 - whatever breaks one photo, the run goes on without it
                failures.append(f"{path}\0{' '.join(str(error).split()) or type(error).__name__}")
        first, reason = failures[0].split("\0")
        raise GimError(
            f"{self.root / self.classes[label]}: none of its {len(failures)} photos can be read ({first}: {reason})"
        )

    def _class_from(self, index: int, label: int) -> chain[int]:
        """The photos of the class from `index` on, then round to the class's first ones."""
        start, end = np.searchsorted(self.labels, [label, label + 1])
        return chain(range(index, end), range(start, index))

    def unpack(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels, failures = batch
        for lines in failures:
            for line in filter(None, lines.split("\n")):
                path, reason = line.split("\0")
                self.skipped.setdefault(path, reason)
        return images, labels

    def report(self) -> None:
        if self.skipped and not self._warned:
            path = min(self.skipped)
            warnings.warn(
                f"{self.root}: {len(self.skipped)} unreadable file{'s' if len(self.skipped) > 1 else ''} "
                f"skipped, each replaced by the next readable photo of its class (first by name: {path}: "
                f"{self.skipped[path]})",
                stacklevel=2,
            )
            self._warned = True

    def first(self, count: int) -> PhotoFolder:
        return PhotoFolder(self.root, self.names[:count], self.labels[:count], self.classes, self.side)

    def resized(self, side: int) -> PhotoFolder:
        """The same photos brought to `side` pixels."""
        return PhotoFolder(self.root, self.names, self.labels, self.classes, side)


def decode(path: Path, side: int) -> np.ndarray:
    """The photo at `path` as (3, side, side) uint8 RGB: its shorter side resized to `side` (bilinear, averaging
    when it shrinks), its centre square kept. A JPEG is decoded at 1/2, 1/4 or 1/8 scale where that still leaves
    `side`, which makes large photos several times faster to read."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # notes on the EXIF or palette of photos that decode
        with Image.open(path) as image:
            image.draft("RGB", _scaled_to(image.size, side))
            image = _rgb(path, image)
            width, height = image.size
            short = min(width, height)
            box = ((width - short) / 2, (height - short) / 2, (width + short) / 2, (height + short) / 2)
            pixels = np.asarray(image.resize((side, side), Image.Resampling.BILINEAR, box=box))  # (side, side, 3)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def _scaled_to(size: tuple[int, int], side: int) -> tuple[int, int]:
    """The size of an image of `size` whose shorter side is resized to `side`."""
    scale = side / min(size)
    return ceil(size[0] * scale), ceil(size[1] * scale)


def _rgb(path: Path, image: Image.Image) -> Image.Image:
    """Any mode as RGB: 16-bit grayscale scaled to 8 bits (not clipped), palettes through RGBA (as Pillow asks of
    palettes with transparency)."""
    if image.mode.startswith("I") or image.mode == "F":
        image = to_8_bits(path, image)
    elif image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    return image.convert("RGB")


def list_photos(root: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The paths under `root` (as bytes) of the image files directly in each class folder, sorted, and their
    labels; a class folder without images is an error."""
    names, labels = [], []
    for label, name in enumerate(classes):
        files = image_files(root / name)
        names.append(np.array([os.fsencode(f"{name}/{file}") for file in files]))
        labels.append(np.full(len(files), label, dtype=np.int64))
    return np.concatenate(names), np.concatenate(labels)


def read_photo_folder(root: Path | None, split: str) -> PhotoFolder:
    """The photos of root/<split>/<class>/*: root/train and root/test with the same classes (see split_classes)."""
    classes = split_classes(root, split, "photo-folder")
    return PhotoFolder(root / split, *list_photos(root / split, classes), classes)
