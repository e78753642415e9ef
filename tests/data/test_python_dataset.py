"""`--data.dataset python:module:factory`: a user's module in the current folder, its Datasets of arrays, PIL images
or tensors trained on, stopped, resumed to the uninterrupted run's weights, probed and embedded by `gim`; what a
factory that does not fit is told."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from greedy_infomax.cli import main
from greedy_infomax.data import read_images
from greedy_infomax.data.python_dataset import as_image
from greedy_infomax.errors import GimError

MODULE = '''
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset


class Squares(Dataset):
    """A bright (label 1) or dark (label 0) square on noise, 32 x 32, as an (H, W, 3) array, a PIL image or a
    (3, H, W) tensor."""

    def __init__(self, count, kind, seed, size=32):
        self.count, self.kind, self.seed, self.size = count, kind, seed, size

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        pixels = np.random.default_rng((self.seed, index)).integers(0, 100, (self.size, self.size, 3), dtype=np.uint8)
        label = index % 2
        pixels[8:24, 8:24] = 250 if label else 5
        if self.kind == "pil":
            return Image.fromarray(pixels), label
        if self.kind == "tensor":
            return torch.from_numpy(pixels).permute(2, 0, 1), torch.tensor(label)
        return pixels, np.int64(label)


def make(root=None):
    return Squares(48, "array", 0), Squares(16, "pil", 1)


def floats():
    return [torch.zeros(3, 8, 8)], [torch.zeros(3, 8, 8)]


def sizes():
    return [Squares(2, "tensor", 0, size=32)[0], Squares(2, "tensor", 0, size=30)[0]], []


def one():
    return Squares(4, "array", 0)
'''


@pytest.fixture
def module(tmp_path: Path, monkeypatch, request) -> str:
    """A module of the user's, named after the test, in the current folder (where `gim` looks first)."""
    name = "user_" + re.sub(r"\W", "_", request.node.name)
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def _weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    folder = run / "checkpoints" / f"step-{step:08d}"
    return {
        f"{path.name}/{key}": value
        for path in sorted(folder.glob("module-*.pt"))
        for key, value in torch.load(path)["state_dict"].items()
    }


def test_gim_trains_resumes_probes_and_embeds_a_users_datasets(module: str, tmp_path: Path) -> None:
    """48 training images, 3 batches of 16: stopped at step 2 (mid-epoch), resumed to step 4 (epoch 1)."""
    common = [
        "pretrain",
        "--preset",
        "smoke",
        "--data.dataset",
        f"python:{module}:make",
        "--data.crop",
        "28",
        "--data.workers",
        "2",
        "--train.epochs",
        "2",
        "--train.checkpoint_every",
        "2",
    ]
    assert main([*common, "--train.max_steps", "4", "--name", "straight"]) == 0
    assert main([*common, "--train.max_steps", "2", "--name", "stopped"]) == 0
    assert main(["pretrain", "--resume", "runs/stopped", "--train.max_steps", "4"]) == 0
    straight, resumed = _weights(tmp_path / "runs" / "straight", 4), _weights(tmp_path / "runs" / "stopped", 4)
    assert straight.keys() == resumed.keys() and all(torch.equal(straight[key], resumed[key]) for key in straight)
    assert main(["probe", "runs/stopped", "--probe.epochs", "1"]) == 0
    assert (tmp_path / "runs" / "stopped" / "probe.md").is_file()
    assert main(["embed", "runs/stopped", "--module", "1", "--split", "test"]) == 0
    assert np.load("runs/stopped/embeddings/module-1-test.npz")["labels"].tolist() == [0, 1] * 8


def test_arrays_pil_images_and_tensors_are_the_same_image() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    from PIL import Image

    expected = torch.from_numpy(pixels.transpose(2, 0, 1).copy())
    for value in (pixels, Image.fromarray(pixels), expected, expected.numpy()):
        assert torch.equal(as_image(value, "x"), expected)
    assert as_image(Image.fromarray(pixels[:, :, 0]), "x").shape == (1, 5, 7)
    with pytest.raises(GimError, match="float32 pixels; return uint8"):
        as_image(pixels.astype(np.float32), "x")
    with pytest.raises(GimError, match=r"shape \(2, 5, 7\); expected"):
        as_image(pixels[:, :, :2].transpose(2, 0, 1), "x")


def test_the_splits_spec_and_classes(module: str) -> None:
    train = read_images(f"python:{module}:make", None, "pretrain")
    assert (len(train), train.num_classes, train.spec.channels, train.spec.height) == (48, 2, 3, 32)
    test = read_images(f"python:{module}:make", None, "probe_test", limit=4)
    assert len(test) == 4 and test.num_classes == 2
    image, label = test[1]
    assert image.shape == (3, 32, 32) and label == 1


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("absent", "has no function absent"),
        ("one", r"one\(\) must return \(train, test\) map-style Datasets, got Squares"),
        ("floats", "float32 pixels"),
        ("sizes", r"image 1 is 3x30x30, image 0 3x32x32; every image of a split needs one size"),
    ],
)
def test_a_factory_that_does_not_fit_is_told_why(module: str, factory: str, message: str) -> None:
    with pytest.raises(GimError, match=message):
        read_images(f"python:{module}:{factory}", None, "pretrain")[1]
