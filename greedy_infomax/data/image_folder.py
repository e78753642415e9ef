"""Any class-per-subfolder image collection (`root/<class>/<image>`), read whole into memory.

Meant for small custom datasets, so the spec (size, mean, std) is measured from the images themselves.
"""

from __future__ import annotations

import os
import warnings
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from greedy_infomax.data.spec import ImageArray, ImageSpec
from greedy_infomax.data.transforms import LUMA
from greedy_infomax.errors import GimError


def class_names(root: Path, layout: str = "<class>/<image>") -> list[str]:
    """The sorted names of the non-hidden subfolders of `root`: label i is class i of this list.

    `layout` describes the expected content for the errors (the speech-folder reader's classes are speakers).
    """
    if not root.is_dir():
        raise GimError(f"{root}: not a folder (expected {root}/{layout})")
    names = sorted(entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not names:
        raise GimError(f"{root}: no subfolders (expected {root}/{layout})")
    return names


def check_classes(root: Path, classes: list[str]) -> list[str]:
    """The class folders of `root`, which must be `classes` (another split's), so label i means one class."""
    names = class_names(root)
    if names != classes:
        raise GimError(
            f"{root}: class folders {names} differ from {classes} of the training split; "
            f"every split needs the same classes"
        )
    return names


def split_classes(root: Path | None, split: str, dataset: str) -> list[str]:
    """The classes of a folder laid out as root/train/<class>/* and root/test/<class>/*, with the same classes.
    Reading train/ also checks test/'s layout, if there is one, so a pre-training run does not end in a probe that
    fails."""
    if root is None:
        raise GimError(f"data.root: the {dataset} dataset needs --data.root (a folder with train/ and test/)")
    classes = class_names(root / "train")
    if len(classes) < 2:
        raise GimError(
            f"{root / 'train'}: one class folder ({classes[0]}); the probes classify images, which "
            "needs two classes at least (with one, every accuracy is 100%)"
        )
    if split == "train" and (root / "test").is_dir():
        for name in check_classes(root / "test", classes):
            image_files(root / "test" / name)
    return classes


def read_image_folder(root: Path, grayscale: bool = False, classes: list[str] | None = None) -> ImageArray:
    """Read every image under `root/<class>/` as RGB (or luma if `grayscale`); all must share one size.

    `classes`: the class folders `root` must have (another split's), so that label i means the same class in both.
    """
    names = class_names(root) if classes is None else check_classes(root, classes)
    paths, labels = list_images(root, names)
    images = _read_all(paths, "L" if grayscale else "RGB")  # (N, C, H, W)
    return ImageArray(images, np.array(labels, dtype=np.int64), _measure(images, len(names)))


def list_images(root: Path, names: list[str]) -> tuple[list[Path], list[int]]:
    """Every image file directly in each class folder, sorted, with its class index (see image_files). Subfolders
    and broken symbolic links are not read, with a warning: images the user meant to train on may be in them."""
    paths: list[Path] = []
    labels: list[int] = []
    unread: dict[str, list[Path]] = {"subfolders": [], "broken symbolic links": []}
    for label, name in enumerate(names):
        files = image_files(root / name)
        paths += [root / name / file for file in files]
        with os.scandir(root / name) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    unread["subfolders"].append(Path(entry.path))
                elif entry.is_symlink() and not os.path.exists(entry.path):
                    unread["broken symbolic links"].append(Path(entry.path))
        labels += [label] * len(files)
    for kind, skipped in unread.items():
        if skipped:
            warnings.warn(
                f"{root}: {len(skipped)} {kind} in class folders not read (the first: {skipped[0]}); "
                "images are read only directly inside root/<class>/",
                stacklevel=2,
            )
    return paths, labels


def image_files(folder: Path) -> list[str]:
    """The sorted names of the image files directly in a class folder, by suffix (so notes and Thumbs.db are
    passed over; hidden files too); an error if there are none."""
    visible = [entry.name for entry in os.scandir(folder) if entry.is_file() and not entry.name.startswith(".")]
    files = sorted(name for name in visible if os.path.splitext(name)[1].lower() in image_suffixes())
    if not files:
        others = sorted({os.path.splitext(name)[1] or "no suffix" for name in visible})
        raise GimError(
            f"{folder}: class folder has no images"
            + (f" (only files with {', '.join(others)}, which Pillow does not read)" if others else "")
        )
    return files


@cache
def image_suffixes() -> frozenset[str]:
    """File suffixes (lower case, with the dot) of the formats Pillow reads (asked once: it loads every plugin)."""
    return frozenset(suffix for suffix, kind in Image.registered_extensions().items() if kind in Image.OPEN)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image, from its header."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise GimError(f"{path}: cannot read as an image ({error})") from error


def _read_all(paths: list[Path], mode: str) -> np.ndarray:
    """Stack the images as (N, C, H, W), failing on the first one whose size differs from the first image's."""
    images = [_read(path, mode) for path in paths]  # each (H, W, C)
    height, width = images[0].shape[:2]
    for path, image in zip(paths, images, strict=True):
        if image.shape[:2] != (height, width):
            raise GimError(
                f"{path}: size {image.shape[1]}x{image.shape[0]} differs from {width}x{height} of {paths[0]}"
            )
    return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2))


def _read(path: Path, mode: str) -> np.ndarray:
    """One image converted to `mode`, as (H, W, C) uint8."""
    try:
        with Image.open(path) as image:
            if image.mode.startswith("I") or image.mode == "F":
                image = to_8_bits(path, image)
            return np.atleast_3d(np.asarray(image.convert(mode)))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise GimError(f"{path}: cannot read as an image ({error})") from error


def to_8_bits(path: Path, image: Image.Image) -> Image.Image:
    """A 16-bit grayscale image scaled from 0..65535 to 8 bits (PIL's own conversion clips every value above 255
    to white); a 32-bit integer one that holds 8-bit values kept as it is; float or wider values refused."""
    values = np.asarray(image)
    sixteen = image.mode.startswith("I;16")
    if image.mode == "F" or values.min() < 0 or values.max() > (65535 if sixteen else 255):
        raise GimError(
            f"{path}: {image.mode} pixels ({values.min()}..{values.max()}) are not 8 or 16-bit "
            "grayscale; save the image as 8 or 16 bits"
        )
    return Image.fromarray(np.round(values / 257 if sixteen else values).astype(np.uint8), "L")


def _measure(images: np.ndarray, num_classes: int) -> ImageSpec:
    """The spec of these (N, C, H, W) images: per-channel and luma mean/std of pixels scaled to [0, 1]."""
    pixels = images / 255.0
    luma = pixels[:, 0] if pixels.shape[1] == 1 else np.einsum("c,nchw->nhw", np.array(LUMA), pixels)  # (N, H, W)
    return ImageSpec(
        channels=images.shape[1],
        height=images.shape[2],
        width=images.shape[3],
        num_classes=num_classes,
        mean=tuple(float(value) for value in pixels.mean(axis=(0, 2, 3))),
        std=tuple(float(value) for value in pixels.std(axis=(0, 2, 3))),
        grayscale_mean=float(luma.mean()),
        grayscale_std=float(luma.std()),
    )
