"""Probes on frozen features: a linear classifier (the paper's protocol) and a cosine kNN classifier."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

CHUNK = 1024
"""Test rows scored at a time: a chunk's scores, not the whole split's, are held at once."""

ROWS = 4096
"""Training rows converted to float32 at a time (for the standardisation statistics and the kNN's keys)."""


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int = 0,
) -> float:
    """Test accuracy of Linear(D, classes) trained with Adam and cross-entropy on standardised features.

    Standardising with the training mean and std is an affine change of the inputs, so the classifier is
    still linear in the features; it only makes one learning rate work for every module. Each batch is
    standardised (in float32, whatever dtype stores the features) as it is drawn, so the features are never
    held twice.
    """
    mean, std = column_mean_std(train_x)
    std += 1e-6
    generator = torch.Generator().manual_seed(seed)
    classifier = linear_classifier(train_x.shape[1], num_classes, seed)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    for _ in range(epochs):
        for index in torch.randperm(len(train_x), generator=generator).split(batch_size):
            loss = F.cross_entropy(classifier((train_x[index].float() - mean) / std), train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        scores = [classifier((chunk.float() - mean) / std) for chunk in test_x.split(CHUNK)]
        return accuracy(torch.cat(scores), test_y)


def column_mean_std(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each column's mean and (unbiased) std in float32, from ROWS rows at a time: no float32 copy of x."""
    chunks = x.split(ROWS)
    mean = (sum(chunk.sum(0, dtype=torch.float64) for chunk in chunks) / len(x)).float()
    squares = sum(((chunk.float() - mean) ** 2).sum(0, dtype=torch.float64) for chunk in chunks)
    return mean, (squares / max(len(x) - 1, 1)).sqrt().float()


def linear_classifier(features: int, num_classes: int, seed: int, xavier: bool = False) -> nn.Linear:
    """Linear(features, classes) initialised from `seed` alone, leaving the global generator as it was: PyTorch's
    default init, or with `xavier` Xavier-normal weights (the paper's phone probe; the bias keeps the default)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        classifier = nn.Linear(features, num_classes)
        if xavier:
            nn.init.xavier_normal_(classifier.weight)
    return classifier


def knn_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    k: int,
    temperature: float = 0.07,
    chunk: int = CHUNK,
) -> float:
    """Test accuracy of a k-nearest-neighbour vote under cosine similarity, weighted by exp(sim / T). The training
    rows are read `ROWS` at a time, each block normalised in float32 once and scored against every test chunk,
    its best k merged into each test row's running k best: no float32 copy of either split is made."""
    k = min(k, len(train_x))
    best = torch.full((len(test_x), k), -torch.inf)
    neighbour = torch.zeros(len(test_x), k, dtype=torch.long)
    for start in range(0, len(train_x), ROWS):
        keys = F.normalize(train_x[start : start + ROWS].float(), dim=1)
        for first in range(0, len(test_x), chunk):
            rows = slice(first, first + chunk)
            similarity = F.normalize(test_x[rows].float(), dim=1) @ keys.T
            top, index = similarity.topk(min(k, len(keys)), dim=1)
            candidates = torch.cat([best[rows], top], dim=1)
            best[rows], pick = candidates.topk(k, dim=1)
            neighbour[rows] = torch.cat([neighbour[rows], index + start], dim=1).gather(1, pick)
    weights, labels = (best / temperature).exp(), train_y[neighbour]
    votes = [  # a chunk's (rows, k, classes) one-hot labels at a time
        (F.one_hot(y, num_classes).float() * w[..., None]).sum(1)
        for y, w in zip(labels.split(chunk), weights.split(chunk))
    ]
    return accuracy(torch.cat(votes), test_y)


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    return (scores.argmax(1) == labels).float().mean().item()
