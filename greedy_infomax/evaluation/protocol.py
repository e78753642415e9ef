"""The probe protocol of a vision run: every module of the trained encoder, next to a random encoder and raw pixels
(speech runs: speech_protocol.py).

Features are extracted once per encoder (all modules in one pass, centre-crop evaluation transform) and
reused by the linear and kNN probes; the encoder's parameters are hashed before and after to prove that
probing left them unchanged.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from greedy_infomax.config import AnyRunConfig, RunConfig
from greedy_infomax.data import load_split
from greedy_infomax.data.loader import BatchLoader
from greedy_infomax.data.transforms import ImageTransform
from greedy_infomax.engines.local import prepare_modules, resolve_device
from greedy_infomax.evaluation.features import extract_features, fingerprint, raw_pixel_features
from greedy_infomax.evaluation.probes import knn_probe, linear_probe
from greedy_infomax.evaluation.speech_protocol import probe_speech_run
from greedy_infomax.reporting.run_folder import RunFolder


def probe_run(run: RunFolder, config: AnyRunConfig | None = None) -> dict[str, Any]:
    """Probe every module of the run's newest checkpoint; `config` may override the run's probe options."""
    config = config or run.config
    if config.task == "audio":
        return probe_speech_run(run, config)
    device = resolve_device(config.train.device)
    train_loader, test_loader = _probe_loaders(config, device)
    in_channels = 1 if config.data.grayscale else train_loader.array.spec.channels
    trained = prepare_modules(config, in_channels, device, with_optimizers=False)
    progress = run.load_checkpoint(trained, with_optimizers=False)
    results: dict[str, Any] = {
        "dataset": config.data.dataset,
        "method": "end-to-end" if config.model.num_modules == 1 else f"GIM ({config.model.num_modules} modules)",
        "features": f"each module's patch grid average-pooled to {config.probe.pool}x{config.probe.pool} cells",
        "train_images": len(train_loader.array),
        "test_images": len(test_loader.array),
        "step": progress["step"],
        "probes": ["linear", "knn"] if config.probe.knn_k > 0 else ["linear"],
        "trained": _probe_encoder(trained, train_loader, test_loader, config, "trained"),
    }
    if config.probe.random_init:
        random_config = replace(config, train=replace(config.train, seed=config.train.seed + 1))
        random_encoder = prepare_modules(random_config, in_channels, device, with_optimizers=False)
        results["random"] = _probe_encoder(random_encoder, train_loader, test_loader, config, "random init")
    if config.probe.raw_pixels:
        raw = _probe_features(raw_pixel_features(train_loader), raw_pixel_features(test_loader), config,
                              train_loader.array.spec.num_classes, knn=False)
        results["baseline"] = {"name": "raw pixels", **raw}
    return results


def _probe_loaders(config: RunConfig, device: torch.device) -> tuple[BatchLoader, BatchLoader]:
    train, test = load_split(config.data, "probe_train"), load_split(config.data, "probe_test")
    transform = ImageTransform.for_data(config.data.crop, False, config.data.grayscale, train.spec)
    batch = 2 * config.data.batch_size  # small batches keep activations in cache; forward-only is cheap
    return BatchLoader(train, batch, transform, device), BatchLoader(test, batch, transform, device)


def _probe_encoder(modules: nn.ModuleList, train_loader: BatchLoader, test_loader: BatchLoader,
                   config: RunConfig, name: str) -> list[dict[str, Any]]:
    classes = train_loader.array.spec.num_classes
    before = fingerprint(modules)
    train_features, train_labels = extract_features(modules, train_loader, config.probe.pool, f"{name}: train")
    test_features, test_labels = extract_features(modules, test_loader, config.probe.pool, f"{name}: test")
    if fingerprint(modules) != before:
        raise RuntimeError(f"probing changed the {name} encoder's parameters")
    return [
        {"module": index, **_probe_features((train, train_labels), (test, test_labels), config, classes)}
        for index, (train, test) in enumerate(zip(train_features, test_features), start=1)
    ]


def _probe_features(train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
                    config: RunConfig, num_classes: int, knn: bool = True) -> dict[str, Any]:
    p = config.probe
    result = {"features": train[0].shape[1],
              "linear": linear_probe(*train, *test, num_classes, p.epochs, p.lr, p.batch_size, seed=config.train.seed)}
    if knn and p.knn_k > 0:
        result["knn"] = knn_probe(*train, *test, num_classes, p.knn_k)
    return result
