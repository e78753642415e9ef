"""Frozen features of one module, for use outside the project: a feature extractor loaded from a run (images or
speech), and the features of a whole split as a NumPy (.npz) or safetensors file, with the labels when the split
has them.

The features are exactly those the probes fit (same loader, transform, batches and pooling), so a linear
classifier trained on the written arrays reproduces `gim probe`'s accuracy for that module.
"""
from __future__ import annotations

import io
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from greedy_infomax.config import AnyRunConfig, AudioRunConfig, RunConfig
from greedy_infomax.data import eval_loader, eval_transform, input_channels, load_speech, load_split
from greedy_infomax.data.librispeech import standardize
from greedy_infomax.data.loader import Batches
from greedy_infomax.data.spec import ImageSpec
from greedy_infomax.data.transforms import ImageTransform
from greedy_infomax.engines.local import load_trained, resolve_device
from greedy_infomax.errors import GimError
from greedy_infomax.evaluation.features import extract_features, module_features
from greedy_infomax.evaluation.speech_features import module_outputs, speech_features
from greedy_infomax.reporting.run_folder import RunFolder, check_writable, write_atomic


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
        return module_outputs(self.encoder)(x)[-1].transpose(1, 2)          # (B, D, frames) -> (B, frames, D)


def embed(modules: nn.ModuleList, loader: Batches, module: int, pool: int = 1) -> dict[str, np.ndarray]:
    """Module `module`'s (1-based) features of one epoch of the loader: "features" (N, D) float32, and "labels" (N,)
    when the loader has them."""
    _check_module(module, len(modules))
    features, labels = extract_features(modules[:module], loader, pool, f"module {module}")
    return {"features": features[-1].numpy()} | ({} if labels is None else {"labels": labels.numpy()})


def embed_run(run: RunFolder, module: int, role: str, config: AnyRunConfig | None = None) -> dict[str, np.ndarray]:
    """`embed` of the run's newest checkpoint on the split playing `role` ('pretrain', 'probe_train' or
    'probe_test') of the run's dataset, or of the dataset `config` names instead."""
    config = config or run.config
    device = resolve_device(config.train.device)
    if config.task == "audio":
        return _embed_speech(run, module, role, config, device)
    modules, spec = _trained_encoder(run, config, device)
    return embed(modules, eval_loader(config, role, device, spec), module, config.probe.pool)


def _embed_speech(run: RunFolder, module: int, role: str, config: AudioRunConfig,
                  device: torch.device) -> dict[str, np.ndarray]:
    """The speech probes' features of module `module` on the train split (roles 'pretrain', 'probe_train') or the
    test split: "speaker_features" (segments, D) with "speakers", and, when the corpus has phone alignments,
    "phone_features" (frames, D) with "phones"."""
    split = "test" if role == "probe_test" else "train"
    features = speech_features(module_outputs(_speech_encoder(run, config, module, device)),
                               config.model.module_hops()[:module],
                               load_speech(config.data), split, config.probe.phone_frames, device, f"module {module}")
    arrays = {"speaker_features": features.speaker[-1].numpy(), "speakers": features.speakers.numpy()}
    if features.phone is not None and features.phones is not None:
        arrays |= {"phone_features": features.phone[-1].numpy(), "phones": features.phones.numpy()}
    return arrays


def load_extractor(path: str | Path, module: int,
                   device: str = "cpu") -> FeatureExtractor | SpeechFeatureExtractor:
    """The feature extractor of module `module` of the run in `path` (its newest checkpoint), with the run's
    evaluation transform as `.transform`: `extractor(extractor.transform(x))` gives the (B, D) features of images
    of a vision run, or the (B, frames, D) features of waveforms (B, 1, samples) of an audio run."""
    run = RunFolder.open(Path(path))
    config = run.config
    if config.task == "audio":
        return SpeechFeatureExtractor(_speech_encoder(run, config, module, torch.device(device)),
                                      config.model.module_hops()[module - 1],
                                      partial(standardize, spec=load_speech(config.data).spec))
    modules, spec = _trained_encoder(run, config, torch.device(device))
    _check_module(module, len(modules))
    return FeatureExtractor(modules[:module], config.probe.pool, eval_transform(config.data, spec))


def _check_module(module: int, count: int) -> None:
    if not 1 <= module <= count:
        raise GimError(f"module: must be in 1..{count}, got {module}")


def _speech_encoder(run: RunFolder, config: AudioRunConfig, module: int, device: torch.device) -> nn.ModuleList:
    """Modules 1..`module` of an audio run's newest checkpoint."""
    modules, _ = load_trained(run, config, 1, device)
    _check_module(module, len(modules))
    return modules[:module]


def _trained_encoder(run: RunFolder, config: RunConfig, device: torch.device) -> tuple[nn.ModuleList, ImageSpec]:
    """The modules of a vision run's newest checkpoint, and the statistics the probes normalise every split with
    (those of the probe-training split)."""
    spec = load_split(config.data, "probe_train").spec
    modules, _ = load_trained(run, config, input_channels(config.data, spec), device)
    return modules, spec


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
        raise GimError("writing .safetensors needs the optional safetensors package (pip install safetensors); "
                       ".npz needs nothing") from error
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
