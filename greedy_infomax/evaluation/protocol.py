"""Linear and kNN probes of every module of any encoder on labelled loaders of its inputs: features extracted once
per split (all modules in one pass) and reused by both probes; the encoder's parameters are hashed before and
after to prove that probing left them unchanged."""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from greedy_infomax.data.torch_data import Data, as_batches
from greedy_infomax.evaluation.features import FeatureRows, extract_features, left_unchanged, rows_of
from greedy_infomax.evaluation.probes import knn_probe, linear_probe


class ProbeOptions(Protocol):
    """What the probes read of a probe config (a vision run's `probe` section has these fields)."""

    pool: int
    epochs: int
    lr: float
    batch_size: int
    knn_k: int
    augmented_views: int
    feature_dtype: str  # how the cached features are stored: "bfloat16" or "float32"


def probe_modules(
    modules: nn.ModuleList,
    train_loader: Data,
    test_loader: Data,
    options: ProbeOptions,
    num_classes: int,
    seed: int = 0,
    name: str = "encoder",
    augmented: Data | None = None,
) -> list[dict[str, Any]]:
    """Linear (and kNN) probe of every module, fitted on the training loader's features (and on epochs
    0..`options.augmented_views`-1 of `augmented`, the training images under the training transform) and tested
    on the test loader's; fails if extracting features changed any parameter. Each loader may also be a map-style
    torch Dataset (read in batches of `options.batch_size`; `augmented` shuffled by `seed`) or a DataLoader."""
    if options.augmented_views and augmented is None:
        raise ValueError("probe.augmented_views needs the augmented loader of the training images")
    device = next(modules.parameters()).device
    train_loader, test_loader = (as_batches(data, options.batch_size, device) for data in (train_loader, test_loader))
    augmented = None if augmented is None else as_batches(augmented, options.batch_size, device, seed)
    views, dtype = options.augmented_views, getattr(torch, options.feature_dtype)
    rows = FeatureRows(rows_of(train_loader) + (views and views * rows_of(augmented)), dtype)
    with left_unchanged(modules, name):
        train_features, train_labels = extract_features(modules, train_loader, options.pool, f"{name}: train", 0, rows)
        for view in range(views):
            description = f"{name}: view {view + 1}"
            train_features, train_labels = extract_features(modules, augmented, options.pool, description, view, rows)
        test_rows = FeatureRows(rows_of(test_loader), dtype)
        test_features, test_labels = extract_features(modules, test_loader, options.pool, f"{name}: test", 0, test_rows)
    return [
        {"module": index, **probe_features((train, train_labels), (test, test_labels), options, num_classes, seed)}
        for index, (train, test) in enumerate(zip(train_features, test_features), start=1)
    ]


def probe_features(
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    options: ProbeOptions,
    num_classes: int,
    seed: int,
    knn: bool = True,
) -> dict[str, Any]:
    linear = linear_probe(*train, *test, num_classes, options.epochs, options.lr, options.batch_size, seed=seed)
    result = {"features": train[0].shape[1], "linear": linear}
    if knn and options.knn_k > 0:
        result["knn"] = knn_probe(*train, *test, num_classes, options.knn_k)
    return result
