"""Frozen features of every module on speech, cached in memory, from one pass over whole utterances: per 10 ms
label frame (phone probe) and averaged over consecutive one-window segments (speaker probe); and the same two
views of log-mel energies.

A module whose output has a finer step than the label frames (the first convolutions) is average-pooled to the
label hop; frames are then matched to the labels from the end, since the labels describe slightly fewer frames
than the audio holds (a 25 ms analysis window every 10 ms). Where an output has fewer frames than there are labels
(the readers accept up to one label per started 10 ms; a convolution or the log-mel window may end a frame or two
short), the earliest labels are left out. Speaker features average the frames of each
`window`-sample segment (1.28 s; a shorter last segment counts if it holds at least half a window), so every
second of every utterance is used and the encoder runs once per utterance for both probes. Unlike the paper's
protocol, the GRU's state at a segment's start carries the utterance before it. Every 10 ms of a full-size corpus
is far more than memory holds (every module of the paper's encoder on LibriSpeech train-clean-100: hundreds of
GB), so above a given count every s-th frame (segment) is kept: a fixed budget whatever the corpus's size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from greedy_infomax.data.librispeech import AudioSpec, LibriSpeechCorpus, standardize
from greedy_infomax.errors import GimError
from greedy_infomax.evaluation.features import finite, frozen_pass

Encoder = Callable[[torch.Tensor], list[torch.Tensor]]
"""Maps a (B, 1, samples) batch to one (B, C, T) output per module (or a single baseline output)."""


@dataclass
class SpeechFeatures:
    """Per module (or baseline), speaker features (segments, C) and phone features (frames, C), with labels; no
    phone features when the corpus has no phone alignments (a speech folder may lack them)."""

    speaker: list[torch.Tensor]
    speakers: torch.Tensor
    phone: list[torch.Tensor] | None
    phones: torch.Tensor | None


def module_outputs(modules: nn.ModuleList) -> Encoder:
    """Every module's (B, C, T) output, in float32, from one frozen pass."""
    return lambda x: frozen_pass(modules, x, lambda module, h: h.float())


def log_mel_output(spec: AudioSpec, num_mels: int = 40) -> Encoder:
    """Log energies of `num_mels` mel bands in 25 ms Hann windows every label hop: (B, num_mels, frames)."""
    window = round(0.025 * spec.sample_rate)
    n_fft = 1 << (window - 1).bit_length()
    filterbank = mel_filterbank(num_mels, n_fft, spec.sample_rate)  # (mels, n_fft/2 + 1)
    taper = torch.hann_window(window, periodic=False)

    def encode(x: torch.Tensor) -> list[torch.Tensor]:
        frames = x[:, 0].unfold(-1, window, spec.hop) * taper.to(x.device)  # (B, F, window)
        power = torch.fft.rfft(frames, n=n_fft).abs().square()  # (B, F, n_fft/2 + 1)
        return [torch.log(power @ filterbank.T.to(x.device) + 1e-6).transpose(1, 2)]  # (B, mels, F)

    return encode


def mel_filterbank(num_mels: int, n_fft: int, sample_rate: int, low_hz: float = 20.0) -> torch.Tensor:
    """Triangular filters equally spaced on the mel scale (HTK formula) from `low_hz` to the Nyquist frequency."""

    def to_mel(hz):
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    edges_mel = np.linspace(to_mel(low_hz), to_mel(sample_rate / 2), num_mels + 2)
    edges = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)  # (mels + 2,) in Hz
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)  # (n_fft/2 + 1,)
    rising = (bins - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    falling = (edges[2:, None] - bins) / (edges[2:, None] - edges[1:-1, None])
    return torch.from_numpy(np.clip(np.minimum(rising, falling), 0, None)).float()


def speech_features(
    encode: Encoder,
    hops: list[int],
    corpus: LibriSpeechCorpus,
    split: str,
    max_frames: int | None,
    max_segments: int | None,
    device: torch.device,
    description: str,
) -> SpeechFeatures:
    """Speaker and phone features of one split, one output of `encode` each (`hops`: its samples per step).

    With `max_frames` (`max_segments`), the phone (speaker) probe keeps every s-th label frame (segment) of the
    split only, s chosen from an upper bound on their number so that at most that many are kept: the features then
    take the same memory whatever the size of the corpus. Without phone labels, the frames all outputs have,
    counted from the end, make the speaker features.
    """
    utterances = corpus.splits[split]
    with_phones = corpus.alignment_file is not None
    segment = corpus.spec.frames_per_window
    bounds = [len(corpus.phones(u)) if with_phones else u.num_samples // corpus.spec.hop + 1 for u in utterances]
    frame_picker = EveryNth(sum(bounds) if with_phones else 0, max_frames)
    segment_picker = EveryNth(sum(len(segments_of(frames, segment)) for frames in bounds), max_segments)
    speaker: list[list[torch.Tensor]] = [[] for _ in hops]
    phone: list[list[torch.Tensor]] = [[] for _ in hops]
    speakers, phones = [], []
    for utterance in tqdm(utterances, desc=f"{description}: {split}", unit="utt", leave=False, dynamic_ncols=True):
        labels = torch.from_numpy(corpus.phones(utterance)) if with_phones else None
        samples = standardize(corpus.waveform(utterance), corpus.spec)
        audio = torch.from_numpy(samples[None, None]).to(device)  # (1, 1, N)
        outputs = aligned_frames(encode(audio), hops, corpus.spec, None if labels is None else len(labels))
        count = outputs[0].shape[1]
        if labels is not None:
            keep = frame_picker.take(count)
            phones.append(labels[len(labels) - count :][keep])
        segments = segments_of(count, segment)
        segments = [segments[i] for i in segment_picker.take(len(segments))]
        for speaker_store, phone_store, output in zip(speaker, phone, outputs, strict=True):
            frames = output.cpu()  # (C, count)
            if labels is not None:
                phone_store.append(frames[:, keep].T)
            speaker_store += [frames[:, s].mean(1) for s in segments]
        speakers += [utterance.speaker] * len(segments)
    name = f"{description}: {split}"
    return SpeechFeatures(
        finite([torch.stack(store) for store in speaker], name),
        torch.tensor(speakers),
        finite([torch.cat(store) for store in phone], name) if with_phones else None,
        torch.cat(phones) if with_phones else None,
    )


class EveryNth:
    """Picks every n-th item of a sequence that arrives in pieces, n chosen so that at most `limit` of `total`
    items are picked (all of them when `limit` is None)."""

    def __init__(self, total: int, limit: int | None) -> None:
        self.n = 1 if limit is None else max(1, math.ceil(total / limit))
        self.offset = 0
        """Where in the next piece the next pick falls."""

    def take(self, count: int) -> torch.Tensor:
        """The indices picked in the next piece of `count` items."""
        keep = torch.arange(min(self.offset, count), count, self.n)  # none when the next pick lies beyond
        self.offset = (self.offset - count) % self.n
        return keep


def segments_of(num_frames: int, segment: int) -> list[torch.Tensor]:
    """Frame indices of the consecutive `segment`-frame pieces of an utterance; a shorter last piece counts if it
    holds at least half a segment."""
    return [s for s in torch.arange(num_frames).split(segment) if len(s) * 2 >= segment]


def aligned_frames(
    outputs: list[torch.Tensor], hops: list[int], spec: AudioSpec, num_labels: int | None
) -> list[torch.Tensor]:
    """Each (1, C, T) output with `hops` samples per step -> (C, count) at the label hop: the last `count` frames,
    as many as every output (and the labels, when `num_labels` is given) has."""
    pooled = [to_label_hop(output, hop, spec) for output, hop in zip(outputs, hops, strict=True)]  # (1, C, T')
    count = min([p.shape[2] for p in pooled] + ([] if num_labels is None else [num_labels]))
    return [last_frames(p, count) for p in pooled]


def to_label_hop(output: torch.Tensor, hop: int, spec: AudioSpec) -> torch.Tensor:
    """(1, C, T) output with `hop` samples per step -> (1, C, T') average-pooled to the label hop."""
    if spec.hop % hop:
        raise GimError(
            f"a module output with a step of {hop} samples cannot be pooled to the {spec.hop}-sample label frames"
        )
    return F.avg_pool1d(output, spec.hop // hop) if hop < spec.hop else output


def last_frames(pooled: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(1, C, T') at the label hop -> (C, num_frames): the last frames, which the labels describe."""
    return pooled[0, :, pooled.shape[2] - num_frames :]
