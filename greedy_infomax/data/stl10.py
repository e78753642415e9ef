"""STL-10 from its official binary release, memory-mapped so the 2.7 GB unlabelled split costs no RAM.

Layout (`<root>/stl10_binary/`): `{split}_X.bin` holds 96x96x3 uint8 images back to back, each stored
channel-major and, within a channel, column-major; `{split}_y.bin` holds one uint8 label 1..10 per image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from greedy_infomax.data.download import download, extract_tar
from greedy_infomax.data.roots import required_gim_data
from greedy_infomax.data.spec import ImageArray, ImageSpec
from greedy_infomax.errors import GimError

STL10_SPEC = ImageSpec(
    channels=3,
    height=96,
    width=96,
    num_classes=10,
    mean=(0.4313, 0.4156, 0.3663),
    std=(0.2683, 0.2610, 0.2687),
    grayscale_mean=0.4120,
    grayscale_std=0.2570,
)
SPLITS = ("unlabeled", "train", "test")
FOLDER = "stl10_binary"
URL = "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
MD5 = "91f7769df0f17e558f3565bffb0c7dfb"


def read_stl10(root: Path | None, split: str) -> ImageArray:
    """Read one split from `root/stl10_binary/` (root None: `$GIM_DATA`); `unlabeled` has no labels. Reading
    `unlabeled` (pre-training) also checks the labelled splits, so the run does not end in a probe that fails."""
    if split not in SPLITS:
        raise GimError(f"unknown STL-10 split {split!r}: choose one of {', '.join(SPLITS)}")
    root = required_gim_data("STL-10", f"{FOLDER}/") if root is None else root
    for labelled in ("train", "test") if split == "unlabeled" else ():
        _read_labels(_existing(root, f"{labelled}_y.bin"), len(_read_images(_existing(root, f"{labelled}_X.bin"))))
    images = _read_images(_existing(root, f"{split}_X.bin"))
    labels = None if split == "unlabeled" else _read_labels(_existing(root, f"{split}_y.bin"), len(images))
    return ImageArray(images, labels, STL10_SPEC)


def _existing(root: Path, name: str) -> Path:
    """The path of `name` in the release folder, or an error saying where the release must go."""
    path = root / FOLDER / name
    if not path.is_file():
        raise GimError(
            f"{path} not found: extract the STL-10 binary release ({URL}) into {root} so that "
            f"{root / FOLDER} holds {name}, or run `gim data stl10 --root {root}` to download it there"
        )
    return path


def _read_images(path: Path) -> np.ndarray:
    """Map the file as (N, 3, 96, 96) without reading it; the transpose fixes the column-major storage."""
    image_bytes = STL10_SPEC.channels * STL10_SPEC.height * STL10_SPEC.width
    size = path.stat().st_size
    if size == 0 or size % image_bytes:
        raise GimError(f"{path}: {size} bytes is not a whole, non-zero number of 96x96x3 images of {image_bytes} bytes")
    shape = (size // image_bytes, STL10_SPEC.channels, STL10_SPEC.width, STL10_SPEC.height)
    stored = np.memmap(path, dtype=np.uint8, mode="r", shape=shape)  # (N, C, W, H)
    return stored.transpose(0, 1, 3, 2)  # (N, C, H, W)


def _read_labels(path: Path, num_images: int) -> np.ndarray:
    """Read the 1-based labels and return them 0-based, checking there is one valid label per image."""
    stored = np.fromfile(path, dtype=np.uint8)
    if len(stored) != num_images:
        raise GimError(f"{path}: {len(stored)} labels for {num_images} images")
    bad = (stored < 1) | (stored > STL10_SPEC.num_classes)
    if bad.any():
        index = int(np.argmax(bad))
        raise GimError(f"{path}: label {stored[index]} at index {index} is outside 1..{STL10_SPEC.num_classes}")
    return stored.astype(np.int64) - 1


def download_stl10(root: Path) -> Path:
    """Download and extract the official release into `root` (skipped if already there); returns its folder."""
    folder = root / FOLDER
    if not folder.is_dir():
        extract_tar(download(URL, root / "stl10_binary.tar.gz", MD5), root)
    return folder
