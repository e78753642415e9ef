"""read_stl10 on tiny files in the exact binary release format, including its column-major pixel order."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greedy_infomax.data import stl10
from greedy_infomax.data.stl10 import STL10_SPEC, download_stl10, read_stl10
from greedy_infomax.errors import GimError

IMAGE_BYTES = 3 * 96 * 96


def _reference(num_images: int) -> np.ndarray:
    """(N, 3, 96, 96) images whose value at (n, c, y, x) differs when y and x are swapped."""
    n, c, y, x = np.meshgrid(*(np.arange(size) for size in (num_images, 3, 96, 96)), indexing="ij")
    return ((n * 7 + c * 50 + y * 2 + x) % 256).astype(np.uint8)


def _write(root: Path, split: str, images: np.ndarray, labels: bytes | None = None) -> None:
    """Write `images` (N, 3, 96, 96) as the release does: channel-major, column-major within a channel."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}_X.bin").write_bytes(images.transpose(0, 1, 3, 2).tobytes())
    if labels is not None:
        (folder / f"{split}_y.bin").write_bytes(labels)


def _write_labelled(root: Path) -> None:
    _write(root, "train", _reference(2), bytes([1, 2]))
    _write(root, "test", _reference(1), bytes([3]))


def test_reads_images_in_row_major_order_with_zero_based_labels(tmp_path: Path) -> None:
    reference = _reference(3)
    _write(tmp_path, "train", reference, bytes([1, 10, 3]))
    data = read_stl10(tmp_path, "train")
    assert data.images.shape == (3, 3, 96, 96)
    np.testing.assert_array_equal(data.images, reference)
    np.testing.assert_array_equal(data.labels, [0, 9, 2])
    assert data.labels.dtype == np.int64
    assert data.spec == STL10_SPEC


def test_file_order_is_column_major_within_each_channel(tmp_path: Path) -> None:
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    raw = np.random.default_rng(0).integers(0, 256, IMAGE_BYTES, dtype=np.uint8)
    (folder / "unlabeled_X.bin").write_bytes(raw.tobytes())
    _write_labelled(tmp_path)
    images = read_stl10(tmp_path, "unlabeled").images
    assert images[0, 0, 5, 0] == raw[5]  # byte 5 is row 5 of the first column
    assert images[0, 0, 0, 1] == raw[96]  # byte 96 starts the second column
    assert images[0, 1, 0, 0] == raw[96 * 96]  # the second channel follows the whole first one


def test_unlabeled_is_memory_mapped_and_has_no_labels(tmp_path: Path) -> None:
    _write(tmp_path, "unlabeled", _reference(2))
    _write_labelled(tmp_path)
    data = read_stl10(tmp_path, "unlabeled")
    assert data.labels is None
    assert isinstance(data.images, np.memmap)


@pytest.mark.parametrize(
    ("damage", "message"), [("test_y.bin", r"test_y\.bin not found"), ("train_X.bin", r"train_X\.bin not found")]
)
def test_pretraining_checks_the_labelled_splits_its_probe_will_need(tmp_path: Path, damage: str, message: str) -> None:
    """Hours of pre-training on the unlabelled split must not end in a probe that finds no labelled data."""
    _write(tmp_path, "unlabeled", _reference(2))
    _write_labelled(tmp_path)
    (tmp_path / "stl10_binary" / damage).unlink()
    with pytest.raises(GimError, match=message):
        read_stl10(tmp_path, "unlabeled")


def test_pretraining_checks_the_labels_of_the_labelled_splits(tmp_path: Path) -> None:
    _write(tmp_path, "unlabeled", _reference(2))
    _write_labelled(tmp_path)
    (tmp_path / "stl10_binary" / "train_y.bin").write_bytes(bytes([1]))
    with pytest.raises(GimError, match=r"train_y\.bin: 1 labels for 2 images"):
        read_stl10(tmp_path, "unlabeled")


def test_missing_release_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(GimError) as error:
        read_stl10(tmp_path, "test")
    message = str(error.value)
    assert "stl10_binary" in message and "test_X.bin" in message and f"gim data stl10 --root {tmp_path}" in message


def test_no_root_reads_from_gim_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "test", _reference(1), bytes([2]))
    monkeypatch.setenv("GIM_DATA", str(tmp_path))
    assert read_stl10(None, "test").labels.tolist() == [1]
    monkeypatch.delenv("GIM_DATA")
    with pytest.raises(GimError, match="GIM_DATA"):
        read_stl10(None, "test")


def test_missing_labels_file(tmp_path: Path) -> None:
    _write(tmp_path, "test", _reference(1))
    with pytest.raises(GimError, match="test_y.bin"):
        read_stl10(tmp_path, "test")


@pytest.mark.parametrize("size", [0, IMAGE_BYTES - 1, 2 * IMAGE_BYTES + 5])
def test_partial_image_file(tmp_path: Path, size: int) -> None:
    _write(tmp_path, "train", _reference(3), bytes([1, 2, 3]))
    path = tmp_path / "stl10_binary" / "train_X.bin"
    path.write_bytes(path.read_bytes()[:size])
    with pytest.raises(GimError, match=f"train_X.bin: {size} bytes"):
        read_stl10(tmp_path, "train")


@pytest.mark.parametrize("labels", [bytes([1, 2]), bytes([1, 2, 3, 4]), bytes([1, 0, 3]), bytes([1, 11, 3])])
def test_bad_labels(tmp_path: Path, labels: bytes) -> None:
    _write(tmp_path, "train", _reference(3), labels)
    with pytest.raises(GimError, match="train_y.bin"):
        read_stl10(tmp_path, "train")


def test_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(GimError, match="unlabeled, train, test"):
        read_stl10(tmp_path, "validation")


@settings(max_examples=80, deadline=None)
@given(
    image_bytes=st.sampled_from(range(0, 5 * IMAGE_BYTES, IMAGE_BYTES)) | st.integers(0, 4 * IMAGE_BYTES + 100),
    label_count=st.none() | st.integers(0, 5),
    label_patch=st.none() | st.tuples(st.integers(0, 3), st.integers(0, 255)),
)
def test_truncated_or_corrupt_files_give_valid_data_or_gim_error(
    image_bytes: int, label_count: int | None, label_patch: tuple[int, int] | None
) -> None:
    whole_images = image_bytes // IMAGE_BYTES
    labels = bytearray([1, 5, 10, 2, 7][: whole_images if label_count is None else label_count])
    if label_patch is not None and label_patch[0] < len(labels):
        labels[label_patch[0]] = label_patch[1]
    reference = _reference(4)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        _write(root, "train", reference, bytes(labels))
        path = root / "stl10_binary" / "train_X.bin"
        path.write_bytes(path.read_bytes()[:image_bytes])
        try:
            data = read_stl10(root, "train")
        except GimError:
            return
        np.testing.assert_array_equal(data.images, reference[:whole_images])
        np.testing.assert_array_equal(data.labels, np.array(labels, dtype=np.int64) - 1)
        assert data.labels.min() >= 0 and data.labels.max() <= 9


def test_download_stl10_fetches_and_extracts_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Path, str]] = []

    def fake_download(url: str, destination: Path, md5: str) -> Path:
        calls.append((url, destination, md5))
        return destination

    def fake_extract(archive: Path, into: Path) -> None:
        _write(into, "test", _reference(1), bytes([4]))

    monkeypatch.setattr(stl10, "download", fake_download)
    monkeypatch.setattr(stl10, "extract_tar", fake_extract)
    assert download_stl10(tmp_path) == tmp_path / "stl10_binary"
    assert download_stl10(tmp_path) == tmp_path / "stl10_binary"
    assert calls == [(stl10.URL, tmp_path / "stl10_binary.tar.gz", stl10.MD5)]
    assert read_stl10(tmp_path, "test").labels.tolist() == [3]


def test_spec_holds_the_release_statistics_and_pretraining_reads_the_unlabeled_split() -> None:
    """The spec's numbers (shared/spec/paper-gim.md); self-supervised training on the 100k unlabelled images."""
    from greedy_infomax.data import DATASETS

    assert (STL10_SPEC.mean, STL10_SPEC.std) == ((0.4313, 0.4156, 0.3663), (0.2683, 0.2610, 0.2687))
    assert (STL10_SPEC.grayscale_mean, STL10_SPEC.grayscale_std) == (0.4120, 0.2570)
    entry = DATASETS["stl10"]
    assert (entry.read, entry.pretrain) == (read_stl10, "unlabeled")
    assert (entry.probe_train, entry.probe_test) == ("train", "test")
