"""The generated speech corpus: frame labelling on hand-made segments, and a tiny festival corpus read back by the
LibriSpeech reader."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from greedy_infomax.data import speech_corpus
from greedy_infomax.data.librispeech import LibriSpeechCorpus, read_librispeech
from greedy_infomax.data.speech_corpus import (
    FESTIVAL_PHONES,
    PHONES,
    SPEECH_RMS,
    Voice,
    frame_phones,
    generate_speech_corpus,
    read_sentences,
    sample_voices,
)
from greedy_infomax.errors import GimError

HAVE_FESTIVAL = shutil.which("festival") is not None and all(
    (speech_corpus.FORTUNES / name).is_file() for name in speech_corpus.FORTUNE_FILES
)
needs_festival = pytest.mark.skipif(
    not HAVE_FESTIVAL,
    reason=f"festival or fortunes-min is not installed (Debian: apt-get install "
    f"{speech_corpus.APT_PACKAGES}, or run ./setup.sh as root)",
)
HOP = 160


def test_phone_table_has_silence_and_40_arpabet_classes() -> None:
    assert len(PHONES) == 41 and PHONES[0] == "sil" and len(set(PHONES)) == 41
    assert set(FESTIVAL_PHONES.values()) == set(range(41))
    assert FESTIVAL_PHONES["pau"] == 0 and FESTIVAL_PHONES["axr"] == PHONES.index("er")


def test_frame_phones_labels_each_kaldi_frame_by_the_segment_under_its_centre() -> None:
    # Segments end at samples 300, 700, 1000; the audio runs on to 1600 samples (a silent tail).
    labels = frame_phones(np.array([300.0, 700.0, 1000.0]), np.array([0, 5, 9]), num_samples=1600, hop=HOP)
    # 1 + (1600 - 400) // 160 = 8 frames with centres 200, 360, 520, 680, 840, 1000, 1160, 1320.
    assert labels.tolist() == [0, 5, 5, 5, 9, 0, 0, 0]
    assert labels.dtype == np.int64


def test_sample_voices_cycle_festival_voices_with_distinct_settings() -> None:
    voices = sample_voices(6, seed=0)
    assert [v.festival_voice for v in voices] == list(speech_corpus.VOICES) * 2
    assert len({v.resample_factor for v in voices}) == 6
    assert sample_voices(6, seed=0) == voices and sample_voices(6, seed=1) != voices
    for name, (low, high) in speech_corpus.VOICE_RANGES.items():
        assert all(low <= getattr(v, name) <= high for v in voices)


@needs_festival
def test_sentences_are_safe_for_festival() -> None:
    sentences = read_sentences()
    assert len(sentences) > 500 and len(set(sentences)) == len(sentences)
    for sentence in sentences:
        assert 6 <= len(sentence.split()) <= 24
        assert not set(sentence) & set('"\\0123456789()')


def test_refuses_an_existing_corpus_and_too_few_utterances(tmp_path: Path) -> None:
    with pytest.raises(GimError, match="2 utterances per speaker"):
        generate_speech_corpus(tmp_path, num_speakers=3, utterances_per_speaker=1)
    (tmp_path / "LibriSpeech").mkdir()
    with pytest.raises(GimError, match=f"{tmp_path / 'LibriSpeech'} already exists"):
        generate_speech_corpus(tmp_path, num_speakers=3, utterances_per_speaker=2)


def test_missing_festival_says_which_packages_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speech_corpus.shutil, "which", lambda name: None)
    with pytest.raises(GimError, match=speech_corpus.APT_PACKAGES):
        generate_speech_corpus(tmp_path, num_speakers=3, utterances_per_speaker=2)


@needs_festival
def test_festival_failure_names_its_script(tmp_path: Path) -> None:
    voice = Voice("no_such_voice", 1.0, 1.0, 100.0, 10.0)
    with pytest.raises(GimError, match=r"festival failed on .*synthesise.scm \(.*no_such_voice"):
        speech_corpus._synthesise(voice, ["A short sentence for a voice that does not exist."], tmp_path)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LibriSpeechCorpus]:
    if not HAVE_FESTIVAL:
        pytest.skip("festival or fortunes-min is not installed")
    root = tmp_path_factory.mktemp("speech")
    generate_speech_corpus(root, num_speakers=3, utterances_per_speaker=2, seed=5, workers=1)
    return root, read_librispeech(root)


@needs_festival
def test_generated_corpus_reads_back_with_one_utterance_per_speaker_and_split(
    generated: tuple[Path, LibriSpeechCorpus],
) -> None:
    root, corpus = generated
    assert corpus.speakers == ("1", "2", "3") and corpus.spec.num_speakers == 3
    for split in ("train", "test"):
        assert sorted(u.speaker for u in corpus.splits[split]) == [0, 1, 2]
    assert not list(root.glob(".speech-corpus-*"))  # the staging folder is gone


@needs_festival
def test_generated_labels_cover_the_audio_and_mark_its_silences(generated: tuple[Path, LibriSpeechCorpus]) -> None:
    _, corpus = generated
    for utterance in corpus.splits["train"] + corpus.splits["test"]:
        samples, labels = corpus.waveform(utterance), corpus.phones(utterance)
        assert 1 <= len(samples) // HOP - len(labels) <= 3
        frames = np.lib.stride_tricks.sliding_window_view(samples, 400)[::HOP][: len(labels)]  # (F, 400)
        rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
        assert labels[0] == 0 and labels[-1] == 0 and len(set(labels.tolist())) > 8
        assert np.median(rms[labels != 0]) > 10 * np.median(rms[labels == 0])
        centres = frames[labels != 0, 200 - HOP // 2 : 200 + HOP // 2]  # the hop samples nearest each frame centre
        assert np.sqrt(np.mean(centres.astype(np.float64) ** 2)) == pytest.approx(SPEECH_RMS, rel=0.1)


def _pitch(samples: np.ndarray, labels: np.ndarray, rate: int = 16_000) -> np.ndarray:
    """Pitch (Hz) of each voiced speech frame, from the autocorrelation peak between 60 and 400 Hz."""
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(samples, (0, 640)), 640)[::HOP][: len(labels)]
    frames = frames[labels != 0] - frames[labels != 0].mean(axis=1, keepdims=True)  # (speech frames, 640)
    autocorrelation = np.fft.irfft(np.abs(np.fft.rfft(frames, 2048)) ** 2)[:, :640]
    low, high = rate // 400, rate // 60
    lag = low + np.argmax(autocorrelation[:, low:high], axis=1)
    voiced = autocorrelation[np.arange(len(lag)), lag] > 0.5 * autocorrelation[:, 0]
    return rate / lag[voiced]


@needs_festival
def test_speakers_differ_in_pitch_as_their_settings_say(generated: tuple[Path, LibriSpeechCorpus]) -> None:
    _, corpus = generated
    measured = []
    for speaker, voice in enumerate(sample_voices(3, seed=5)):
        utterances = [u for split in corpus.splits.values() for u in split if u.speaker == speaker]
        pitch = np.concatenate([_pitch(corpus.waveform(u), corpus.phones(u)) for u in utterances])
        base = voice.f0_mean if voice.festival_voice not in speech_corpus.HTS_VOICES else 175.0  # slt's own F0
        measured.append(float(np.median(pitch)))
        assert measured[-1] == pytest.approx(base * voice.resample_factor, rel=0.12)
    assert (
        min(
            abs(a / b - 1)
            for a, b in [(measured[0], measured[1]), (measured[1], measured[2]), (measured[0], measured[2])]
        )
        > 0.1
    )


@needs_festival
def test_test_sentences_never_occur_in_training(generated: tuple[Path, LibriSpeechCorpus]) -> None:
    root, corpus = generated
    transcripts = dict(
        line.split(" ", 1) for path in root.rglob("*.trans.txt") for line in path.read_text().splitlines()
    )
    train = {transcripts[u.id] for u in corpus.splits["train"]}
    test = {transcripts[u.id] for u in corpus.splits["test"]}
    assert len(transcripts) == 6 and not train & test


@needs_festival
def test_same_seed_gives_the_same_corpus(tmp_path: Path, generated: tuple[Path, LibriSpeechCorpus]) -> None:
    root, corpus = generated
    generate_speech_corpus(tmp_path, num_speakers=3, utterances_per_speaker=2, seed=5, workers=2)
    label_file = Path("LibriSpeech100_labels_split", "converted_aligned_phones.txt")
    assert (tmp_path / label_file).read_text() == (root / label_file).read_text()
    again = read_librispeech(tmp_path)
    for first, second in zip(corpus.splits["test"], again.splits["test"]):
        np.testing.assert_array_equal(corpus.waveform(first), again.waveform(second))
