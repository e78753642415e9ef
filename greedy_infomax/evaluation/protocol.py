"""The probe protocol of a vision run: every module of the trained encoder, next to a random encoder and raw pixels
(speech runs: speech_protocol.py).

Features are extracted once per encoder (all modules in one pass, centre-crop evaluation transform, plus
`probe.augmented_views` views of each training image under the training transform) and reused by the linear and
kNN probes; the encoder's parameters are hashed before and after to prove that probing left them unchanged.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from greedy_infomax.config import AnyRunConfig, ProbeConfig, RunConfig
from greedy_infomax.data import eval_loader, input_channels
from greedy_infomax.data.loader import BatchLoader, Batches
from greedy_infomax.engines.local import resolve_device
from greedy_infomax.evaluation.encoders import left_unchanged, probed_encoder, probed_method, random_encoder
from greedy_infomax.evaluation.features import extract_features, raw_pixel_features
from greedy_infomax.evaluation.probes import knn_probe, linear_probe
from greedy_infomax.evaluation.speech_protocol import probe_speech_run
from greedy_infomax.reporting.run_folder import RunFolder


def probe_run(run: RunFolder, config: AnyRunConfig | None = None) -> dict[str, Any]:
    """Probe every module of the run's newest checkpoint; `config` may override the run's probe options."""
    config = config or run.config
    if config.task == "audio":
        return probe_speech_run(run, config)
    device = resolve_device(config.train.device)
    train_loader = eval_loader(config, "probe_train", device)
    test_loader = eval_loader(config, "probe_test", device, train_loader.array.spec)
    augmented = _augmented(train_loader, config)
    in_channels = input_channels(config.data, train_loader.array.spec)
    trained, config, progress = probed_encoder(run, config, in_channels, device)
    classes = train_loader.array.spec.num_classes
    results: dict[str, Any] = {
        "dataset": config.data.dataset,
        "method": probed_method(run, config),
        "features": _features(config.probe),
        "train_images": len(train_loader.array),
        "test_images": len(test_loader.array),
        "step": progress["step"],
        "probes": ["linear", "knn"] if config.probe.knn_k > 0 else ["linear"],
        "trained": probe_modules(trained, train_loader, test_loader, config.probe, classes, config.train.seed,
                                 "trained", augmented),
    }
    if config.probe.random_init:
        results["random"] = probe_modules(random_encoder(config, in_channels, device), train_loader, test_loader,
                                          config.probe, classes, config.train.seed, "random init", augmented)
    if config.probe.raw_pixels:
        raw = _probe_features(raw_pixel_features(train_loader), raw_pixel_features(test_loader), config.probe,
                              classes, config.train.seed, knn=False)
        results["baseline"] = {"name": "raw pixels", **raw}
    return results


def _augmented(loader: BatchLoader, config: RunConfig) -> BatchLoader:
    """The loader's images under pre-training's random crop and flip, normalised alike; epoch e is view e, with
    its own seeded order and draws (the last incomplete batch left out, as in training)."""
    transform = replace(loader.transform, flip=config.data.flip)
    return BatchLoader(loader.array, loader.batch_size, transform, loader.device, seed=config.train.seed)


def _features(options: ProbeConfig) -> str:
    pooled = f"each module's patch grid average-pooled to {options.pool}x{options.pool} cells"
    views = options.augmented_views
    return pooled + (f"; fitted on centre crops and {views} augmented views of each image" if views else "")


def probe_modules(modules: nn.ModuleList, train_loader: Batches, test_loader: Batches, options: ProbeConfig,
                  num_classes: int, seed: int = 0, name: str = "encoder",
                  augmented: Batches | None = None) -> list[dict[str, Any]]:
    """Linear (and kNN) probe of every module, fitted on the training loader's features (and on epochs
    0..`options.augmented_views`-1 of `augmented`, the training images under the training transform) and tested
    on the test loader's; fails if extracting features changed any parameter."""
    if options.augmented_views and augmented is None:
        raise ValueError("probe.augmented_views needs the augmented loader of the training images")
    with left_unchanged(modules, name):
        train_features, train_labels = extract_features(modules, train_loader, options.pool, f"{name}: train")
        for view in range(options.augmented_views):
            features, labels = extract_features(modules, augmented, options.pool, f"{name}: view {view + 1}", view)
            train_features = [torch.cat(pair) for pair in zip(train_features, features)]
            train_labels = torch.cat([train_labels, labels])
        test_features, test_labels = extract_features(modules, test_loader, options.pool, f"{name}: test")
    return [
        {"module": index, **_probe_features((train, train_labels), (test, test_labels), options, num_classes, seed)}
        for index, (train, test) in enumerate(zip(train_features, test_features), start=1)
    ]


def _probe_features(train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
                    options: ProbeConfig, num_classes: int, seed: int, knn: bool = True) -> dict[str, Any]:
    linear = linear_probe(*train, *test, num_classes, options.epochs, options.lr, options.batch_size, seed=seed)
    result = {"features": train[0].shape[1], "linear": linear}
    if knn and options.knn_k > 0:
        result["knn"] = knn_probe(*train, *test, num_classes, options.knn_k)
    return result
