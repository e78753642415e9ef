"""Run the original Greedy InfoMax's training entry point (loeweX/Greedy_InfoMax) unchanged, timing its steps.

Started by benchmarks/side_by_side.py with the original's own Python environment (torch, torchvision 0.2.1,
matplotlib, scikit-learn, seaborn, soundfile), never with ours. Usage:

    python side_by_side_original.py ORIGINAL_ROOT STEPS STAMPS_FILE MODULE [the module's own options...]

MODULE is `GreedyInfoMax.vision.main_vision` or `GreedyInfoMax.audio.main_audio`, run as `python -m MODULE` runs
it. Before that, four stand-ins let the 2019 code run on today's libraries, none touching its models, losses,
loaders or loop:
- `PIL.PILLOW_VERSION`, which torchvision 0.2.1 imports and Pillow 7 removed;
- `numpy.int`, which its t-SNE plot uses and NumPy 1.24 removed;
- torchvision's STL-10 md5 check, which generated files cannot pass;
- `torchaudio.load(path, normalization=False)`: the 2019 torchaudio read 16-bit FLAC through sox as int32-scaled
  floats (a 16-bit sample times 65536), which the original's standardisation constants assume; today's torchaudio
  has neither that argument nor a build for this torch. soundfile (libFLAC, as sox) reads the same values.

Timing: every return of `torch.optim.Adam.step` (the original steps one Adam over all modules once per batch)
appends a `time.monotonic()` stamp to STAMPS_FILE; after STEPS of them the process exits at once, so the run's
epoch-end checkpoint, loss plot and later t-SNE plots are never reached. Stamps are written and flushed one per
line, so a run killed early still leaves the steps it made.
"""

from __future__ import annotations

import os
import runpy
import sys
import time
import types


def stand_ins() -> None:
    import numpy as np
    import PIL

    PIL.PILLOW_VERSION = getattr(PIL, "PILLOW_VERSION", PIL.__version__)
    if not hasattr(np, "int"):
        np.int = int
    from torchvision.datasets import STL10

    STL10._check_integrity = lambda self: True
    sys.modules["torchaudio"] = old_torchaudio()


def old_torchaudio() -> types.ModuleType:
    import soundfile
    import torch

    def load(path: str, normalization: bool = True) -> tuple[torch.Tensor, int]:
        samples, rate = soundfile.read(path, dtype="int32", always_2d=True)  # (N, channels), 16-bit << 16
        audio = torch.from_numpy(samples.T.astype("float32"))  # (channels, N)
        return (audio / 2**31 if normalization else audio), rate

    module = types.ModuleType("torchaudio")
    module.load = load
    return module


def time_steps(steps: int, stamps_path: str) -> None:
    import torch

    stamps = open(stamps_path, "a", buffering=1)
    step = torch.optim.Adam.step
    count = 0

    def timed_step(self, *args, **kwargs):
        nonlocal count
        result = step(self, *args, **kwargs)
        count += 1
        stamps.write(f"{time.monotonic():.6f}\n")
        if count >= steps:
            stamps.flush()
            os._exit(0)
        return result

    torch.optim.Adam.step = timed_step


def main() -> None:
    root, steps, stamps_path, module, *options = sys.argv[1:]
    sys.path.insert(0, root)
    stand_ins()
    time_steps(int(steps), stamps_path)
    sys.argv = [module, *options]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
