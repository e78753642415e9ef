"""read_speech_folder on tiny FLAC and WAV files, one folder per speaker, with and without CPC-format alignments;
the speech loaders and `gim pretrain` read it unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from greedy_infomax.cli import main
from greedy_infomax.data.librispeech import AudioSpec, WindowLoader
from greedy_infomax.data.speech_folder import read_speech_folder
from greedy_infomax.errors import GimError

WINDOW, HOP = AudioSpec.window, AudioSpec.hop


def _write(path: Path, length: int = WINDOW, rate: int = 16_000, value: float = 0.25) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.full(length, value, dtype=np.float32), rate, subtype="PCM_16")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """bob: 6 recordings (FLAC and WAV, of growing length), amy: 5; plus files that are not recordings."""
    tmp_path = tmp_path / "speech"
    for index in range(6):
        _write(tmp_path / "bob" / f"bob-{index}.{'wav' if index % 2 else 'flac'}", WINDOW + 100 * index)
    for index in range(5):
        _write(tmp_path / "amy" / f"amy-{index}.flac")
    (tmp_path / "bob" / "notes.txt").write_text("not audio")
    (tmp_path / "amy" / ".amy-9.flac").write_bytes(b"hidden")
    return tmp_path


def _alignments(folder: Path, skip: str | None = None) -> None:
    """One line per recording: its name, then a label per 10 ms frame (fewer frames than the audio holds)."""
    lines = [
        f"{path.stem} {' '.join(str(i % 41) for i in range(soundfile.info(path).frames // HOP - 1))}\n"
        for path in sorted(folder.glob("*/[!.]*"))
        if path.suffix in (".flac", ".wav") and path.stem != skip
    ]
    (folder / "converted_aligned_phones.txt").write_text("".join(lines))


def test_speakers_splits_and_lengths(folder: Path) -> None:
    corpus = read_speech_folder(folder)
    assert corpus.speakers == ("amy", "bob") and corpus.spec == AudioSpec(num_speakers=2)
    assert [u.id for u in corpus.splits["test"]] == ["amy-4", "bob-4"], "every fifth recording of a speaker"
    assert [(u.id, u.speaker, u.num_samples) for u in corpus.splits["train"] if u.speaker == 1] == [
        ("bob-0", 1, WINDOW),
        ("bob-1", 1, WINDOW + 100),
        ("bob-2", 1, WINDOW + 200),
        ("bob-3", 1, WINDOW + 300),
        ("bob-5", 1, WINDOW + 500),
    ]
    assert corpus.waveform(corpus.splits["train"][5], 0, 4).tolist() == [0.25] * 4, "WAV reads like FLAC"
    assert [len(split) for split in read_speech_folder(folder, limit=3).splits.values()] == [3, 2]


def test_phone_labels_come_from_the_optional_alignment_file(folder: Path) -> None:
    with pytest.raises(GimError, match="no phone labels, the corpus has no converted_aligned_phones.txt"):
        read_speech_folder(folder).phones(read_speech_folder(folder).splits["train"][0])
    _alignments(folder)
    corpus = read_speech_folder(folder)
    bob_5 = corpus.splits["train"][-1]
    assert corpus.phones(bob_5).tolist() == [i % 41 for i in range((WINDOW + 500) // HOP - 1)]


def test_a_recording_missing_from_the_alignments_is_named(folder: Path) -> None:
    _alignments(folder, skip="bob-4")
    with pytest.raises(GimError, match=r"no phone labels for bob-4 \(listed in .*'s test split\)"):
        read_speech_folder(folder)


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda root: (_write(root / "amy" / "bob-0.flac"), _alignments(root)),
            "also .*bob-0.flac; utterance names must be unique",
        ),
        (lambda root: _write(root / "amy" / "amy-7.wav", rate=8_000), r"amy-7.wav: 1 channel\(s\) at 8000 Hz"),
        (
            lambda root: _write(root / "eve" / "eve-0.wav", length=WINDOW - 1),
            "eve: every recording is shorter than one 20480-sample window",
        ),
        (lambda root: (root / "eve").mkdir(), "eve: no .flac or .wav recordings"),
    ],
)
def test_bad_folders_fail_with_the_file_and_the_reason(folder: Path, damage, message) -> None:
    damage(folder)
    with pytest.raises(GimError, match=message):
        read_speech_folder(folder)


def test_without_alignments_names_may_repeat_and_short_recordings_are_left_out_with_a_warning(folder: Path) -> None:
    _write(folder / "amy" / "bob-0.flac")  # the name of one of bob's recordings
    _write(folder / "amy" / "amy-00.wav", length=WINDOW - 1)  # sorts first among amy's: left out, not counted
    with pytest.warns(UserWarning, match=r"1 recording\(s\) shorter than one 20480-sample window .* left out"):
        corpus = read_speech_folder(folder)
    amy = {split: [u.id for u in corpus.splits[split] if u.speaker == 0] for split in ("train", "test")}
    assert amy == {"train": ["amy-0", "amy-1", "amy-2", "amy-3", "bob-0"], "test": ["amy-4"]}


def test_a_folder_without_test_recordings_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "amy" / "amy-0.flac")
    with pytest.raises(GimError, match="test split .* is empty"):
        read_speech_folder(tmp_path)


def test_the_window_loader_and_gim_pretrain_read_it(folder: Path, tmp_path: Path) -> None:
    corpus = read_speech_folder(folder)
    clips, speakers = next(WindowLoader(corpus, "train", 4, torch.device("cpu")).epoch())
    assert clips.shape == (4, 1, WINDOW) and set(speakers.tolist()) <= {0, 1}
    assert (
        main(
            [
                "pretrain",
                "--preset",
                "speech-smoke",
                "--data.dataset",
                "speech-folder",
                "--data.root",
                str(folder),
                "--train.max_steps",
                "1",
                "--output",
                str(tmp_path / "runs"),
                "--name",
                "mine",
            ]
        )
        == 0
    )
    assert (tmp_path / "runs" / "mine" / "checkpoints" / "step-00000001").is_dir()


@pytest.mark.parametrize("aligned", [False, True], ids=["speaker-only", "with-alignments"])
def test_gim_probe_and_embed_need_alignments_only_for_phones(folder: Path, tmp_path: Path, aligned: bool) -> None:
    if aligned:
        _alignments(folder)
    run = tmp_path / "runs" / "mine"
    assert (
        main(
            [
                "pretrain",
                "--preset",
                "speech-smoke",
                "--data.dataset",
                "speech-folder",
                "--data.root",
                str(folder),
                "--train.max_steps",
                "1",
                "--output",
                str(run.parent),
                "--name",
                run.name,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "probe",
                str(run),
                "--probe.speaker_epochs",
                "1",
                "--probe.phone_epochs",
                "1",
                "--probe.random_init",
                "false",
                "--probe.log_mel",
                "false",
            ]
        )
        == 0
    )
    results = json.loads((run / "probe.json").read_text())
    probes = ["speaker", "phone"] if aligned else ["speaker"]
    assert results["probes"] == probes
    assert all(sorted(row) == sorted(["module", "features", *probes]) for row in results["trained"])
    assert main(["embed", str(run), "--module", "6", "--split", "test", "--output", str(tmp_path / "test.npz")]) == 0
    arrays = np.load(tmp_path / "test.npz")
    assert sorted(arrays) == sorted(
        ["speaker_features", "speakers"] + (["phone_features", "phones"] if aligned else [])
    )
    assert len(arrays["speaker_features"]) == len(arrays["speakers"]) == 2, "one segment per test recording"
