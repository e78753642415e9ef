"""Speech of your own: one folder of recordings per speaker, read into the same corpus type as LibriSpeech, so
the speech loaders, pre-training and probes work on it unchanged.

    ROOT/<speaker>/<utterance>.flac | .wav            16 kHz mono; shorter than one 20,480-sample window: left out
    ROOT/converted_aligned_phones.txt                  optional: per line an utterance (its file name without the
                                                       suffix), then one phone label 0..40 per 10 ms frame

Speakers are the sorted folder names; with alignments, utterance names must be unique across speakers, since
the alignments are keyed by them. Each speaker's recordings, sorted by name, go to the training split except
every fifth (the 5th, 10th, ...), which is held out for testing: a speaker probe then meets every speaker with
5 or more recordings in both splits, on recordings it was not fitted on. Recordings shorter than one window are
left out with a warning. Waveforms are standardised with LibriSpeech's statistics.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from greedy_infomax.data.image_folder import class_names
from greedy_infomax.data.librispeech import (
    ALIGNMENT_FILE,
    AudioSpec,
    LibriSpeechCorpus,
    Utterance,
    audio_frames,
    index_alignments,
    spread_over_speakers,
)
from greedy_infomax.errors import GimError

AUDIO_SUFFIXES = (".flac", ".wav")
TEST_EVERY = 5
"""Every fifth recording of a speaker is a test utterance: the test split's share, 20%, is the CPC split's."""


def read_speech_folder(root: Path, limit: int | None = None) -> LibriSpeechCorpus:
    """Check every recording's header and, if present, that the alignments have one line per recording.

    `limit` keeps N utterances of each split, spread over the speakers (`spread_over_speakers`).
    """
    speakers = tuple(class_names(root, "<speaker>/<utterance>.flac"))
    spec = AudioSpec(num_speakers=len(speakers))
    splits: dict[str, list[Utterance]] = {"train": [], "test": []}
    short: list[Path] = []
    for label, speaker in enumerate(speakers):
        recordings = [(path, audio_frames(path, spec, whole_window=False)) for path in _recordings(root / speaker)]
        short += [path for path, frames in recordings if frames < spec.window]
        usable = [(path, frames) for path, frames in recordings if frames >= spec.window]
        if not usable:
            raise GimError(f"{root / speaker}: every recording is shorter than one {spec.window}-sample window")
        for position, (path, frames) in enumerate(usable, start=1):
            split = "test" if position % TEST_EVERY == 0 else "train"
            splits[split].append(Utterance(path.stem, path, label, frames))
    if short:
        warnings.warn(
            f"{root}: {len(short)} recording(s) shorter than one {spec.window}-sample window "
            f"({spec.window / spec.sample_rate} s) left out, e.g. {short[0]}",
            stacklevel=2,
        )
    if not splits["test"]:
        raise GimError(
            f"{root}: no speaker has {TEST_EVERY} recordings, so the test split (every "
            f"{TEST_EVERY}th recording of a speaker) is empty"
        )
    kept = {
        split: tuple(spread_over_speakers(utterances, limit, lambda utterance: utterance.speaker))
        for split, utterances in splits.items()
    }
    alignment_file = root / ALIGNMENT_FILE
    if not alignment_file.is_file():
        return LibriSpeechCorpus(None, spec, speakers, kept, {})
    _check_names(splits["train"] + splits["test"])
    lists = {split: f"{root}'s {split} split" for split in kept}
    return LibriSpeechCorpus(alignment_file, spec, speakers, kept, index_alignments(alignment_file, kept, lists))


def _recordings(folder: Path) -> list[Path]:
    """The speaker's audio files, sorted by name; other files are ignored."""
    paths = sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES and not path.name.startswith(".")
    )
    if not paths:
        raise GimError(f"{folder}: no {' or '.join(AUDIO_SUFFIXES)} recordings")
    return paths


def _check_names(utterances: list[Utterance]) -> None:
    """Utterance names key the alignments, so two speakers' recordings may not share one."""
    seen: dict[str, Path] = {}
    for utterance in utterances:
        if utterance.id in seen:
            raise GimError(
                f"{utterance.path}: the name {utterance.id!r} is also {seen[utterance.id]}; "
                "utterance names must be unique across speakers"
            )
        seen[utterance.id] = utterance.path
