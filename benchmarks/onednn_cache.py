"""Resident memory while whole utterances of new lengths pass through a frozen speech encoder on the CPU.

oneDNN keeps each convolution primitive it builds, scratchpad included, in a cache of
ONEDNN_PRIMITIVE_CACHE_CAPACITY entries (default 1024), keyed by the input's shape, so every new utterance length
adds one per convolution until the cache is full. The probes pass whole utterances (the cached protocol, and the
paper's phone probe), whose lengths all differ: this measures what that costs for an encoder of the given width.

    python3 benchmarks/onednn_cache.py [CHANNELS GRU_HIDDEN]     (default 512 256: the paper's encoder)
"""

from __future__ import annotations

import sys
from dataclasses import replace

import torch

from greedy_infomax.evaluation.speech_features import module_outputs
from greedy_infomax.tasks import PRESETS, prepare_modules
from greedy_infomax.tasks.audio import AudioModelConfig


def resident_mib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS"))


def main(channels: int = 512, hidden: int = 256, lengths: int = 300, seconds: float = 3.0) -> None:
    config = replace(PRESETS["paper-librispeech"], model=AudioModelConfig(channels=(channels,) * 5, gru_hidden=hidden))
    encode = module_outputs(prepare_modules(config, 1, torch.device("cpu"), with_optimizers=False))
    first = int(seconds * 16_000)
    encode(torch.randn(1, 1, first))
    print(f"{channels} channels, GRU {hidden}: {resident_mib()} MiB after one utterance", flush=True)
    for k in range(1, lengths + 1):
        encode(torch.randn(1, 1, first + 160 * k))  # a new length, 10 ms longer each time
        if k % 50 == 0:
            print(f"{k} more lengths: {resident_mib()} MiB", flush=True)


if __name__ == "__main__":
    main(*map(int, sys.argv[1:3]))
