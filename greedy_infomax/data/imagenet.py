"""ImageNet (ILSVRC-2012) as it is usually kept: `train/<wnid>/*.JPEG`, and `val/` either in class folders
(`val/<wnid>/*.JPEG`, as the common preparation script leaves it) or flat (`val/*.JPEG`) with a label file; both
splits streamed from disk as photo folders are.

The flat form's labels come from Kaggle's `LOC_val_solution.csv` (ImageId,PredictionString: the image's name
without suffix, then its boxes, each starting with the wnid), looked for in the root and the three folders above it
(Kaggle's copy keeps it three levels above ILSVRC/Data/CLS-LOC/), or from `val_labels.txt` (a line per image: its
file name, then its wnid) in the root or in val/. The devkit's ground truth numbers classes by ILSVRC2012_ID, whose
mapping to wnids is a MATLAB file; it is not read here.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from greedy_infomax.data.image_folder import check_classes, class_names, image_files, image_suffixes
from greedy_infomax.data.photo_folder import PhotoFolder, list_photos
from greedy_infomax.errors import GimError

LABEL_FILES = ("LOC_val_solution.csv", "val_labels.txt")


def read_imagenet(root: Path | None, split: str) -> PhotoFolder:
    """The `train` or `val` split of the copy in `root`, labelled by the sorted wnids of train/. Reading train also
    reads val/'s layout and labels, so a pre-training run does not end in a probe that fails."""
    if root is None:
        raise GimError("data.root: the imagenet dataset needs --data.root (the folder holding train/ and val/)")
    wnids = class_names(root / "train", "<wnid>/*.JPEG")
    if split == "train":
        if (root / "val").is_dir():
            _read_val(root, wnids)
        return PhotoFolder(root / "train", *list_photos(root / "train", wnids), wnids)
    return _read_val(root, wnids)


def _read_val(root: Path, wnids: list[str]) -> PhotoFolder:
    val = root / "val"
    if not val.is_dir():
        raise GimError(f"{val}: not a folder (expected {val}/<wnid>/*.JPEG, or {val}/*.JPEG and a label file)")
    flat = any(
        entry.is_file() and os.path.splitext(entry.name)[1].lower() in image_suffixes() for entry in os.scandir(val)
    )
    if not flat:
        return PhotoFolder(val, *list_photos(val, check_classes(val, wnids)), wnids)
    label_file = _label_file(root)
    by_name = _read_labels(label_file)
    index = {wnid: label for label, wnid in enumerate(wnids)}
    rows = []
    for file in image_files(val):
        wnid = by_name.get(os.path.splitext(file)[0])
        if wnid is None:
            raise GimError(f"{label_file}: no label for {val / file}")
        if wnid not in index:
            raise GimError(f"{label_file}: {file} is labelled {wnid}, which is not a class folder of {root / 'train'}")
        rows.append((index[wnid], file))
    rows.sort()  # each class's images consecutive, as PhotoFolder wants
    return PhotoFolder(
        val,
        np.array([os.fsencode(file) for _, file in rows]),
        np.array([label for label, _ in rows], dtype=np.int64),
        wnids,
    )


def _label_file(root: Path) -> Path:
    """The first label file found in the root, val/ or the three folders above the root."""
    places = [root, root / "val", *list(root.resolve().parents)[:3]]
    for place in places:
        for name in LABEL_FILES:
            if (place / name).is_file():
                return place / name
    raise GimError(
        f"{root / 'val'} holds its images without class folders, and no label file was found: put "
        f"{' or '.join(LABEL_FILES)} in {root} (docs/cli.md, ImageNet)"
    )


def _read_labels(path: Path) -> dict[str, str]:
    """Image name without suffix -> wnid, from either label file's format."""
    if path.suffix == ".csv":
        with path.open(newline="") as file:
            rows = csv.DictReader(file)
            if rows.fieldnames is None or not {"ImageId", "PredictionString"} <= set(rows.fieldnames):
                raise GimError(f"{path}: expected the columns ImageId,PredictionString, got {rows.fieldnames}")
            return {row["ImageId"]: (row["PredictionString"] or "?").split()[0] for row in rows}
    labels = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        words = line.split()
        if words and len(words) < 2:
            raise GimError(f"{path}, line {number}: expected a file name and its wnid, got {line.strip()!r}")
        if words:
            labels[os.path.splitext(words[0])[0]] = words[1]
    return labels
