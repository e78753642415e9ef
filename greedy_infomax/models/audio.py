"""The CPC audio encoder: strided Conv1d layers on the raw waveform, then a GRU (paper, Sec. 4.2; CPC, Sec. 3.1).

Same surface as the vision model: `stages` (an nn.ModuleList, each mapping (B, C, T) -> (B, C', T')) and
`out_channels` (one per stage). Each conv + ReLU is a stage and the GRU is the last one; how the stages are
grouped into gradient-isolated modules is configuration (`audio_modules`, through models/split.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import accumulate

import torch
from torch import nn

from greedy_infomax.errors import GimError
from greedy_infomax.models.split import isolate, split


class GRUStage(nn.Module):
    """A 1-layer GRU over time as a stage: (B, C, T) -> (B, hidden, T), the hidden state at every step."""

    def __init__(self, in_channels: int, hidden: int) -> None:
        super().__init__()
        self.gru = nn.GRU(in_channels, hidden, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states, _ = self.gru(x.transpose(1, 2))  # (B, T, hidden)
        return states.transpose(1, 2)  # (B, hidden, T)


class AudioEncoder(nn.Module):
    """Conv1d + ReLU stages (no normalisation) on a (B, in_channels, samples) waveform, then a GRU stage.

    Defaults are the paper's: 512 channels, kernels 10/8/4/4/4, strides 5/4/2/2/2, paddings 2/2/2/2/1 (a hop
    of 160 samples: 20,480 samples -> 128 frames), then a GRU 512 -> 256.
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: tuple[int, ...] = (512, 512, 512, 512, 512),
        kernels: tuple[int, ...] = (10, 8, 4, 4, 4),
        strides: tuple[int, ...] = (5, 4, 2, 2, 2),
        paddings: tuple[int, ...] = (2, 2, 2, 2, 1),
        gru_hidden: int = 256,
    ) -> None:
        super().__init__()
        if not len(channels) == len(kernels) == len(strides) == len(paddings):
            raise ValueError(
                f"channels, kernels, strides and paddings need one entry per conv layer, got "
                f"{len(channels)}, {len(kernels)}, {len(strides)} and {len(paddings)}"
            )
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


def audio_modules(
    in_channels: int,
    objective: Callable[[int], nn.Module],
    *,
    window: int,
    label_hop: int,
    prediction_steps: int,
    channels: Sequence[int],
    kernels: Sequence[int],
    strides: Sequence[int],
    paddings: Sequence[int],
    gru_hidden: int,
    stages_per_module: Sequence[int],
    overlap: int = 0,
) -> nn.ModuleList:
    """The encoder's stages grouped by `stages_per_module`, each group with an identity readout and `objective` (a
    function of its output channels).

    (1, 1, 1, 1, 1, 1) is Greedy InfoMax's 6 modules (every conv alone, then the GRU alone on the detached conv
    output); (6,) is one end-to-end CPC module. The GRU is the last module's autoregressor: its output c is the
    module's output, and the objective predicts the conv features z_{t+k} entering it from c_t, as CPC does.
    The encoder must step by `label_hop` samples, and every module must output more than `prediction_steps` steps
    per `window`-sample training window.
    """
    encoder = AudioEncoder(in_channels, tuple(channels), tuple(kernels), tuple(strides), tuple(paddings), gru_hidden)
    _check_steps(encoder, stages_per_module, prediction_steps, window, label_hop)
    convs = nn.Sequential(*encoder.stages[:-1])  # child "i" is conv i + 1
    blocks = split(convs, after=[str(end - 1) for end in accumulate(stages_per_module)][:-1])
    sample = torch.zeros(1, in_channels, window)  # one training window (any length would do)
    return isolate(blocks, objective, sample, autoregressor=encoder.stages[-1], overlap=overlap)


def _check_steps(
    encoder: AudioEncoder, stages_per_module: Sequence[int], prediction_steps: int, window: int, label_hop: int
) -> None:
    """The encoder must step by the label hop (the probes pool every module to it), and every module must output
    more steps per training window than InfoNCE predicts ahead."""
    if encoder.hop != label_hop:
        raise GimError(
            f"model.strides: their product is {encoder.hop}, it must be the {label_hop}-sample hop of the phone labels"
        )
    steps = encoder.lengths(window)
    for index, end in enumerate(accumulate(stages_per_module), start=1):
        if steps[end - 1] <= prediction_steps:
            raise GimError(
                f"objective.prediction_steps: module {index} outputs {steps[end - 1]} steps per "
                f"{window}-sample window, fewer than the {prediction_steps + 1} that predicting "
                f"{prediction_steps} ahead needs"
            )
