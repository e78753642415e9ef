"""The CPC audio encoder: strided Conv1d layers on the raw waveform, then a GRU (paper, Sec. 4.2; CPC, Sec. 3.1).

Same surface as the vision model: `stages` (an nn.ModuleList, each mapping (B, C, T) -> (B, C', T')) and
`out_channels` (one per stage). Each conv + ReLU is a stage and the GRU is the last one; how the stages are
grouped into gradient-isolated modules is configuration (`build_modules`, through models/split.py).
"""
from __future__ import annotations

import math
from functools import partial
from itertools import accumulate

import torch
from torch import nn

from greedy_infomax.config import AudioRunConfig
from greedy_infomax.data.librispeech import AudioSpec
from greedy_infomax.errors import GimError
from greedy_infomax.models.split import isolate, split
from greedy_infomax.objectives import OBJECTIVES


class GRUStage(nn.Module):
    """A 1-layer GRU over time as a stage: (B, C, T) -> (B, hidden, T), the hidden state at every step."""

    def __init__(self, in_channels: int, hidden: int) -> None:
        super().__init__()
        self.gru = nn.GRU(in_channels, hidden, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states, _ = self.gru(x.transpose(1, 2))                                 # (B, T, hidden)
        return states.transpose(1, 2)                                           # (B, hidden, T)


class AudioEncoder(nn.Module):
    """Conv1d + ReLU stages (no normalisation) on a (B, in_channels, samples) waveform, then a GRU stage.

    Defaults are the paper's: 512 channels, kernels 10/8/4/4/4, strides 5/4/2/2/2, paddings 2/2/2/2/1 (a hop
    of 160 samples: 20,480 samples -> 128 frames), then a GRU 512 -> 256.
    """

    def __init__(self, in_channels: int = 1, channels: tuple[int, ...] = (512, 512, 512, 512, 512),
                 kernels: tuple[int, ...] = (10, 8, 4, 4, 4), strides: tuple[int, ...] = (5, 4, 2, 2, 2),
                 paddings: tuple[int, ...] = (2, 2, 2, 2, 1), gru_hidden: int = 256) -> None:
        super().__init__()
        if not len(channels) == len(kernels) == len(strides) == len(paddings):
            raise ValueError(f"channels, kernels, strides and paddings need one entry per conv layer, got "
                             f"{len(channels)}, {len(kernels)}, {len(strides)} and {len(paddings)}")
        self.kernels, self.strides, self.paddings = tuple(kernels), tuple(strides), tuple(paddings)
        self.stages = nn.ModuleList()
        self.out_channels: list[int] = []
        previous = in_channels
        for width, kernel, stride, padding in zip(channels, kernels, strides, paddings):
            self.stages.append(nn.Sequential(nn.Conv1d(previous, width, kernel, stride, padding), nn.ReLU()))
            self.out_channels.append(width)
            previous = width
        self.stages.append(GRUStage(previous, gru_hidden))
        self.out_channels.append(gru_hidden)

    @property
    def hop(self) -> int:
        """Input samples per output frame: the product of the strides."""
        return math.prod(self.strides)

    def lengths(self, samples: int) -> list[int]:
        """Time steps T after each stage for an input of `samples` samples (the GRU keeps the length)."""
        lengths = []
        for kernel, stride, padding in zip(self.kernels, self.strides, self.paddings):
            samples = (samples + 2 * padding - kernel) // stride + 1
            lengths.append(samples)
        return lengths + [samples]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x


def build_modules(config: AudioRunConfig, in_channels: int = 1) -> nn.ModuleList:
    """The encoder's stages grouped by `model.stages_per_module`, each group with an identity readout and InfoNCE1d.

    (1, 1, 1, 1, 1, 1) is Greedy InfoMax's 6 modules (every conv alone, then the GRU alone on the detached conv
    output); (6,) is one end-to-end CPC module. The GRU is the last module's autoregressor: its output c is the
    module's output, and the objective predicts the conv features z_{t+k} entering it from c_t, as CPC does.
    `subsample` only acts on sequences longer than `subsample_window` steps (in the paper's encoder: conv 1-4).
    """
    m, o = config.model, config.objective
    encoder = AudioEncoder(in_channels, m.channels, m.kernels, m.strides, m.paddings, m.gru_hidden)
    _check_steps(encoder, m.stages_per_module, o.prediction_steps if o.name == "infonce_1d" else 0)
    convs = nn.Sequential(*encoder.stages[:-1])                       # child "i" is conv i + 1
    blocks = split(convs, after=[str(end - 1) for end in accumulate(m.stages_per_module)][:-1])
    options = ({"num_speakers": o.num_speakers, "num_phones": o.num_phones} if o.name == "supervised" else
               {"prediction_steps": o.prediction_steps, "num_negatives": o.num_negatives, "subsample": o.subsample,
                "subsample_window": o.subsample_window, "negative_groups": o.negative_groups})
    objective = partial(OBJECTIVES["audio"][o.name], **options)
    sample = torch.zeros(1, in_channels, AudioSpec.window)           # one training window (any length would do)
    return isolate(blocks, objective, sample, autoregressor=encoder.stages[-1])


def _check_steps(encoder: AudioEncoder, stages_per_module: tuple[int, ...], prediction_steps: int) -> None:
    """The encoder must step by the label hop (the probes pool every module to it), and every module must output
    more steps per training window than InfoNCE predicts ahead."""
    if encoder.hop != AudioSpec.hop:
        raise GimError(f"model.strides: their product is {encoder.hop}, it must be the {AudioSpec.hop}-sample hop "
                       f"of the phone labels")
    steps = encoder.lengths(AudioSpec.window)
    for index, end in enumerate(accumulate(stages_per_module), start=1):
        if steps[end - 1] <= prediction_steps:
            raise GimError(f"objective.prediction_steps: module {index} outputs {steps[end - 1]} steps per "
                           f"{AudioSpec.window}-sample window, fewer than the {prediction_steps + 1} that predicting "
                           f"{prediction_steps} ahead needs")
