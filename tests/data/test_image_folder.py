"""read_image_folder on a few PNG and JPEG files laid out one subfolder per class."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import corrupt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from greedy_infomax.data.image_folder import class_names, read_image_folder
from greedy_infomax.errors import GimError


def _save(path: Path, pixels: np.ndarray) -> None:
    """Save (H, W, 3) uint8 pixels losslessly as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _solid(color: tuple[int, int, int], height: int = 4, width: int = 6) -> np.ndarray:
    return np.broadcast_to(np.array(color, dtype=np.uint8), (height, width, 3)).copy()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """cat: one red and one green image; dog: one blue image; plus hidden files that must be ignored."""
    _save(tmp_path / "cat" / "a.png", _solid((255, 0, 0)))
    _save(tmp_path / "cat" / "b.png", _solid((0, 255, 0)))
    _save(tmp_path / "dog" / "c.png", _solid((0, 0, 255)))
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / ".cache").mkdir()
    return tmp_path


def test_classes_are_sorted_subfolders_without_hidden_ones(folder: Path) -> None:
    assert class_names(folder) == ["cat", "dog"]


def test_reads_rgb_images_labels_and_spec(folder: Path) -> None:
    data = read_image_folder(folder)
    assert data.images.shape == (3, 3, 4, 6)
    np.testing.assert_array_equal(data.images[:, :, 0, 0], [[255, 0, 0], [0, 255, 0], [0, 0, 255]])
    np.testing.assert_array_equal(data.labels, [0, 0, 1])
    spec = data.spec
    assert (spec.channels, spec.height, spec.width, spec.num_classes) == (3, 4, 6, 2)
    np.testing.assert_allclose(spec.mean, [1 / 3] * 3)
    np.testing.assert_allclose(spec.std, [np.sqrt(2) / 3] * 3)
    luma = np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(spec.grayscale_mean, luma.mean())
    np.testing.assert_allclose(spec.grayscale_std, luma.std())


def test_grayscale_reads_one_luma_channel(folder: Path) -> None:
    data = read_image_folder(folder, grayscale=True)
    assert data.images.shape == (3, 1, 4, 6)
    np.testing.assert_array_equal(data.images[:, 0, 0, 0], [76, 150, 29])  # Pillow's rounded 601 luma
    assert data.spec.channels == 1 and data.spec.mean == (data.spec.grayscale_mean,)


def test_palette_and_grayscale_files_are_converted_to_rgb(folder: Path) -> None:
    Image.fromarray(_solid((255, 0, 0))).convert("P").save(folder / "dog" / "d.png")
    Image.new("L", (6, 4), 128).save(folder / "dog" / "e.png")
    data = read_image_folder(folder)
    np.testing.assert_array_equal(data.images[3:, :, 0, 0], [[255, 0, 0], [128, 128, 128]])


def test_differing_size_names_the_file_and_both_sizes(folder: Path) -> None:
    _save(folder / "dog" / "d.png", _solid((1, 2, 3), height=5, width=7))
    with pytest.raises(GimError, match=r"d\.png: size 7x5 differs from 6x4"):
        read_image_folder(folder)


def test_files_that_are_not_images_by_name_are_passed_over_and_a_broken_image_is_named(folder: Path) -> None:
    (folder / "dog" / "notes.txt").write_text("not an image")
    (folder / "dog" / "notes.pdf").write_text("Pillow writes PDF but cannot read it")
    (folder / "dog" / "Thumbs.db").write_bytes(b"\0" * 64)
    assert len(read_image_folder(folder).images) == 3
    (folder / "emu").mkdir()
    (folder / "emu" / "photo").write_bytes(b"\0" * 64)
    with pytest.raises(GimError, match=r"emu: class folder has no images \(only files with no suffix, which"):
        read_image_folder(folder)
    (folder / "emu" / "photo").unlink()
    (folder / "emu").rmdir()
    (folder / "dog" / "broken.jpg").write_text("not an image")
    with pytest.raises(GimError, match=r"broken\.jpg"):
        read_image_folder(folder)


def test_16_bit_grayscale_is_scaled_to_8_bits_not_clipped(folder: Path) -> None:
    """PIL converts I;16 to L by clipping: everything above 255 of 65535 became white."""
    wide = np.arange(4 * 6, dtype=np.uint16).reshape(4, 6) * 2800  # 0 .. 64400
    Image.fromarray(wide).save(folder / "dog" / "wide.png")
    assert Image.open(folder / "dog" / "wide.png").mode.startswith("I")
    images = read_image_folder(folder, grayscale=True).images
    np.testing.assert_array_equal(images[-1, 0], np.round(wide / 257).astype(np.uint8))


def test_32_bit_grayscale_holding_8_bit_values_is_kept_and_wider_values_refused(folder: Path) -> None:
    values = np.arange(4 * 6, dtype=np.int32).reshape(4, 6) * 10  # 0 .. 230
    Image.fromarray(values, "I").save(folder / "dog" / "wide.tif")
    np.testing.assert_array_equal(read_image_folder(folder, grayscale=True).images[-1, 0], values)
    Image.fromarray(values * 1000, "I").save(folder / "dog" / "wide.tif")
    with pytest.raises(GimError, match=r"wide\.tif: I pixels \(0\.\.230000\) are not 8 or 16-bit"):
        read_image_folder(folder)


def test_an_image_folder_checks_its_test_split_when_pretraining_reads_train(tmp_path: Path) -> None:
    from greedy_infomax.tasks.vision import DataConfig, load_split

    for split, classes in (("train", ("cat", "dog")), ("test", ("cat",))):
        for name in classes:
            _save(tmp_path / split / name / "a.png", _solid((1, 2, 3)))
    config = DataConfig(dataset="image-folder", root=str(tmp_path), crop=4, batch_size=2)
    with pytest.raises(GimError, match=r"test: class folders \['cat'\] differ"):
        load_split(config, "pretrain")
    (tmp_path / "test" / "dog").mkdir()
    with pytest.raises(GimError, match="dog: class folder has no images"):
        load_split(config, "pretrain")
    _save(tmp_path / "test" / "dog" / "a.png", _solid((1, 2, 3)))
    assert len(load_split(config, "pretrain").images) == 2


def test_truncated_png_is_named(folder: Path) -> None:
    path = folder / "dog" / "c.png"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(GimError, match=r"c\.png"):
        read_image_folder(folder)


def test_empty_class_folder_is_an_error(folder: Path) -> None:
    (folder / "emu").mkdir()
    with pytest.raises(GimError, match="emu"):
        read_image_folder(folder)


@pytest.mark.parametrize("make", [lambda root: None, lambda root: root.mkdir()], ids=["missing", "empty"])
def test_missing_or_empty_root_is_an_error(tmp_path: Path, make: Callable[[Path], object]) -> None:
    root = tmp_path / "images"
    make(root)
    with pytest.raises(GimError, match="images"):
        read_image_folder(root)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_png_is_read_or_named(tmp_path: Path, data: st.DataObject) -> None:
    """A PNG cut short or with a byte overwritten either still decodes or raises GimError, never anything else."""
    root = tmp_path / "fuzz"
    _save(root / "cat" / "a.png", _solid((10, 200, 30)))
    _save(root / "cat" / "b.png", _solid((90, 20, 130)))
    path = root / "cat" / "b.png"
    path.write_bytes(corrupt(path.read_bytes(), data))
    try:
        array = read_image_folder(root)
    except GimError as error:
        assert "b.png" in str(error)
    else:
        assert array.images.shape == (2, 3, 4, 6)


def test_a_split_with_other_classes_is_an_error(folder: Path) -> None:
    """Labels index the sorted class folders, so a test split missing a class would shift every later label."""
    with pytest.raises(GimError, match=r"class folders \['cat', 'dog'\] differ from \['cat', 'dog', 'emu'\]"):
        read_image_folder(folder, classes=["cat", "dog", "emu"])
    assert read_image_folder(folder, classes=["cat", "dog"]).labels.tolist() == [0, 0, 1]


def _split_folder(root: Path, sizes: dict[str, tuple[int, int]], classes: tuple[str, ...] = ("cat", "dog")) -> None:
    for split, (height, width) in sizes.items():
        for name in classes:
            _save(root / split / name / "a.png", _solid((1, 2, 3), height, width))


def _image_folder_config(root: Path):
    from greedy_infomax.tasks.vision import DataConfig

    return DataConfig(dataset="image-folder", root=str(root), crop=4, batch_size=2)


def test_an_image_folder_with_one_class_is_refused(tmp_path: Path) -> None:
    """With one class every probe scores 100%, which says nothing."""
    from greedy_infomax.tasks.vision import load_split

    _split_folder(tmp_path, {"train": (4, 6), "test": (4, 6)}, classes=("cat",))
    with pytest.raises(GimError, match=r"train: one class folder \(cat\); the probes classify images"):
        load_split(_image_folder_config(tmp_path), "pretrain")


def test_test_images_of_another_size_than_the_training_ones_are_refused_before_pretraining(tmp_path: Path) -> None:
    from greedy_infomax.tasks.vision import load_split

    _split_folder(tmp_path, {"train": (4, 6), "test": (8, 8)})
    with pytest.raises(GimError, match=r"test/cat/a\.png: size 8x8 differs from 6x4 of the training images"):
        load_split(_image_folder_config(tmp_path), "pretrain")


def test_subfolders_and_broken_links_in_a_class_folder_are_named_not_skipped_silently(folder: Path) -> None:
    _save(folder / "cat" / "more" / "d.png", _solid((9, 9, 9)))
    (folder / "dog" / "gone.png").symlink_to(folder / "nowhere.png")
    with pytest.warns(UserWarning) as warned:
        images = read_image_folder(folder)
    assert len(images.images) == 3
    messages = sorted(str(warning.message) for warning in warned)
    assert messages[0].startswith(
        f"{folder}: 1 broken symbolic links in class folders not read (the first: {folder / 'dog' / 'gone.png'})"
    )
    assert messages[1].startswith(
        f"{folder}: 1 subfolders in class folders not read (the first: {folder / 'cat' / 'more'})"
    )
