"""A speech corpus synthesised offline with festival, in exactly the LibriSpeech + CPC layout of `librispeech.py`.

Speakers. Festival has three English voices: `kal_diphone` and `ked_diphone` (male) and `cmu_us_slt_arctic_hts`
(female). Speaker k uses voice k mod 3 with its own settings, drawn uniformly from `VOICE_RANGES`: a mean and a
spread of F0 and a tempo (diphone voices; the HTS voice honours only its speed), and a resampling factor that
raises (or lowers) pitch and formants together and shortens (or lengthens) the speech. About 100 speakers fill
these ranges densely, so neighbours sound close and speaker identification is hard for spectral averages.

Text. Sentences of 6-24 words from Debian's `fortunes-min`, stripped of quotes, digits and anything festival could
trip on. The sentences are shuffled once and split 80/20: training utterances use only the first part and test
utterances only the second, so a probe is tested on sentences never heard in training.

Labels. Festival writes each segment's end time (`utt.save.segs`); every 10 ms frame takes the class of the
segment under its centre, frames past the last segment are silence. Frames follow Kaldi's convention, as the CPC
alignments do: F = 1 + (N - 400) // 160 frames of 25 ms every 10 ms, so F is 1-2 frames less than N / 160.
Classes (`PHONES`): 0 silence, then 40 ARPAbet phones, the 39 of the CMU dictionary plus the schwa AX that
festival keeps apart from AH. Festival's other phones are folded in `FESTIVAL_PHONES` (axr->er, dx->t, el->l,
em->m, en->n, nx->n, hv->hh, pau/brth/h#->silence).

Loudness. Each utterance is scaled so that its speech frames (non-silence labels) have the same RMS, chosen so
that the corpus's waveform statistics are close to LibriSpeech's (std about 0.063): loudness is no speaker cue and
the same standardisation serves both corpora.

Each chapter folder also holds LibriSpeech's `<speaker>-<chapter>.trans.txt` (id, then the upper-case words).
Only festival's command line is used (one `festival -b` process per speaker, `workers` at a time); festival, its
voices and fortunes-min are permissively licensed. espeak-ng (GPL-3+) is not used: its command line gives no
phone timings, and its library must not be loaded into this MIT-licensed process.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
from tqdm import tqdm

from greedy_infomax.data.librispeech import ALIGNMENT_FILE, AUDIO_FOLDER, LABEL_FOLDER, SPLIT_FILES, AudioSpec
from greedy_infomax.errors import GimError

PHONES = (
    "sil",
    "aa",
    "ae",
    "ah",
    "ao",
    "aw",
    "ax",
    "ay",
    "b",
    "ch",
    "d",
    "dh",
    "eh",
    "er",
    "ey",
    "f",
    "g",
    "hh",
    "ih",
    "iy",
    "jh",
    "k",
    "l",
    "m",
    "n",
    "ng",
    "ow",
    "oy",
    "p",
    "r",
    "s",
    "sh",
    "t",
    "th",
    "uh",
    "uw",
    "v",
    "w",
    "y",
    "z",
    "zh",
)
"""Label -> phone class: 0 is silence, 1..40 are ARPAbet phones."""
FESTIVAL_PHONES = {phone: label for label, phone in enumerate(PHONES)} | {
    "axr": PHONES.index("er"),
    "dx": PHONES.index("t"),
    "el": PHONES.index("l"),
    "em": PHONES.index("m"),
    "en": PHONES.index("n"),
    "nx": PHONES.index("n"),
    "hv": PHONES.index("hh"),
    "pau": 0,
    "brth": 0,
    "h#": 0,
}
"""Festival's `radio` phone set (used by all three voices) -> label."""
VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
HTS_VOICES = {"cmu_us_slt_arctic_hts"}
VOICE_RANGES = {
    "resample_factor": (0.9, 1.1),
    "tempo": (0.85, 1.15),
    "f0_mean": (90.0, 140.0),
    "f0_std": (10.0, 25.0),
}
"""Uniform ranges of the speaker settings (F0 in Hz, diphone voices only)."""
APT_PACKAGES = "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts fortunes-min"
FORTUNES = Path("/usr/share/games/fortunes")
FORTUNE_FILES = ("fortunes", "literature", "riddles")
"""The files of `fortunes-min`; other fortune packages installed beside it do not change the corpus."""
TEST_SHARE = 0.2
"""Share of sentences, and of each speaker's utterances, kept for the test split (the CPC split's is about 20%)."""
SPEECH_RMS = 0.07
"""RMS of every utterance's speech frames (float audio in [-1, 1])."""
KALDI_FRAME = 400
"""Samples in one 25 ms analysis frame of the alignments; frames start every `hop` samples."""
CHAPTER = "1"


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker's settings."""

    festival_voice: str
    resample_factor: float
    """Playback speed-up after synthesis: > 1 raises pitch and formants and shortens the utterance."""
    tempo: float
    """Speaking rate: festival's Duration_Stretch is 1 / tempo; the HTS voice's speed (`-r`) is tempo."""
    f0_mean: float
    """Target mean F0 in Hz (diphone voices; the HTS voice ignores it)."""
    f0_std: float


def sample_voices(num_speakers: int, seed: int) -> list[Voice]:
    """Speaker k uses festival voice k mod 3, with settings drawn uniformly from VOICE_RANGES."""
    rng = np.random.default_rng([seed, 1])
    return [
        Voice(VOICES[k % len(VOICES)], **{name: float(rng.uniform(*bounds)) for name, bounds in VOICE_RANGES.items()})
        for k in range(num_speakers)
    ]


def read_sentences(folder: Path = FORTUNES) -> list[str]:
    """Sentences of 6-24 words from fortunes-min's files, in file order, made safe for festival's Scheme strings."""
    sentences: dict[str, None] = {}  # an insertion-ordered set
    for name in FORTUNE_FILES:
        for cookie in (folder / name).read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            text = " ".join(line for line in cookie.splitlines() if not line.lstrip().startswith("--"))
            for sentence in re.split(r"(?<=[.?!])\s+", " ".join(text.split())):
                sentence = re.sub(r"\b[QA]:\s*", "", sentence.replace('"', ""))
                if re.fullmatch(r"[A-Za-z][A-Za-z ,;:'.?!-]*", sentence) and 6 <= len(sentence.split()) <= 24:
                    sentences[sentence] = None
    return list(sentences)


def generate_speech_corpus(
    root: Path, num_speakers: int = 100, utterances_per_speaker: int = 20, seed: int = 0, workers: int | None = None
) -> Path:
    """Synthesise the corpus into `root` (LibriSpeech/ and LibriSpeech100_labels_split/) and return `root`.

    Each speaker gets `utterances_per_speaker` utterances, TEST_SHARE of them (at least one) in the test split.
    The result depends only on the arguments other than `workers` (and on the Debian packages' versions).
    """
    _check_request(root, num_speakers, utterances_per_speaker)
    sentences = read_sentences()
    order = np.random.default_rng([seed, 0]).permutation(len(sentences))
    num_test_sentences = max(1, round(TEST_SHARE * len(sentences)))
    pools = {
        "train": [sentences[i] for i in order[num_test_sentences:]],
        "test": [sentences[i] for i in order[:num_test_sentences]],
    }
    voices = sample_voices(num_speakers, seed)
    spec = AudioSpec(num_speakers=num_speakers)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".speech-corpus-", dir=root))
    try:
        jobs = [(k, voice, _speaker_texts(pools, utterances_per_speaker, seed, k)) for k, voice in enumerate(voices)]
        results = _run_speakers(jobs, staging, spec, workers or min(2, os.cpu_count() or 1))
        _write_label_files(staging / LABEL_FOLDER, results)
        for folder in (AUDIO_FOLDER.parts[0], LABEL_FOLDER):
            (staging / folder).replace(root / folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def _check_request(root: Path, num_speakers: int, utterances_per_speaker: int) -> None:
    if num_speakers < 1 or utterances_per_speaker < 2:
        raise GimError(
            f"a speech corpus needs at least 1 speaker and 2 utterances per speaker (one for each split); "
            f"got {num_speakers} and {utterances_per_speaker}"
        )
    for folder in (root / AUDIO_FOLDER.parts[0], root / LABEL_FOLDER):
        if folder.exists():
            raise GimError(f"{folder} already exists: delete it, or generate the speech corpus into another root")
    if shutil.which("festival") is None or not all((FORTUNES / name).is_file() for name in FORTUNE_FILES):
        raise GimError(
            f"the speech corpus needs festival and {FORTUNES}: install the Debian packages "
            f"{APT_PACKAGES} (./setup.sh does so when run as root)"
        )


def _speaker_texts(pools: dict[str, list[str]], count: int, seed: int, speaker: int) -> dict[str, list[str]]:
    """Sentences for one speaker per split, distinct within a split while the pool lasts."""
    rng = np.random.default_rng([seed, 2, speaker])
    num_test = max(1, round(TEST_SHARE * count))
    counts = {"train": count - num_test, "test": num_test}
    return {split: [pools[split][i] for i in _draw(rng, len(pools[split]), n)] for split, n in counts.items()}


def _draw(rng: np.random.Generator, population: int, count: int) -> np.ndarray:
    """`count` indices below `population`, without repeats until every index has been used once."""
    rounds = [rng.permutation(population) for _ in range(-(-count // population))]
    return np.concatenate(rounds)[:count]


@dataclass(frozen=True)
class _Rendered:
    utterance_id: str
    split: str
    labels: np.ndarray


def _run_speakers(
    jobs: list[tuple[int, Voice, dict[str, list[str]]]], staging: Path, spec: AudioSpec, workers: int
) -> list[_Rendered]:
    """Synthesise and render every speaker, `workers` festival processes at a time, with a progress bar."""
    results: list[_Rendered] = []
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        tqdm(total=len(jobs), desc="speech corpus", unit="speaker") as bar,
    ):
        for rendered in pool.map(lambda job: _speaker(*job, staging, spec), jobs):
            results.extend(rendered)
            bar.update()
    return results


def _speaker(index: int, voice: Voice, texts: dict[str, list[str]], staging: Path, spec: AudioSpec) -> list[_Rendered]:
    """Synthesise one speaker's utterances with festival, then write them as 16 kHz FLAC files."""
    speaker = str(index + 1)
    folder = staging / AUDIO_FOLDER / speaker / CHAPTER
    folder.mkdir(parents=True)
    items = [(split, text) for split in ("train", "test") for text in texts[split]]
    with tempfile.TemporaryDirectory(prefix="gim-festival-") as scratch:  # a path safe inside Scheme strings
        raw = _synthesise(voice, [text for _, text in items], Path(scratch))
        rendered = []
        for number, ((split, _), (wave, segments)) in enumerate(zip(items, raw)):
            utterance_id = f"{speaker}-{CHAPTER}-{number:04d}"
            samples, labels = _render(wave, segments, voice.resample_factor, spec)
            soundfile.write(folder / f"{utterance_id}.flac", samples, spec.sample_rate, subtype="PCM_16")
            rendered.append(_Rendered(utterance_id, split, labels))
    transcript = (f"{r.utterance_id} {_transcript(text)}\n" for r, (_, text) in zip(rendered, items))
    (folder / f"{speaker}-{CHAPTER}.trans.txt").write_text("".join(transcript))
    return rendered


def _transcript(text: str) -> str:
    """LibriSpeech's transcript style: upper-case words and apostrophes, no punctuation."""
    return " ".join(re.sub(r"[^A-Z' ]", " ", text.upper()).split())


def _synthesise(voice: Voice, texts: Sequence[str], scratch: Path) -> list[tuple[Path, Path]]:
    """Run one festival batch over `texts`; returns the (wave, segments) files of each text."""
    outputs = [(scratch / f"{i}.wav", scratch / f"{i}.segs") for i in range(len(texts))]
    lines = [f"(voice_{voice.festival_voice})", *_prosody(voice)]
    for text, (wave, segments) in zip(texts, outputs):
        lines += [
            f'(set! utt (SynthText "{text}"))',
            f'(utt.save.wave utt "{wave}" \'riff)',
            f'(utt.save.segs utt "{segments}")',
        ]
    script = scratch / "synthesise.scm"
    script.write_text("\n".join(lines) + "\n")
    done = subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True)
    missing = [text for text, (wave, segments) in zip(texts, outputs) if not (wave.is_file() and segments.is_file())]
    if done.returncode or missing:
        messages = done.stderr.strip().splitlines() or ["no message"]
        detail = next((line for line in messages if "ERROR" in line), messages[-1])  # e.g. SIOD ERROR: ...
        raise GimError(
            f"festival failed on {script} ({detail}); first sentence not synthesised: "
            f"{missing[0] if missing else 'none'!r}"
        )
    return outputs


def _prosody(voice: Voice) -> list[str]:
    """Scheme lines setting a voice's tempo and F0, after the voice is selected (selecting resets them)."""
    if voice.festival_voice in HTS_VOICES:
        return [
            f'(set! hts_engine_params (append {voice.festival_voice}::hts_engine_params \'(("-r" {voice.tempo:.4f}))))'
        ]
    return [
        f"(Parameter.set 'Duration_Stretch {1 / voice.tempo:.4f})",
        f"(set! int_lr_params '((target_f0_mean {voice.f0_mean:.2f}) (target_f0_std {voice.f0_std:.2f}) "
        f"(model_f0_mean 170) (model_f0_std 34)))",
    ]


def _render(wave: Path, segments: Path, resample_factor: float, spec: AudioSpec) -> tuple[np.ndarray, np.ndarray]:
    """Resample festival's output to 16 kHz sped up by `resample_factor`, normalise loudness, label every frame.

    Returns float32 samples (at least one window long: short ones are padded with silence) and int64 labels.
    """
    samples, rate = soundfile.read(wave, dtype="float32")
    ends, labels = _read_segments(segments)
    scale = spec.sample_rate / (rate * resample_factor)  # output samples per input sample
    samples = _resample(samples, round(len(samples) * scale))
    samples = np.pad(samples, (0, max(0, spec.window - len(samples))))
    ends = ends * rate * scale  # in output samples
    speech = _phone_at(ends, labels, np.arange(len(samples))) != 0
    return _normalise_loudness(samples, speech), frame_phones(ends, labels, len(samples), spec.hop)


def _read_segments(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Festival's segment file: a header ending in '#', then `end_time 100 phone` per line -> (ends in s, labels)."""
    body = path.read_text().split("#\n", 1)[-1].split("\n")
    rows = [line.split() for line in body if line.strip()]
    unknown = sorted({row[2] for row in rows if row[2] not in FESTIVAL_PHONES})
    if unknown:
        raise GimError(f"{path}: festival phones {', '.join(unknown)} have no class in FESTIVAL_PHONES")
    return np.array([float(row[0]) for row in rows]), np.array([FESTIVAL_PHONES[row[2]] for row in rows])


def frame_phones(ends: np.ndarray, labels: np.ndarray, num_samples: int, hop: int) -> np.ndarray:
    """(F,) label of each Kaldi-style frame (25 ms every `hop` samples): the segment under the frame's centre.

    ends: (S,) segment end positions in samples, increasing; labels: (S,) their classes. Past the last end: silence.
    """
    num_frames = 1 + (num_samples - KALDI_FRAME) // hop
    return _phone_at(ends, labels, np.arange(num_frames) * hop + KALDI_FRAME / 2)


def _phone_at(ends: np.ndarray, labels: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The label of the segment holding each position (in samples): the first segment ending after it."""
    return np.append(labels, 0)[np.searchsorted(ends, positions, side="right")].astype(np.int64)


def _resample(samples: np.ndarray, length: int) -> np.ndarray:
    """Band-limited resampling to `length` samples by cropping or zero-padding the spectrum (speech is
    surrounded by silence, so the FFT's wrap-around does no harm)."""
    spectrum = np.fft.rfft(samples)
    kept = np.zeros(length // 2 + 1, dtype=spectrum.dtype)
    n = min(len(kept), len(spectrum))
    kept[:n] = spectrum[:n]
    return (np.fft.irfft(kept, length) * (length / len(samples))).astype(np.float32)


def _normalise_loudness(samples: np.ndarray, speech: np.ndarray) -> np.ndarray:
    """Scale so that the samples where `speech` is true have RMS SPEECH_RMS, clipped to [-1, 1]."""
    rms = float(np.sqrt(np.mean(np.square(samples[speech])))) if speech.any() else 0.0
    if rms == 0.0:
        return samples
    return np.clip(samples * (SPEECH_RMS / rms), -1.0, 1.0)


def _write_label_files(folder: Path, results: list[_Rendered]) -> None:
    """The CPC authors' three text files: both split lists and the per-frame alignments."""
    folder.mkdir(parents=True)
    for split, name in SPLIT_FILES.items():
        (folder / name).write_text("".join(f"{r.utterance_id}\n" for r in results if r.split == split))
    lines = (f"{r.utterance_id} {' '.join(map(str, r.labels.tolist()))}\n" for r in results)
    (folder / ALIGNMENT_FILE).write_text("".join(lines))
