"""read_librispeech and its loaders on tiny FLAC files and hand-written CPC split and alignment files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import corrupt
from hypothesis import given, settings
from hypothesis import strategies as st

from greedy_infomax.data import librispeech
from greedy_infomax.data.librispeech import (
    LABELS_URL,
    AudioSpec,
    WindowLoader,
    download_librispeech,
    read_librispeech,
    spread_over_speakers,
)
from greedy_infomax.errors import GimError

WINDOW, HOP = 20_480, 160
LENGTHS = {"19-198-0000": 30_000, "19-198-0001": 25_000, "103-1240-0000": 20_480, "1034-121-0002": 32_000}
"""Speaker ids chosen so that numeric order (19, 103, 1034) differs from string order."""
SPLITS = {"train": ["103-1240-0000", "19-198-0000", "1034-121-0002"], "test": ["19-198-0001"]}


def _ramp(length: int) -> np.ndarray:
    """Sample i holds i / 32768, exactly representable in 16-bit FLAC: a clip's first sample tells its start."""
    return (np.arange(length) / 32768).astype(np.float32)


def _labels(length: int) -> list[int]:
    """Kaldi-style frame count (25 ms frames every 10 ms), cycling through all 41 classes."""
    return [i % 41 for i in range(1 + (length - 400) // HOP)]


def _flac_path(root: Path, utterance_id: str) -> Path:
    speaker, chapter, _ = utterance_id.split("-")
    return root / "LibriSpeech" / "train-clean-100" / speaker / chapter / f"{utterance_id}.flac"


def _write_audio(root: Path, utterance_id: str, samples: np.ndarray, rate: int = 16_000) -> None:
    path = _flac_path(root, utterance_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, rate, subtype="PCM_16")


def _write_labels(root: Path, splits: dict[str, list[str]], alignments: str) -> None:
    folder = root / "LibriSpeech100_labels_split"
    folder.mkdir(parents=True, exist_ok=True)
    for split, ids in splits.items():
        (folder / f"{split}_split.txt").write_text("".join(f"{i}\n" for i in ids))
    (folder / "converted_aligned_phones.txt").write_text(alignments)


def _alignment_text(lengths: dict[str, int]) -> str:
    return "".join(f"{i} {' '.join(map(str, _labels(n)))}\n" for i, n in lengths.items())


def _write_corpus(root: Path, lengths: dict[str, int] = LENGTHS, splits: dict[str, list[str]] = SPLITS) -> None:
    for utterance_id, length in lengths.items():
        _write_audio(root, utterance_id, _ramp(length))
    _write_labels(root, splits, _alignment_text(lengths))


@pytest.fixture
def corpus(tmp_path: Path) -> librispeech.LibriSpeechCorpus:
    _write_corpus(tmp_path)
    return read_librispeech(tmp_path)


def test_splits_speakers_in_numeric_order_and_lengths(corpus: librispeech.LibriSpeechCorpus) -> None:
    assert corpus.speakers == ("19", "103", "1034")
    assert corpus.spec == AudioSpec(num_speakers=3)
    assert corpus.spec.frames_per_window == 128
    assert [(u.id, u.speaker, u.num_samples) for u in corpus.splits["train"]] == [
        ("103-1240-0000", 1, 20_480),
        ("19-198-0000", 0, 30_000),
        ("1034-121-0002", 2, 32_000),
    ]
    assert [u.id for u in corpus.splits["test"]] == ["19-198-0001"]


def test_limit_takes_utterances_from_each_speaker_in_turn(tmp_path: Path) -> None:
    """With the first N of each split file, a small limit trained on speaker 103 alone and tested on speaker 19."""
    lengths = {**LENGTHS, "103-1240-0001": 20_480, "103-1240-0002": 20_480}
    splits = {
        "train": ["103-1240-0000", "103-1240-0001", "103-1240-0002", "19-198-0000", "1034-121-0002"],
        "test": ["19-198-0001"],
    }
    _write_corpus(tmp_path, lengths, splits)
    corpus = read_librispeech(tmp_path, limit=2)
    assert [u.id for u in corpus.splits["train"]] == ["19-198-0000", "103-1240-0000"]
    assert [u.id for u in corpus.splits["test"]] == ["19-198-0001"]
    assert [u.id for u in read_librispeech(tmp_path, limit=4).splits["train"]] == [
        "19-198-0000",
        "103-1240-0000",
        "1034-121-0002",
        "103-1240-0001",
    ]


def test_spread_over_speakers_keeps_each_speakers_order_and_no_limit_keeps_all() -> None:
    items = ["2-a1", "1-b1", "2-a2", "2-a3", "1-b2", "3-c1"]

    def speaker(item: str) -> int:
        return int(item.split("-")[0])

    assert spread_over_speakers(items, 4, speaker) == ["1-b1", "2-a1", "3-c1", "1-b2"]
    assert spread_over_speakers(items, 100, speaker) == ["1-b1", "2-a1", "3-c1", "1-b2", "2-a2", "2-a3"]
    assert spread_over_speakers(items, None, speaker) == items


def test_waveform_and_phones(corpus: librispeech.LibriSpeechCorpus) -> None:
    utterance = corpus.splits["train"][1]
    np.testing.assert_array_equal(corpus.waveform(utterance), _ramp(30_000))
    np.testing.assert_array_equal(corpus.waveform(utterance, 160, 5), _ramp(30_000)[160:165])
    phones = corpus.phones(utterance)
    assert phones.dtype == np.int64
    np.testing.assert_array_equal(phones, _labels(30_000))
    assert 1 <= 30_000 // HOP - len(phones) <= 2  # Kaldi frames: the labels end a little before the audio


def _starts(clips: torch.Tensor, spec: AudioSpec) -> np.ndarray:
    """Undo the standardisation of ramp clips and read each clip's start sample off its first value."""
    raw = clips[:, 0, 0].double() * spec.std + spec.mean
    return np.rint(raw.numpy() * 32768).astype(int)


def test_window_loader_yields_standardised_frame_aligned_windows(corpus: librispeech.LibriSpeechCorpus) -> None:
    loader = WindowLoader(corpus, "train", batch_size=2, device=torch.device("cpu"), seed=3)
    assert len(loader) == 1  # 3 utterances: the incomplete last batch is dropped
    for epoch in range(5):
        ((clips, speakers),) = loader.epoch(epoch)
        assert clips.shape == (2, 1, WINDOW) and clips.dtype == torch.float32
        starts = _starts(clips, corpus.spec)
        assert (starts % HOP == 0).all()
        lengths = {u.speaker: u.num_samples for u in corpus.splits["train"]}
        assert all(0 <= s <= lengths[int(k)] - WINDOW for s, k in zip(starts, speakers))
        ramp = (torch.arange(WINDOW, dtype=torch.float64) / 32768 - corpus.spec.mean) / corpus.spec.std
        torch.testing.assert_close(
            clips[:, 0].double() - clips[:, :1, 0].double(), (ramp - ramp[0]).expand(2, -1), atol=1e-3, rtol=0
        )


def test_window_loader_order_depends_only_on_seed_epoch_and_batch(tmp_path: Path) -> None:
    lengths = {f"{s}-1-{u:04d}": 40_000 + 997 * u for s in (1, 2, 3) for u in range(3)}
    _write_corpus(tmp_path, lengths, {"train": list(lengths), "test": list(lengths)[:1]})
    corpus = read_librispeech(tmp_path)
    loader = WindowLoader(corpus, "train", batch_size=2, device=torch.device("cpu"), seed=7)
    assert len(loader) == 4
    full = list(loader.epoch(2))
    resumed = list(WindowLoader(corpus, "train", 2, torch.device("cpu"), seed=7).epoch(2, start_batch=3))
    torch.testing.assert_close(resumed[0], full[3], rtol=0, atol=0)
    other_epoch = list(loader.epoch(3))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(full, other_epoch))
    evaluation = WindowLoader(corpus, "train", batch_size=4, device=torch.device("cpu"), seed=7, shuffle=False)
    assert len(evaluation) == 3
    speakers = torch.cat([labels for _, labels in evaluation.epoch()])
    assert speakers.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_unknown_split(corpus: librispeech.LibriSpeechCorpus) -> None:
    with pytest.raises(GimError, match="train, test"):
        WindowLoader(corpus, "validation", 2, torch.device("cpu"))


def test_missing_audio_folder_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(GimError) as error:
        read_librispeech(tmp_path)
    message = str(error.value)
    assert str(tmp_path / "LibriSpeech" / "train-clean-100") in message
    assert f"gim data librispeech --root {tmp_path}" in message and "train-clean-100.tar.gz" in message


@pytest.mark.parametrize("name", ["train_split.txt", "test_split.txt", "converted_aligned_phones.txt"])
def test_missing_label_file_says_where_to_get_it(tmp_path: Path, name: str) -> None:
    _write_corpus(tmp_path)
    (tmp_path / "LibriSpeech100_labels_split" / name).unlink()
    with pytest.raises(GimError) as error:
        read_librispeech(tmp_path)
    message = str(error.value)
    assert str(tmp_path / "LibriSpeech100_labels_split" / name) in message and LABELS_URL in message


def test_no_root_reads_from_gim_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_corpus(tmp_path)
    monkeypatch.setenv("GIM_DATA", str(tmp_path))
    assert read_librispeech(None).speakers == ("19", "103", "1034")
    monkeypatch.delenv("GIM_DATA")
    with pytest.raises(GimError, match="GIM_DATA"):
        read_librispeech(None)


def test_bad_utterance_id_in_split_file(tmp_path: Path) -> None:
    _write_corpus(tmp_path, splits={"train": ["19-198-0000", "19_198_0001"], "test": ["19-198-0001"]})
    with pytest.raises(GimError, match=r"train_split.txt, line 2: '19_198_0001' is not an utterance id"):
        read_librispeech(tmp_path)


def test_split_utterance_without_audio(tmp_path: Path) -> None:
    _write_corpus(tmp_path, splits={"train": ["19-198-0000"], "test": ["19-198-0007"]})
    with pytest.raises(GimError, match=r"test_split.txt: utterance 19-198-0007 has no audio file .*19-198-0007.flac"):
        read_librispeech(tmp_path)


def test_unreadable_flac(tmp_path: Path) -> None:
    _write_corpus(tmp_path)
    _flac_path(tmp_path, "19-198-0001").write_bytes(b"not a flac file" * 100)
    with pytest.raises(GimError, match=r"19-198-0001.flac: cannot read as FLAC"):
        read_librispeech(tmp_path)


def test_truncated_flac_data(tmp_path: Path) -> None:
    _write_corpus(tmp_path)
    path = _flac_path(tmp_path, "1034-121-0002")
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    corpus = read_librispeech(tmp_path)  # the header is intact
    with pytest.raises(GimError, match=r"1034-121-0002.flac: "):
        corpus.waveform(corpus.splits["train"][2])


@pytest.mark.parametrize(
    ("samples", "rate", "message"),
    [
        (_ramp(40_000), 8_000, r"1 channel\(s\) at 8000 Hz; expected mono at 16000 Hz"),
        (np.stack([_ramp(40_000)] * 2, axis=1), 16_000, r"2 channel\(s\) at 16000 Hz"),
        (_ramp(WINDOW - 1), 16_000, r"20479 samples is shorter than one 20480-sample window"),
    ],
)
def test_bad_audio(tmp_path: Path, samples: np.ndarray, rate: int, message: str) -> None:
    _write_corpus(tmp_path)
    _write_audio(tmp_path, "19-198-0001", samples, rate)
    with pytest.raises(GimError, match=r"19-198-0001.flac: " + message):
        read_librispeech(tmp_path)


def test_utterance_missing_from_alignments(tmp_path: Path) -> None:
    _write_corpus(tmp_path)
    _write_labels(tmp_path, SPLITS, _alignment_text({i: n for i, n in LENGTHS.items() if i != "19-198-0001"}))
    with pytest.raises(
        GimError,
        match=r"converted_aligned_phones.txt: no phone labels for 19-198-0001 "
        r"\(listed in test_split.txt\)",
    ):
        read_librispeech(tmp_path)


def test_duplicate_alignment_line(tmp_path: Path) -> None:
    _write_corpus(tmp_path)
    _write_labels(tmp_path, SPLITS, _alignment_text(LENGTHS) + "19-198-0000 1 2 3\n")
    with pytest.raises(GimError, match=r"converted_aligned_phones.txt, line 5: 19-198-0000 also has line 1"):
        read_librispeech(tmp_path)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("1 2 41 3", r"label 41 at frame 2 is outside 0..40"),
        ("1 -1", r"label -1 at frame 1 is outside 0..40"),
        ("1 2 x", r"labels must be integers"),
        ("1 99999999999999999999", r"labels must be integers"),
        ("", r"no labels"),
        (" ".join(["5"] * 189), r"189 frames of labels for 30000 samples \(at most 188 frames of 160\)"),
    ],
)
def test_bad_labels(tmp_path: Path, labels: str, message: str) -> None:
    _write_corpus(tmp_path)
    text = _alignment_text(LENGTHS).replace(
        f"19-198-0000 {' '.join(map(str, _labels(30_000)))}", f"19-198-0000 {labels}"
    )
    _write_labels(tmp_path, SPLITS, text)
    corpus = read_librispeech(tmp_path)
    with pytest.raises(GimError, match=r"converted_aligned_phones.txt, line 1 \(19-198-0000\): " + message):
        corpus.phones(corpus.splits["train"][1])


@pytest.fixture(scope="module")
def audio_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The FLAC files of the default corpus, written once: the hypothesis test rewrites only the label files."""
    root = tmp_path_factory.mktemp("corrupt")
    _write_corpus(root)
    return root


@settings(max_examples=60, deadline=None)
@given(
    cut=st.none() | st.integers(0, len(_alignment_text(LENGTHS))),
    patches=st.lists(
        st.tuples(
            st.integers(0, len(_alignment_text(LENGTHS)) - 1),
            st.sampled_from(["", " ", "\n", "-", "x", "0", "4", "99", "-1", "1.5"]),
        ),
        max_size=3,
    ),
)
def test_truncated_or_corrupt_alignments_give_valid_labels_or_gim_error(
    audio_root: Path, cut: int | None, patches: list[tuple[int, str]]
) -> None:
    original = _alignment_text(LENGTHS)
    text = original[:cut]
    for position, replacement in patches:
        text = text[:position] + replacement + text[position + 1 :]
    _write_labels(audio_root, SPLITS, text)
    try:
        corpus = read_librispeech(audio_root)
        phones = {u.id: corpus.phones(u) for split in corpus.splits.values() for u in split}
    except GimError:
        return
    for utterance_id, labels in phones.items():
        assert labels.dtype == np.int64 and labels.min() >= 0 and labels.max() <= 40
        assert 1 <= len(labels) <= -(-LENGTHS[utterance_id] // HOP)
    if text == original:
        assert all(labels.tolist() == _labels(LENGTHS[i]) for i, labels in phones.items())


def test_download_librispeech_fetches_audio_once_and_checks_label_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, Path, str]] = []

    def fake_download(url: str, destination: Path, md5: str) -> Path:
        calls.append((url, destination, md5))
        return destination

    def fake_extract(archive: Path, into: Path) -> None:
        for utterance_id, length in LENGTHS.items():
            _write_audio(into, utterance_id, _ramp(length))

    monkeypatch.setattr(librispeech, "download", fake_download)
    monkeypatch.setattr(librispeech, "extract_tar", fake_extract)
    with pytest.raises(GimError, match=LABELS_URL):
        download_librispeech(tmp_path)
    _write_labels(tmp_path, SPLITS, _alignment_text(LENGTHS))
    assert download_librispeech(tmp_path) == tmp_path
    assert calls == [(librispeech.URL, tmp_path / "train-clean-100.tar.gz", librispeech.MD5)]
    assert read_librispeech(tmp_path).speakers == ("19", "103", "1034")


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_corrupted_flac_is_read_or_named(data: st.DataObject) -> None:
    """A FLAC cut short or with a byte overwritten: opening and reading it works or raises GimError naming it."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        _write_corpus(root)
        path = _flac_path(root, "1034-121-0002")
        path.write_bytes(corrupt(path.read_bytes(), data))
        try:
            corpus = read_librispeech(root)
            utterance = next(u for u in corpus.splits["train"] if u.id == "1034-121-0002")
            samples = corpus.waveform(utterance)
        except GimError as error:
            assert "1034-121-0002" in str(error)
        else:
            assert np.isfinite(samples).all()


def test_window_loader_phone_labels_follow_the_window(corpus: librispeech.LibriSpeechCorpus) -> None:
    """Label i of a window at sample s is the utterance's label of frame s / hop + i, labels matched from the end;
    frames past the labels are -1."""
    loader = WindowLoader(corpus, "train", batch_size=3, device=torch.device("cpu"), seed=1, phones=True)
    for epoch in range(4):
        ((clips, (speakers, phones)),) = loader.epoch(epoch)
        assert phones.shape == (3, WINDOW // HOP) and phones.dtype == torch.int64
        for start, speaker, row in zip(_starts(clips, corpus.spec), speakers, phones):
            utterance = next(u for u in corpus.splits["train"] if u.speaker == int(speaker))
            labels = corpus.phones(utterance)
            first = start // HOP - (utterance.num_samples // HOP - len(labels))
            expected = [labels[i] if 0 <= i < len(labels) else -1 for i in range(first, first + WINDOW // HOP)]
            assert row.tolist() == expected
    ((_, (_, phones)),) = WindowLoader(corpus, "train", 3, torch.device("cpu"), seed=1, phones=True).epoch(0)
    assert (phones == -1).any(), "a window that reaches the end of its utterance has frames without labels"
