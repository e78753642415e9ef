"""The ImageNet layout on tiny JPEG files: train/<wnid>/, and val/ in class folders or flat with Kaggle's CSV or a
plain label file; what a broken copy is told; `gim pretrain` and `gim probe` with the ImageNet preset's data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from greedy_infomax.cli import main
from greedy_infomax.data import read_images
from greedy_infomax.data.imagenet import read_imagenet
from greedy_infomax.errors import GimError

WNIDS = ["n01440764", "n01443537", "n02102040"]
COLOURS = [(230, 20, 20), (20, 230, 20), (20, 20, 230)]


def _jpeg(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (50, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, quality=95)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """train/: 3 wnids with 2 photos each, named as ImageNet's are; no val/ yet."""
    root = tmp_path / "ILSVRC" / "Data" / "CLS-LOC"
    for wnid, colour in zip(WNIDS, COLOURS, strict=True):
        for number in (1, 2):
            _jpeg(root / "train" / wnid / f"{wnid}_{number}.JPEG", colour, (40 + 30 * number, 60))
    return root


# val image -> its wnid, listed out of class order as the real validation set is
VAL = {
    "ILSVRC2012_val_00000001": WNIDS[2],
    "ILSVRC2012_val_00000002": WNIDS[0],
    "ILSVRC2012_val_00000003": WNIDS[2],
    "ILSVRC2012_val_00000004": WNIDS[1],
}


def _flat_val(root: Path) -> None:
    for name, wnid in VAL.items():
        _jpeg(root / "val" / f"{name}.JPEG", COLOURS[WNIDS.index(wnid)])


def _colours_and_labels(root: Path, split: str) -> tuple[list[int], list[int]]:
    """The label of each image of the split, and the index of its dominant colour."""
    folder = read_imagenet(root, split).resized(16)
    items = [folder[index] for index in range(len(folder))]
    return [label for _, label, _ in items], [int(image.float().mean(dim=(1, 2)).argmax()) for image, _, _ in items]


def test_train_is_labelled_by_the_sorted_wnids(copy: Path) -> None:
    labels, colours = _colours_and_labels(copy, "train")
    assert labels == colours == [0, 0, 1, 1, 2, 2]


def test_val_in_class_folders(copy: Path) -> None:
    for name, wnid in VAL.items():
        _jpeg(copy / "val" / wnid / f"{name}.JPEG", COLOURS[WNIDS.index(wnid)])
    labels, colours = _colours_and_labels(copy, "val")
    assert labels == colours == [0, 1, 2, 2]


def test_flat_val_with_kaggles_csv_three_folders_above_the_root(copy: Path) -> None:
    _flat_val(copy)
    rows = [f"{name},{wnid} 10 12 40 38 {wnid} 1 2 3 4" for name, wnid in VAL.items()]
    (copy.parents[2] / "LOC_val_solution.csv").write_text("\n".join(["ImageId,PredictionString", *rows]) + "\n")
    labels, colours = _colours_and_labels(copy, "val")
    assert labels == colours == [0, 1, 2, 2]
    assert read_images("imagenet", str(copy), "probe_test").root == copy / "val"


def test_flat_val_with_a_plain_label_file(copy: Path) -> None:
    _flat_val(copy)
    (copy / "val_labels.txt").write_text("".join(f"{name}.JPEG {wnid}\n" for name, wnid in VAL.items()))
    labels, colours = _colours_and_labels(copy, "val")
    assert labels == colours == [0, 1, 2, 2]


def test_what_a_broken_copy_is_told(copy: Path) -> None:
    _flat_val(copy)
    with pytest.raises(GimError, match="no label file was found: put LOC_val_solution.csv or val_labels.txt in"):
        read_imagenet(copy, "train")  # pre-training checks val/ before it starts
    labels = copy / "val_labels.txt"
    labels.write_text("ILSVRC2012_val_00000001.JPEG n01440764\n")
    with pytest.raises(GimError, match=r"val_labels.txt: no label for .*ILSVRC2012_val_00000002\.JPEG"):
        read_imagenet(copy, "val")
    labels.write_text("".join(f"{name}.JPEG n09999999\n" for name in VAL))
    with pytest.raises(GimError, match="labelled n09999999, which is not a class folder of"):
        read_imagenet(copy, "val")
    labels.write_text("ILSVRC2012_val_00000001.JPEG\n")
    with pytest.raises(GimError, match="line 1: expected a file name and its wnid"):
        read_imagenet(copy, "val")
    with pytest.raises(GimError, match="the imagenet dataset needs --data.root"):
        read_imagenet(None, "train")


def test_gim_pretrains_and_probes_the_imagenet_preset_on_a_copy(copy: Path, tmp_path: Path, monkeypatch) -> None:
    """The preset's data as it is (96-pixel photos, 64-pixel crops, 7x7 patches, flat val); a tiny encoder."""
    for number in range(3, 8):
        for wnid, colour in zip(WNIDS, COLOURS, strict=True):
            _jpeg(copy / "train" / wnid / f"{wnid}_{number}.JPEG", colour, (100 + number, 90))
    _flat_val(copy)
    (copy / "val_labels.txt").write_text("".join(f"{name}.JPEG {wnid}\n" for name, wnid in VAL.items()))
    monkeypatch.chdir(tmp_path)
    tiny = [
        "--model.block",
        "basic",
        "--model.blocks_per_stage",
        "[1, 1, 1, 1]",
        "--model.planes",
        "[4, 4, 8, 8]",
        "--model.stem_channels",
        "4",
        "--objective.num_negatives",
        "2",
        "--data.batch_size",
        "8",
    ]
    assert (
        main(
            [
                "pretrain",
                "--preset",
                "imagenet-resnet50-gim",
                "--data.root",
                str(copy),
                *tiny,
                "--train.max_steps",
                "2",
                "--train.device",
                "cpu",
                "--name",
                "imagenet",
            ]
        )
        == 0
    )
    assert main(["probe", "runs/imagenet", "--probe.epochs", "1"]) == 0
    assert main(["embed", "runs/imagenet", "--module", "4", "--split", "test"]) == 0
    assert np.load("runs/imagenet/embeddings/module-4-test.npz")["labels"].tolist() == [0, 1, 2, 2]
