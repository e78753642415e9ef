"""LibriSpeech train-clean-100 with the CPC authors' split and phone alignments, FLAC read lazily.

Layout under a data root (ROOT):

    ROOT/LibriSpeech/train-clean-100/<speaker>/<chapter>/<speaker>-<chapter>-<utterance>.flac   16 kHz mono
    ROOT/LibriSpeech100_labels_split/train_split.txt                one utterance id per line
    ROOT/LibriSpeech100_labels_split/test_split.txt
    ROOT/LibriSpeech100_labels_split/converted_aligned_phones.txt   per line: id, then one label 0..40 per 10 ms frame

The label folder has the name that the original Greedy InfoMax instructions give it, so their `datasets/` folder
works as ROOT unchanged. The generated corpus (`speech_corpus.py`) is written in exactly this layout.

Speakers are the sorted numeric speaker ids of both splits; a speaker's label is its position in that order.
Waveforms are float32 in [-1, 1]; the loaders standardise them with the spec's mean and std.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import soundfile
import torch

from greedy_infomax.data.download import download, extract_tar
from greedy_infomax.data.loader import epoch_order
from greedy_infomax.data.roots import required_gim_data
from greedy_infomax.errors import GimError
from greedy_infomax.placement import to_device

T = TypeVar("T")

AUDIO_FOLDER = Path("LibriSpeech", "train-clean-100")
LABEL_FOLDER = "LibriSpeech100_labels_split"
SPLIT_FILES = {"train": "train_split.txt", "test": "test_split.txt"}
ALIGNMENT_FILE = "converted_aligned_phones.txt"
URL = "https://www.openslr.org/resources/12/train-clean-100.tar.gz"
MD5 = "2a93770f6d5c6c964bc36631d331a522"
LABELS_URL = "https://drive.google.com/drive/folders/1BhJ2umKH3whguxMwifaKtSra0TgAbtfb"
"""The CPC authors' folder (CPC paper, footnote 2). Google Drive offers no stable, checksummed direct link."""
UTTERANCE_ID = re.compile(r"\d+-\d+-\d+")


@dataclass(frozen=True)
class AudioSpec:
    """Facts about a speech corpus that models and probes take their sizes from."""

    num_speakers: int
    sample_rate: int = 16_000
    window: int = 20_480
    """Samples in one pre-training / speaker-probe window (1.28 s)."""
    hop: int = 160
    """Samples per 10 ms phone-label frame; window starts are multiples of it."""
    num_phones: int = 41
    mean: float = -6.78e-4
    """Mean of the float waveform over LibriSpeech train-clean-100, subtracted before dividing by `std`."""
    std: float = 0.0630

    @property
    def frames_per_window(self) -> int:
        return self.window // self.hop


@dataclass(frozen=True)
class Utterance:
    id: str
    """`<speaker>-<chapter>-<utterance>`, as in the split files."""
    path: Path
    speaker: int
    """0-based index into `LibriSpeechCorpus.speakers`."""
    num_samples: int


class LibriSpeechCorpus:
    """The utterances of each split; audio is read and phone labels are parsed on demand.

    Also what the speech-folder reader returns (speech_folder.py), whose phone alignments are optional.
    """

    def __init__(
        self,
        alignment_file: Path | None,
        spec: AudioSpec,
        speakers: tuple[str, ...],
        splits: dict[str, tuple[Utterance, ...]],
        alignments: dict[str, tuple[int, int]],
    ) -> None:
        self.alignment_file = alignment_file
        """The CPC-format phone alignments, None if the corpus has none."""
        self.spec = spec
        self.speakers = speakers
        """Speaker ids in label order."""
        self.splits = splits
        self._alignments = alignments
        """Utterance id -> (line number, byte offset) in the alignment file."""

    def waveform(self, utterance: Utterance, start: int = 0, length: int | None = None) -> np.ndarray:
        """(length,) float32 samples from `start`, the whole rest of the utterance when `length` is None."""
        stop = utterance.num_samples if length is None else start + length
        try:
            samples, _ = soundfile.read(utterance.path, start=start, stop=stop, dtype="float32", always_2d=False)
        except soundfile.SoundFileError as error:
            raise GimError(f"{utterance.path}: cannot read samples {start}..{stop} ({error})") from error
        if len(samples) != stop - start:
            raise GimError(f"{utterance.path}: got {len(samples)} of samples {start}..{stop}; the file is truncated")
        return samples

    def phones(self, utterance: Utterance) -> np.ndarray:
        """(F,) int64 labels 0..num_phones-1, one per 10 ms frame; F is a little less than samples / hop."""
        path = self.alignment_file
        if path is None:
            raise GimError(f"{utterance.path}: no phone labels, the corpus has no {ALIGNMENT_FILE}")
        line_number, offset = self._alignments[utterance.id]
        with path.open("rb") as file:
            file.seek(offset)
            fields = file.readline().split()[1:]
        where = f"{path}, line {line_number} ({utterance.id})"
        try:
            labels = np.array(fields, dtype=np.int64)
        except (ValueError, OverflowError) as error:
            raise GimError(f"{where}: labels must be integers ({error})") from error
        return _checked_labels(labels, utterance, self.spec, where)


def read_librispeech(root: Path | None, limit: int | None = None) -> LibriSpeechCorpus:
    """Check the layout, both split files and every split utterance's FLAC header; root None: `$GIM_DATA`.

    `limit` keeps N utterances of each split file, spread over its speakers (`spread_over_speakers`).
    Checked now: folders and files exist, utterance ids, sample rate, mono, at least one window of audio, and
    that the alignment file has exactly one line per split utterance. Checked on use: labels, sample data.
    """
    root = required_gim_data("LibriSpeech", f"{AUDIO_FOLDER.parts[0]}/ and {LABEL_FOLDER}/") if root is None else root
    audio = _existing_audio_folder(root)
    ids = {
        split: spread_over_speakers(_read_split(_existing_label_file(root, name)), limit, _speaker_number)
        for split, name in SPLIT_FILES.items()
    }
    alignment_file = _existing_label_file(root, ALIGNMENT_FILE)
    speakers = tuple(sorted({_speaker_id(i) for split_ids in ids.values() for i in split_ids}, key=int))
    spec = AudioSpec(num_speakers=len(speakers))
    label = {speaker: index for index, speaker in enumerate(speakers)}
    splits = {
        split: tuple(
            _utterance(audio, i, label[_speaker_id(i)], spec, root / LABEL_FOLDER / SPLIT_FILES[split])
            for i in split_ids
        )
        for split, split_ids in ids.items()
    }
    return LibriSpeechCorpus(alignment_file, spec, speakers, splits, index_alignments(alignment_file, splits))


def _existing_audio_folder(root: Path) -> Path:
    folder = root / AUDIO_FOLDER
    if not folder.is_dir():
        raise GimError(
            f"{folder} not found: extract train-clean-100.tar.gz ({URL}) into {root} so that {folder} holds "
            f"<speaker>/<chapter>/*.flac, or run `gim data librispeech --root {root}` to download it there "
            f"(or `gim data speech-corpus --root {root}` to generate an offline corpus in this layout)"
        )
    return folder


def _existing_label_file(root: Path, name: str) -> Path:
    path = root / LABEL_FOLDER / name
    if not path.is_file():
        raise GimError(
            f"{path} not found: put the CPC authors' {name} in {path.parent} (from {LABELS_URL}; unzip "
            f"converted_aligned_phones.zip there); `gim data librispeech --root {root}` downloads only the audio"
        )
    return path


def _read_split(path: Path) -> list[str]:
    """The utterance ids of a split file, one per non-blank line."""
    ids = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        if not UTTERANCE_ID.fullmatch(line.strip()):
            raise GimError(f"{path}, line {number}: {line.strip()!r} is not an utterance id like 103-1240-0000")
        ids.append(line.strip())
    if not ids:
        raise GimError(f"{path}: no utterance ids")
    return ids


def _speaker_id(utterance_id: str) -> str:
    return utterance_id.split("-")[0]


def _speaker_number(utterance_id: str) -> int:
    return int(_speaker_id(utterance_id))


def spread_over_speakers(items: Sequence[T], limit: int | None, speaker: Callable[[T], int]) -> list[T]:
    """The first `limit` items taken in turn from each speaker in speaker order, each speaker's in stored order.

    The first N of a split file would be one or two speakers' utterances, and not the same speakers in both
    splits, so the speaker probe would be tested on speakers it never saw. In turn, a limit below the number of
    speakers takes the same first speakers in both splits (when each has utterances in both).
    """
    if limit is None:
        return list(items)
    by_speaker: dict[int, list[T]] = {}
    for item in items:
        by_speaker.setdefault(speaker(item), []).append(item)
    missing = object()
    rounds = itertools.zip_longest(*(by_speaker[key] for key in sorted(by_speaker)), fillvalue=missing)
    return [item for turn in rounds for item in turn if item is not missing][:limit]


def _utterance(audio: Path, utterance_id: str, speaker: int, spec: AudioSpec, split_file: Path) -> Utterance:
    """Locate an utterance's FLAC file and check its header: readable, mono, 16 kHz, at least one window."""
    speaker_id, chapter, _ = utterance_id.split("-")
    path = audio / speaker_id / chapter / f"{utterance_id}.flac"
    if not path.is_file():
        raise GimError(f"{split_file}: utterance {utterance_id} has no audio file {path}")
    return Utterance(utterance_id, path, speaker, audio_frames(path, spec))


def audio_frames(path: Path, spec: AudioSpec, whole_window: bool = True) -> int:
    """The samples in an audio file, after checking its header: readable, mono, at the spec's rate, and (with
    `whole_window`) at least one window long."""
    try:
        info = soundfile.info(path)
    except soundfile.SoundFileError as error:
        raise GimError(f"{path}: cannot read as {path.suffix[1:].upper()} ({error})") from error
    if info.samplerate != spec.sample_rate or info.channels != 1:
        raise GimError(
            f"{path}: {info.channels} channel(s) at {info.samplerate} Hz; expected mono at {spec.sample_rate} Hz"
        )
    if whole_window and info.frames < spec.window:
        raise GimError(f"{path}: {info.frames} samples is shorter than one {spec.window}-sample window")
    return info.frames


def index_alignments(
    path: Path, splits: dict[str, tuple[Utterance, ...]], lists: dict[str, str] = SPLIT_FILES
) -> dict[str, tuple[int, int]]:
    """Map each id to its (line number, byte offset), checking that every split utterance has exactly one line;
    `lists` names where each split's utterances come from, for the error."""
    index: dict[str, tuple[int, int]] = {}
    offset = 0
    with path.open("rb") as file:
        for number, line in enumerate(file, 1):
            fields = line.split(maxsplit=1)
            if fields:
                utterance_id = fields[0].decode("utf-8", errors="replace")
                if utterance_id in index:
                    raise GimError(f"{path}, line {number}: {utterance_id} also has line {index[utterance_id][0]}")
                index[utterance_id] = (number, offset)
            offset += len(line)
    for split, utterances in splits.items():
        for utterance in utterances:
            if utterance.id not in index:
                raise GimError(f"{path}: no phone labels for {utterance.id} (listed in {lists[split]})")
    return index


def _checked_labels(labels: np.ndarray, utterance: Utterance, spec: AudioSpec, where: str) -> np.ndarray:
    """Labels must be in range and describe no more frames than the audio holds (they are usually 1-2 fewer)."""
    if len(labels) == 0:
        raise GimError(f"{where}: no labels")
    bad = (labels < 0) | (labels >= spec.num_phones)
    if bad.any():
        index = int(np.argmax(bad))
        raise GimError(f"{where}: label {labels[index]} at frame {index} is outside 0..{spec.num_phones - 1}")
    max_frames = -(-utterance.num_samples // spec.hop)
    if len(labels) > max_frames:
        raise GimError(
            f"{where}: {len(labels)} frames of labels for {utterance.num_samples} samples "
            f"(at most {max_frames} frames of {spec.hop})"
        )
    return labels


def download_librispeech(root: Path) -> Path:
    """Download and extract train-clean-100 into `root` (skipped if there); returns `root`.

    The CPC split and alignment files live only on Google Drive, so they are checked for, not downloaded.
    """
    if not (root / AUDIO_FOLDER).is_dir():
        extract_tar(download(URL, root / "train-clean-100.tar.gz", MD5), root)
    for name in (*SPLIT_FILES.values(), ALIGNMENT_FILE):
        _existing_label_file(root, name)
    return root


def standardize(samples: np.ndarray | torch.Tensor, spec: AudioSpec) -> np.ndarray | torch.Tensor:
    """Shift and scale float audio with the corpus statistics, as the encoder expects its input."""
    return (samples - np.float32(spec.mean)) / np.float32(spec.std)


class WindowLoader:
    """Batches of random one-window clips (B, 1, window), standardised, with speaker labels (B,); with `phones`,
    labels are (speakers (B,), phones (B, frames_per_window)), -1 where a frame has no label.

    Each utterance appears once per epoch; its window starts at a random multiple of `hop`. With `shuffle`, the
    order is seeded per epoch and the last incomplete batch dropped (InfoNCE wants full batches). Epoch e's
    order and batch b's windows depend only on (seed, e, b), so a run resumed at (e, b) sees the same batches.
    """

    def __init__(
        self,
        corpus: LibriSpeechCorpus,
        split: str,
        batch_size: int,
        device: torch.device,
        seed: int = 0,
        shuffle: bool = True,
        phones: bool = False,
        utterances: Sequence[Utterance] | None = None,
    ) -> None:
        self.corpus = corpus
        self.phones = phones
        self.utterances = _split(corpus, split) if utterances is None else tuple(utterances)
        """The split's utterances, or those given (a share held out of a split)."""
        self.batch_size = batch_size
        self.device = device
        self.seed = seed
        self.shuffle = shuffle

    def __len__(self) -> int:
        n = len(self.utterances)
        return n // self.batch_size if self.shuffle else -(-n // self.batch_size)

    def epoch(
        self, epoch: int = 0, start_batch: int = 0, stride: int = 1
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches start_batch, start_batch + stride, ... of the epoch (data-parallel replicas take turns)."""
        order = epoch_order(len(self.utterances), self.seed if self.shuffle else None, epoch)
        for b in range(start_batch, len(self), stride):
            batch = [self.utterances[i] for i in order[b * self.batch_size : (b + 1) * self.batch_size]]
            starts = self._window_starts(batch, epoch, b)
            clips = np.stack([self._clip(u, s) for u, s in zip(batch, starts)])[:, None]  # (B, 1, window)
            speakers = to_device(torch.tensor([u.speaker for u in batch], dtype=torch.int64), self.device)
            labels = speakers
            if self.phones:
                frames = np.stack([self._window_phones(u, s) for u, s in zip(batch, starts)])
                labels = (speakers, to_device(torch.from_numpy(frames), self.device))
            yield to_device(torch.from_numpy(clips), self.device), labels

    def _window_phones(self, utterance: Utterance, start: int) -> np.ndarray:
        """The phone label of each 10 ms frame of the window at `start`, -1 where none: the labels are matched to
        the utterance's num_samples // hop frames from the end, as the probes match them (to within a frame)."""
        spec = self.corpus.spec
        labels = self.corpus.phones(utterance)
        first = start // spec.hop - (utterance.num_samples // spec.hop - len(labels))  # label index of frame 0
        index = np.arange(first, first + spec.frames_per_window)
        valid = (index >= 0) & (index < len(labels))
        return np.where(valid, labels[np.clip(index, 0, len(labels) - 1)], -1)

    def _window_starts(self, batch: Sequence[Utterance], epoch: int, batch_index: int) -> np.ndarray:
        """Batch b's window starts: uniform over the multiples of `hop` that leave a whole window."""
        spec = self.corpus.spec
        rng = np.random.default_rng((self.seed, epoch, batch_index))
        last = np.array([(u.num_samples - spec.window) // spec.hop for u in batch])
        return rng.integers(0, last + 1) * spec.hop

    def _clip(self, utterance: Utterance, start: int) -> np.ndarray:
        return standardize(self.corpus.waveform(utterance, start, self.corpus.spec.window), self.corpus.spec)


def _split(corpus: LibriSpeechCorpus, split: str) -> tuple[Utterance, ...]:
    if split not in corpus.splits:
        raise GimError(f"unknown speech split {split!r}: choose one of {', '.join(corpus.splits)}")
    return corpus.splits[split]
