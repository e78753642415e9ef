"""Frozen features of one module, for use outside the project: a feature extractor loaded from a run (images or
speech), and the features of a whole split as a NumPy (.npz) or safetensors file, with the labels when the split
has them.

The features are exactly those the probes fit (same loader, transform, batches and pooling), so a linear
classifier trained on the written arrays reproduces `gim probe`'s accuracy for that module.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from greedy_infomax.data.torch_data import Data, as_batches
from greedy_infomax.data.transforms import ImageTransform
from greedy_infomax.errors import GimError
from greedy_infomax.evaluation.features import extract_features, module_features
from greedy_infomax.evaluation.speech_features import module_outputs
from greedy_infomax.reporting.run_folder import check_writable, write_atomic


class FeatureExtractor(nn.Module):
    """Modules 1..k of a trained encoder, frozen: an encoder input batch -> module k's (B, D) pooled features."""

    def __init__(self, modules: nn.ModuleList, pool: int, transform: ImageTransform | None = None) -> None:
        super().__init__()
        self.encoder = modules.requires_grad_(False)
        self.pool = pool
        self.transform = transform
        """The run's evaluation transform, uint8 (B, C, H, W) images -> encoder input; None for custom modules."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return module_features(self.encoder, x, self.pool)[-1]


class SpeechFeatureExtractor(nn.Module):
    """Modules 1..k of a trained speech encoder, frozen: standardised waveforms (B, 1, samples) -> module k's
    per-frame features (B, frames, D).

    A frame is one step of module k's output (the GRU's, for a module ending in it), `hop` input samples after the
    one before, and D is that output's channels: the frames that `gim embed` pools to the 10 ms phone labels and
    averages over 1.28 s segments for the speaker probe.
    """

    def __init__(self, modules: nn.ModuleList, hop: int, transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.encoder = modules.requires_grad_(False)
        self.hop = hop
        self.transform = transform
        """The run's standardisation: float waveforms in [-1, 1] (B, 1, samples) -> encoder input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return module_outputs(self.encoder)(x)[-1].transpose(1, 2)  # (B, D, frames) -> (B, frames, D)


def embed(
    modules: nn.ModuleList, loader: Data, module: int, pool: int = 1, batch_size: int = 256
) -> dict[str, np.ndarray]:
    """Module `module`'s (1-based) features of one epoch of the loader: "features" (N, D) float32, and "labels" (N,)
    when the loader has them. The loader may also be a map-style torch Dataset, read in order in batches of
    `batch_size`, or a DataLoader."""
    check_module(module, len(modules))
    loader = as_batches(loader, batch_size, next(modules.parameters()).device)
    features, labels = extract_features(modules[:module], loader, pool, f"module {module}")
    return {"features": features[-1].numpy()} | ({} if labels is None else {"labels": labels.numpy()})


def check_module(module: int, count: int) -> None:
    """A 1-based module number must name one of the encoder's modules."""
    if not 1 <= module <= count:
        raise GimError(f"module: must be in 1..{count}, got {module}")


Encode = Callable[[dict[str, np.ndarray]], bytes]


def _npz() -> Encode:
    """NumPy's archive of .npy arrays: `np.load(path)["features"]`."""

    def encode(arrays: dict[str, np.ndarray]) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    return encode


def _safetensors() -> Encode:
    """The safetensors format, through the optional `safetensors` package."""
    try:
        from safetensors.numpy import save
    except ImportError as error:
        raise GimError(
            "writing .safetensors needs the optional safetensors package (pip install safetensors); .npz needs nothing"
        ) from error
    return lambda arrays: save({name: np.ascontiguousarray(array) for name, array in arrays.items()})


FORMATS: dict[str, Callable[[], Encode]] = {".npz": _npz, ".safetensors": _safetensors}
"""File suffix -> the encoder of that format (whose missing package fails at once, before any work is done)."""


def array_writer(path: Path) -> Callable[[dict[str, np.ndarray]], Path]:
    """A function that writes named arrays to `path` atomically, in the format of its suffix."""
    if path.suffix not in FORMATS:
        raise GimError(f"{path}: unknown format {path.suffix!r}; choose one of: {', '.join(FORMATS)}")
    encode = FORMATS[path.suffix]()
    check_writable(path, "embedded")  # now, not after the work

    def write(arrays: dict[str, np.ndarray]) -> Path:
        write_atomic(path, encode(arrays))
        return path

    return write
