"""Fashion-MNIST from its IDX files, as Zalando publishes them and Debian's `dataset-fashion-mnist` installs them.

IDX: two zero bytes, a dtype code (0x08 = uint8), the number of dimensions, one big-endian int32 size per
dimension, then the values in C order. Files may be gzipped (`.gz`).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from greedy_infomax.data.download import download
from greedy_infomax.data.roots import gim_data
from greedy_infomax.data.spec import ImageArray, ImageSpec
from greedy_infomax.errors import GimError

FASHION_MNIST_SPEC = ImageSpec(
    channels=1,
    height=28,
    width=28,
    num_classes=10,
    mean=(0.2860,),
    std=(0.3530,),
    grayscale_mean=0.2860,
    grayscale_std=0.3530,
)
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
MD5S = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
SYSTEM_FOLDER = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's `dataset-fashion-mnist` package installs the four files."""
UINT8 = 0x08


def read_idx(path: Path) -> np.ndarray:
    """Read a uint8 IDX file (gzipped if its name ends in `.gz`) into an array of the shape it declares."""
    data = _read_bytes(path)
    if len(data) < 4 or data[:2] != b"\0\0":
        raise GimError(f"{path}: not an IDX file (it must start with two zero bytes, a dtype code and a rank)")
    dtype, ndim = data[2], data[3]
    if dtype != UINT8:
        raise GimError(f"{path}: IDX dtype code 0x{dtype:02X} is not supported (only 0x08, unsigned byte)")
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise GimError(f"{path}: truncated or invalid IDX header ({ndim} dimensions, {len(data)} bytes)")
    shape = struct.unpack(f">{ndim}i", data[4:header])
    if min(shape) < 0:
        raise GimError(f"{path}: IDX header declares a negative size in shape {shape}")
    values = len(data) - header
    if values != math.prod(shape):
        raise GimError(f"{path}: shape {shape} needs {math.prod(shape)} bytes of values but the file has {values}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _read_bytes(path: Path) -> bytes:
    """The file's content, decompressed if it is gzipped, with unreadable files reported by name."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as file:
                return file.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise GimError(f"{path}: cannot read ({error})") from error


def read_fashion_mnist(root: Path | None, split: str) -> ImageArray:
    """Read the train or test split from `root`, or from the first search folder that has it if `root` is None."""
    if split not in FILES:
        raise GimError(f"unknown Fashion-MNIST split {split!r}: choose one of {', '.join(FILES)}")
    images_name, labels_name = FILES[split]
    folder = _find_folder(images_name) if root is None else root
    images_path, labels_path = _existing(folder, images_name), _existing(folder, labels_name)
    images, labels = read_idx(images_path), read_idx(labels_path)
    _check(images, images_path, labels, labels_path)
    return ImageArray(images[:, None], labels.astype(np.int64), FASHION_MNIST_SPEC)  # (N, 1, 28, 28)


def _check(images: np.ndarray, images_path: Path, labels: np.ndarray, labels_path: Path) -> None:
    """Fail unless images are (N, 28, 28) with one label in 0..9 each: a well-formed IDX file may hold anything."""
    size = (FASHION_MNIST_SPEC.height, FASHION_MNIST_SPEC.width)
    if images.ndim != 3 or images.shape[1:] != size:
        raise GimError(f"{images_path}: images have shape {images.shape}, expected (N, {size[0]}, {size[1]})")
    if labels.shape != images.shape[:1]:
        raise GimError(f"{labels_path}: labels have shape {labels.shape} for {len(images)} images in {images_path}")
    if labels.size and labels.max() >= FASHION_MNIST_SPEC.num_classes:
        raise GimError(f"{labels_path}: label {labels.max()} is outside 0..{FASHION_MNIST_SPEC.num_classes - 1}")


def _locate(folder: Path, name: str) -> Path | None:
    """`folder/name` or its gunzipped twin (as some mirrors ship it), whichever exists."""
    return next((path for path in (folder / name, folder / name.removesuffix(".gz")) if path.is_file()), None)


def _existing(folder: Path, name: str) -> Path:
    """The located file, or an error saying what is missing and how to get it."""
    path = _locate(folder, name)
    if path is None:
        raise GimError(f"{folder / name} not found (nor without .gz): {_how_to_get()}")
    return path


def search_folders() -> list[Path]:
    """Where `read_fashion_mnist(None, ...)` looks, in order: `$GIM_DATA/fashion-mnist`, then Debian's folder."""
    data = gim_data()
    return ([data / "fashion-mnist"] if data else []) + [SYSTEM_FOLDER]


def _find_folder(images_name: str) -> Path:
    """The first search folder that holds the split's images."""
    folders = search_folders()
    for folder in folders:
        if _locate(folder, images_name) is not None:
            return folder
    looked = ", ".join(str(folder) for folder in folders)
    unset = "" if gim_data() else " ($GIM_DATA is not set)"
    raise GimError(f"Fashion-MNIST not found; looked in {looked}{unset}: {_how_to_get()}")


def _how_to_get() -> str:
    """The two ways to get the files, shared by every not-found message."""
    return (
        "install Debian's dataset-fashion-mnist package (apt-get install dataset-fashion-mnist), "
        "or download the four .gz files with `gim data fashion-mnist --root $GIM_DATA/fashion-mnist`"
    )


def download_fashion_mnist(root: Path) -> Path:
    """Download the four official files into `root` (each skipped if already there) and return `root`."""
    for name, md5 in MD5S.items():
        download(BASE_URL + name, root / name, md5)
    return root
