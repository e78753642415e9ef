"""Photo folders streamed by workers: tiny JPEG, PNG and WebP files of mixed sizes and modes, brought to one size;
unreadable files skipped, counted and warned about once; a class with nothing readable refused; `gim pretrain` and
`gim probe` on such a folder."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from greedy_infomax.cli import main
from greedy_infomax.data import read_images
from greedy_infomax.data.photo_folder import PhotoFolder, decode, read_photo_folder
from greedy_infomax.data.streamed import StreamLoader, image_batches, measure_spec
from greedy_infomax.data.transforms import ImageTransform
from greedy_infomax.errors import GimError

RED, GREEN, BLUE = (220, 30, 30), (30, 200, 40), (20, 40, 210)


def _photo(path: Path, size: tuple[int, int], color: tuple[int, int, int], mode: str = "RGB") -> Path:
    """A solid photo of `size` (width, height) saved in `mode` in the format of the path's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).convert(mode).save(path)
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """train/ and test/ of a cat and a dog class: JPEG, PNG and WebP files of sizes 40..300 pixels, in RGB,
    palette and grayscale, and a note that is not an image."""
    for split in ("train", "test"):
        _photo(tmp_path / split / "cat" / "a.jpg", (300, 120), RED)
        _photo(tmp_path / split / "cat" / "b.png", (40, 64), GREEN, "P")
        _photo(tmp_path / split / "cat" / "c.webp", (90, 90), BLUE)
        _photo(tmp_path / split / "dog" / "d.JPEG", (64, 200), (128, 128, 128), "L")
        _photo(tmp_path / split / "dog" / "e.png", (120, 80), RED, "RGBA")
        (tmp_path / split / "dog" / "notes.txt").write_text("not a photo")
    return tmp_path


def test_every_format_size_and_mode_is_read_as_rgb_of_one_size(photos: Path) -> None:
    folder = read_photo_folder(photos, "train").resized(32)
    assert len(folder) == 5 and folder.classes == ["cat", "dog"] and folder.labels.tolist() == [0, 0, 0, 1, 1]
    colours = [RED, GREEN, BLUE, (128, 128, 128), RED]
    for index, colour in enumerate(colours):
        image, label, failures = folder[index]
        assert image.shape == (3, 32, 32) and image.dtype == torch.uint8 and failures == ""
        np.testing.assert_allclose(image.float().mean(dim=(1, 2)), colour, atol=3)  # JPEG, WebP are lossy


def test_the_shorter_side_is_resized_and_the_centre_square_kept(tmp_path: Path) -> None:
    """Thirds of red, blue and green side by side: the centre square is the blue third, at any size and format."""
    pixels = np.zeros((100, 300, 3), dtype=np.uint8)
    pixels[:, :100], pixels[:, 100:200], pixels[:, 200:] = RED, BLUE, GREEN
    for name, scale in (("wide.png", 1), ("large.jpg", 8)):  # 2400 x 800: decoded at 1/8 scale
        path = tmp_path / name
        Image.fromarray(pixels).resize((300 * scale, 100 * scale), Image.Resampling.NEAREST).save(path, quality=95)
        image = decode(path, 20).astype(float)
        assert image.shape == (3, 20, 20)
        np.testing.assert_allclose(image[:, 2:-2, 2:-2].mean(axis=(1, 2)), BLUE, atol=6)


def _epochs(folder: PhotoFolder, count: int, workers: int = 2) -> list[torch.Tensor]:
    transform = ImageTransform(crop=16, flip=True, grayscale=False, mean=(0.5,) * 3, std=(0.25,) * 3)
    loader = image_batches(folder, 2, transform, torch.device("cpu"), seed=1, workers=workers)
    assert isinstance(loader, StreamLoader)
    return [torch.cat([labels for _, labels in loader.epoch(epoch)]) for epoch in range(count)]


def test_unreadable_files_are_replaced_by_the_next_photo_of_their_class_counted_and_warned_about_once(
    photos: Path,
) -> None:
    (photos / "train" / "cat" / "broken.jpg").write_text("not a jpeg")
    png = (photos / "train" / "cat" / "b.png").read_bytes()
    (photos / "train" / "cat" / "cut.png").write_bytes(png[: len(png) // 2])
    folder = read_photo_folder(photos, "train").resized(24)
    image, label, failures = folder[2]  # a, b, broken, c, cut: broken.jpg -> c.webp
    assert label == 0 and "broken.jpg" in failures and torch.equal(image, folder[3][0]) and folder[3][2] == ""
    image, label, failures = folder[4]  # cut.png, the last cat -> round to a.jpg
    assert label == 0 and "cut.png" in failures and torch.equal(image, folder[0][0])
    with pytest.warns(UserWarning) as caught:
        labels = _epochs(folder, 2)
    assert len(caught) == 1, [str(w.message) for w in caught]
    assert "2 unreadable files skipped" in str(caught[0].message) and "broken.jpg" in str(caught[0].message)
    assert sorted(Path(path).name for path in folder.skipped) == ["broken.jpg", "cut.png"]
    assert [len(epoch) for epoch in labels] == [6, 6]  # 7 files: 3 batches of 2


def test_a_class_without_one_readable_photo_is_an_error(photos: Path) -> None:
    for name in ("d.JPEG", "e.png"):
        (photos / "train" / "dog" / name).write_bytes(b"\xff\xd8 cut short")
    folder = read_photo_folder(photos, "train")
    with pytest.raises(GimError) as error:
        _epochs(folder, 1)
    assert "dog: none of its 2 photos can be read" in str(error.value) and "\n" not in str(error.value)


def test_the_spec_is_measured_from_a_sample_spread_over_the_split(photos: Path) -> None:
    """Of the 5 photos, a sample of 2 reads the first and the last: red twice."""
    folder = read_photo_folder(photos, "train").resized(16)
    spec = measure_spec(folder, folder.num_classes, sample=2)
    assert (spec.channels, spec.height, spec.width, spec.num_classes) == (3, 16, 16, 2)
    np.testing.assert_allclose(spec.mean, np.array(RED) / 255, atol=0.01)
    assert max(spec.std) < 0.01
    whole = folder.spec
    np.testing.assert_allclose(whole.mean, np.array([RED, GREEN, BLUE, (128,) * 3, RED]).mean(axis=0) / 255, atol=0.01)


def test_the_test_split_is_checked_when_pretraining_reads_train(photos: Path) -> None:
    (photos / "test" / "emu").mkdir()
    with pytest.raises(GimError, match=r"class folders \['cat', 'dog', 'emu'\] differ"):
        read_images("photo-folder", str(photos), "pretrain")
    with pytest.raises(GimError, match="photo-folder dataset needs --data.root"):
        read_images("photo-folder", None, "pretrain")


def test_gim_pretrains_and_probes_on_a_photo_folder(photos: Path, tmp_path: Path, monkeypatch) -> None:
    for index in range(40):  # 45 training photos: one batch of 32 augmented views
        _photo(photos / "train" / ("cat", "dog")[index % 2] / f"more-{index}.jpg", (40 + 5 * index, 64), BLUE)
    monkeypatch.chdir(tmp_path)
    common = ["--data.root", str(photos), "--data.crop", "28", "--data.resize", "32", "--data.workers", "2"]
    assert (
        main(
            [
                "pretrain",
                "--preset",
                "smoke",
                "--data.dataset",
                "photo-folder",
                *common,
                "--train.max_steps",
                "2",
                "--name",
                "photos",
            ]
        )
        == 0
    )
    assert main(["probe", "runs/photos", "--probe.epochs", "1", "--probe.augmented_views", "1"]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["embed", "runs/photos", "--module", "2", "--split", "test"]) == 0
    assert np.load("runs/photos/embeddings/module-2-test.npz")["labels"].tolist() == [0, 0, 0, 1, 1]
