"""Probes on frozen features: a linear classifier (the paper's protocol) and a cosine kNN classifier."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


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
    still linear in the features; it only makes one learning rate work for every module.
    """
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    generator = torch.Generator().manual_seed(seed)
    classifier = linear_classifier(train_x.shape[1], num_classes, seed)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    for _ in range(epochs):
        for index in torch.randperm(len(train_x), generator=generator).split(batch_size):
            loss = F.cross_entropy(classifier(train_x[index]), train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return accuracy(classifier(test_x), test_y)


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
    chunk: int = 1024,
) -> float:
    """Test accuracy of a k-nearest-neighbour vote under cosine similarity, weighted by exp(sim / T)."""
    train_x, test_x = F.normalize(train_x, dim=1), F.normalize(test_x, dim=1)
    k = min(k, len(train_x))
    votes = []
    for queries in test_x.split(chunk):
        similarity, neighbour = (queries @ train_x.T).topk(k, dim=1)  # (q, k)
        weights = (similarity / temperature).exp()
        one_hot = F.one_hot(train_y[neighbour], num_classes).float()  # (q, k, classes)
        votes.append((one_hot * weights[..., None]).sum(1))
    return accuracy(torch.cat(votes), test_y)


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    return (scores.argmax(1) == labels).float().mean().item()
