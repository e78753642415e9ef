"""read_idx and read_fashion_mnist on IDX files built byte by byte, gzipped and plain."""

from __future__ import annotations

import gzip
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greedy_infomax.data import fashion_mnist
from greedy_infomax.data.fashion_mnist import (
    FASHION_MNIST_SPEC,
    download_fashion_mnist,
    read_fashion_mnist,
    read_idx,
)
from greedy_infomax.errors import GimError

IMAGES = (np.arange(3 * 28 * 28) % 251).astype(np.uint8).reshape(3, 28, 28)
LABELS = np.array([0, 9, 4], dtype=np.uint8)


def _idx(array: np.ndarray, dtype_code: int = 0x08) -> bytes:
    """The IDX encoding of `array`: magic 0, 0, dtype, rank; big-endian int32 sizes; values in C order."""
    header = struct.pack(">BBBB", 0, 0, dtype_code, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + array.tobytes()


def _write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
    return path


def _write_split(folder: Path, split: str, images: np.ndarray = IMAGES, labels: np.ndarray = LABELS) -> None:
    images_name, labels_name = fashion_mnist.FILES[split]
    _write(folder / images_name, _idx(images))
    _write(folder / labels_name, _idx(labels))


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_read_idx_plain_and_gzipped(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path / name, _idx(IMAGES))
    np.testing.assert_array_equal(read_idx(path), IMAGES)


def test_read_idx_header_is_big_endian(tmp_path: Path) -> None:
    content = bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))
    np.testing.assert_array_equal(read_idx(_write(tmp_path / "a", content)), [[0, 1, 2], [3, 4, 5]])


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\x00\x00", "not an IDX file"),
        (b"\x01\x00\x08\x01" + struct.pack(">i", 1) + b"x", "not an IDX file"),
        (_idx(LABELS, dtype_code=0x0D), "0x0D"),
        (b"\x00\x00\x08\x00", "header"),
        (b"\x00\x00\x08\x03" + struct.pack(">i", 3), "header"),
        (b"\x00\x00\x08\x01" + struct.pack(">i", -3), "negative"),
        (_idx(IMAGES)[:-1], "needs 2352 bytes"),
        (_idx(IMAGES) + b"\0", "needs 2352 bytes"),
    ],
    ids=["short", "magic", "dtype", "rank-0", "short-header", "negative-size", "truncated", "trailing"],
)
def test_read_idx_rejects_malformed_files(tmp_path: Path, content: bytes, problem: str) -> None:
    path = _write(tmp_path / "bad-idx", content)
    with pytest.raises(GimError, match=problem) as error:
        read_idx(path)
    assert "bad-idx" in str(error.value)


def test_read_idx_rejects_a_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "bad-idx.gz"
    path.write_bytes(gzip.compress(_idx(IMAGES))[:-20])
    with pytest.raises(GimError, match="bad-idx.gz"):
        read_idx(path)


@settings(max_examples=100, deadline=None)
@given(
    gzipped=st.booleans(),
    cut=st.none() | st.integers(0, 3000),
    patch=st.none() | st.tuples(st.integers(0, 3000), st.integers(0, 255)),
)
def test_truncated_or_corrupt_idx_gives_an_array_or_gim_error(
    gzipped: bool, cut: int | None, patch: tuple[int, int] | None
) -> None:
    content = bytearray(gzip.compress(_idx(IMAGES), mtime=0) if gzipped else _idx(IMAGES))
    if patch is not None and patch[0] < len(content):
        content[patch[0]] = patch[1]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("x.gz" if gzipped else "x")
        path.write_bytes(bytes(content[:cut]))
        try:
            array = read_idx(path)
        except GimError:
            return
        assert array.dtype == np.uint8 and array.ndim >= 1
        if cut is None and patch is None:
            np.testing.assert_array_equal(array, IMAGES)


def test_reads_a_split(tmp_path: Path) -> None:
    _write_split(tmp_path, "test")
    data = read_fashion_mnist(tmp_path, "test")
    assert data.images.shape == (3, 1, 28, 28)
    np.testing.assert_array_equal(data.images[:, 0], IMAGES)
    np.testing.assert_array_equal(data.labels, LABELS)
    assert data.labels.dtype == np.int64 and data.spec == FASHION_MNIST_SPEC


def test_reads_gunzipped_files_too(tmp_path: Path) -> None:
    _write(tmp_path / "train-images-idx3-ubyte", _idx(IMAGES))
    _write(tmp_path / "train-labels-idx1-ubyte", _idx(LABELS))
    assert len(read_fashion_mnist(tmp_path, "train")) == 3


@pytest.mark.parametrize(
    ("images", "labels", "bad_file"),
    [
        (IMAGES[:, :27], LABELS, "t10k-images"),
        (IMAGES, LABELS[:2], "t10k-labels"),
        (IMAGES, np.array([0, 10, 1], dtype=np.uint8), "t10k-labels"),
    ],
    ids=["image-size", "label-count", "label-range"],
)
def test_rejects_inconsistent_splits(tmp_path: Path, images: np.ndarray, labels: np.ndarray, bad_file: str) -> None:
    _write_split(tmp_path, "test", images, labels)
    with pytest.raises(GimError, match=bad_file):
        read_fashion_mnist(tmp_path, "test")


def test_missing_file_is_named(tmp_path: Path) -> None:
    _write(tmp_path / "t10k-images-idx3-ubyte.gz", _idx(IMAGES))
    with pytest.raises(GimError, match="t10k-labels-idx1-ubyte.gz not found"):
        read_fashion_mnist(tmp_path, "test")


def test_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(GimError, match="train, test"):
        read_fashion_mnist(tmp_path, "validation")


def test_search_prefers_gim_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_split(tmp_path / "fashion-mnist", "train")
    monkeypatch.setenv("GIM_DATA", str(tmp_path))
    assert fashion_mnist.search_folders() == [tmp_path / "fashion-mnist", fashion_mnist.SYSTEM_FOLDER]
    assert len(read_fashion_mnist(None, "train")) == 3


def test_search_failure_lists_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIM_DATA", str(tmp_path))
    monkeypatch.setattr(fashion_mnist, "SYSTEM_FOLDER", tmp_path / "system")
    with pytest.raises(GimError) as error:
        read_fashion_mnist(None, "train")
    message = str(error.value)
    for expected in (str(tmp_path / "fashion-mnist"), str(tmp_path / "system"), "dataset-fashion-mnist", "gim data"):
        assert expected in message


def test_search_without_gim_data_uses_the_system_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GIM_DATA", raising=False)
    monkeypatch.setattr(fashion_mnist, "SYSTEM_FOLDER", tmp_path)
    _write_split(tmp_path, "test")
    assert len(read_fashion_mnist(None, "test")) == 3


@pytest.mark.skipif(not fashion_mnist.SYSTEM_FOLDER.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_test_split() -> None:
    data = read_fashion_mnist(fashion_mnist.SYSTEM_FOLDER, "test")
    assert data.images.shape == (10000, 1, 28, 28)
    assert data.labels.min() == 0 and data.labels.max() == 9


def test_download_fetches_the_four_official_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Path, str]] = []

    def fake_download(url: str, destination: Path, md5: str) -> Path:
        calls.append((url, destination, md5))
        return destination

    monkeypatch.setattr(fashion_mnist, "download", fake_download)
    assert download_fashion_mnist(tmp_path) == tmp_path
    names = {name for pair in fashion_mnist.FILES.values() for name in pair}
    assert {destination.name for _, destination, _ in calls} == names
    for url, destination, md5 in calls:
        assert url == fashion_mnist.BASE_URL + destination.name and destination.parent == tmp_path and len(md5) == 32
