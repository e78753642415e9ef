"""Frozen features of every module on speech, cached in memory: time-averaged over fixed windows (speaker
probe) and per 10 ms label frame of whole utterances (phone probe); and the same two views of log-mel energies.

A module whose output has a finer step than the label frames (the first convolutions) is average-pooled to the
label hop; frames are then matched to the labels from the end, since the labels describe slightly fewer frames
than the audio holds (a 25 ms analysis window every 10 ms).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from greedy_infomax.data.librispeech import AudioSpec, LibriSpeechCorpus, Utterance, standardize
from greedy_infomax.errors import GimError

Encoder = Callable[[torch.Tensor], list[torch.Tensor]]
"""Maps a (B, 1, samples) batch to one (B, C, T) output per module (or a single baseline output)."""


@dataclass
class SpeechFeatures:
    """Per module (or baseline), speaker features (windows, C) and phone features (frames, C), with labels."""

    speaker: list[torch.Tensor]
    speakers: torch.Tensor
    phone: list[torch.Tensor]
    phones: torch.Tensor


def module_outputs(modules: nn.ModuleList) -> Encoder:
    """Every module's output in one frozen pass (eval mode, no autograd, the modules' own precision)."""
    def encode(x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        with torch.no_grad():
            for module in modules:
                with module.precision(x.device):
                    x = module(x)
                outputs.append(x.float())
        return outputs
    modules.eval()
    return encode


def log_mel_output(spec: AudioSpec, num_mels: int = 40) -> Encoder:
    """Log energies of `num_mels` mel bands in 25 ms Hann windows every label hop: (B, num_mels, frames)."""
    window = round(0.025 * spec.sample_rate)
    n_fft = 1 << (window - 1).bit_length()
    filterbank = mel_filterbank(num_mels, n_fft, spec.sample_rate)                      # (mels, n_fft/2 + 1)
    taper = torch.hann_window(window, periodic=False)

    def encode(x: torch.Tensor) -> list[torch.Tensor]:
        frames = x[:, 0].unfold(-1, window, spec.hop) * taper.to(x.device)              # (B, F, window)
        power = torch.fft.rfft(frames, n=n_fft).abs().square()                          # (B, F, n_fft/2 + 1)
        return [torch.log(power @ filterbank.T.to(x.device) + 1e-6).transpose(1, 2)]    # (B, mels, F)
    return encode


def mel_filterbank(num_mels: int, n_fft: int, sample_rate: int, low_hz: float = 20.0) -> torch.Tensor:
    """Triangular filters equally spaced on the mel scale (HTK formula) from `low_hz` to the Nyquist frequency."""
    def to_mel(hz):
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    edges_mel = np.linspace(to_mel(low_hz), to_mel(sample_rate / 2), num_mels + 2)
    edges = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)                               # (mels + 2,) in Hz
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)                              # (n_fft/2 + 1,)
    rising = (bins - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    falling = (edges[2:, None] - bins) / (edges[2:, None] - edges[1:-1, None])
    return torch.from_numpy(np.clip(np.minimum(rising, falling), 0, None)).float()


def speech_features(encode: Encoder, hops: list[int], corpus: LibriSpeechCorpus, split: str, windows: int,
                    max_frames: int | None, device: torch.device, description: str) -> SpeechFeatures:
    """Speaker and phone features of one split; `hops` gives each output's samples per step."""
    speaker, speakers = _speaker_features(encode, corpus, split, windows, device, description)
    phone, phones = _phone_features(encode, hops, corpus, split, max_frames, device, description)
    return SpeechFeatures(speaker, speakers, phone, phones)


def _speaker_features(encode: Encoder, corpus: LibriSpeechCorpus, split: str, windows: int, device: torch.device,
                      description: str, batch_size: int = 16) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each output averaged over time, for `windows` evenly spaced windows of every utterance."""
    clips = [(u, start) for u in corpus.splits[split] for start in _window_starts(u, windows, corpus.spec)]
    per_output: list[list[torch.Tensor]] = []
    for first in tqdm(range(0, len(clips), batch_size), desc=f"{description}: {split} windows", unit="batch",
                      leave=False, dynamic_ncols=True):
        batch = clips[first:first + batch_size]
        x = np.stack([standardize(corpus.waveform(u, s, corpus.spec.window), corpus.spec) for u, s in batch])
        outputs = encode(torch.from_numpy(x[:, None]).to(device))                       # (B, C, T) each
        if not per_output:
            per_output = [[] for _ in outputs]
        for store, output in zip(per_output, outputs):
            store.append(output.mean(2).cpu())
    labels = torch.tensor([u.speaker for u, _ in clips])
    return [torch.cat(store) for store in per_output], labels


def _window_starts(utterance: Utterance, count: int, spec: AudioSpec) -> list[int]:
    """Up to `count` distinct window starts, multiples of the hop spread evenly over the utterance."""
    last = (utterance.num_samples - spec.window) // spec.hop
    return sorted({int(round(i)) * spec.hop for i in np.linspace(0, last, count)})


def _phone_features(encode: Encoder, hops: list[int], corpus: LibriSpeechCorpus, split: str,
                    max_frames: int | None, device: torch.device,
                    description: str) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each output at every label frame of whole utterances; with `max_frames`, every s-th frame only."""
    utterances = corpus.splits[split]
    stride = 1 if max_frames is None else max(1, math.ceil(_total_frames(corpus, utterances) / max_frames))
    per_output: list[list[torch.Tensor]] = [[] for _ in hops]
    labels, offset = [], 0
    for utterance, audio, frame_labels in tqdm(_utterances(corpus, utterances, device), total=len(utterances),
                                              desc=f"{description}: {split} utterances", unit="utt", leave=False,
                                              dynamic_ncols=True):
        keep = torch.arange(offset, len(frame_labels), stride)
        offset = (offset - len(frame_labels)) % stride
        for store, output, hop in zip(per_output, encode(audio), hops):
            frames = to_label_frames(output, hop, len(frame_labels), corpus.spec, utterance)  # (C, F)
            store.append(frames[:, keep].T.cpu())
        labels.append(frame_labels[keep])
    return [torch.cat(store) for store in per_output], torch.cat(labels)


def _total_frames(corpus: LibriSpeechCorpus, utterances: tuple[Utterance, ...]) -> int:
    return sum(len(corpus.phones(u)) for u in utterances)


def _utterances(corpus: LibriSpeechCorpus, utterances: tuple[Utterance, ...],
                device: torch.device) -> Iterator[tuple[Utterance, torch.Tensor, torch.Tensor]]:
    for utterance in utterances:
        audio = standardize(corpus.waveform(utterance), corpus.spec)[None, None]           # (1, 1, N)
        yield utterance, torch.from_numpy(audio).to(device), torch.from_numpy(corpus.phones(utterance))


def to_label_frames(output: torch.Tensor, hop: int, num_frames: int, spec: AudioSpec,
                    utterance: Utterance) -> torch.Tensor:
    """(1, C, T) output with `hop` samples per step -> (C, num_frames): pooled to the label hop, last frames kept."""
    if spec.hop % hop:
        raise GimError(f"a module output with a step of {hop} samples cannot be pooled to the {spec.hop}-sample "
                         f"label frames")
    pooled = F.avg_pool1d(output, spec.hop // hop) if hop < spec.hop else output         # (1, C, T')
    if pooled.shape[2] < num_frames:
        raise GimError(f"{utterance.path}: {pooled.shape[2]} feature frames for {num_frames} phone labels")
    return pooled[0, :, pooled.shape[2] - num_frames:]
