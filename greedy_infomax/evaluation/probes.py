"""Probes on frozen features: a linear classifier (the paper's protocol) and a cosine kNN classifier."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

CHUNK = 1024
"""Test rows scored at a time: a chunk's scores, not the whole split's, are held at once."""


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
    standardised as it is drawn, so the features are never held twice.
    """
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    generator = torch.Generator().manual_seed(seed)
    classifier = linear_classifier(train_x.shape[1], num_classes, seed)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    for _ in range(epochs):
        for index in torch.randperm(len(train_x), generator=generator).split(batch_size):
            loss = F.cross_entropy(classifier((train_x[index] - mean) / std), train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        scores = [classifier((chunk - mean) / std) for chunk in test_x.split(CHUNK)]
        return accuracy(torch.cat(scores), test_y)


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
    features are scaled by their inverse norms after each product rather than normalised in a copy."""
    inverse_norms = 1 / torch.linalg.vector_norm(train_x, dim=1).clamp_min(1e-12)
    k = min(k, len(train_x))
    votes = []
    for queries in test_x.split(chunk):
        similarity = (F.normalize(queries, dim=1) @ train_x.T) * inverse_norms
        similarity, neighbour = similarity.topk(k, dim=1)  # (q, k)
        weights = (similarity / temperature).exp()
        one_hot = F.one_hot(train_y[neighbour], num_classes).float()  # (q, k, classes)
        votes.append((one_hot * weights[..., None]).sum(1))
    return accuracy(torch.cat(votes), test_y)


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    return (scores.argmax(1) == labels).float().mean().item()
