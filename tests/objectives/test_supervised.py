"""The supervised objective against a per-example loop (loss and accuracy), an analytic case, and its refusal of
unlabelled batches."""

from __future__ import annotations

import math

import pytest
import torch

from greedy_infomax.errors import GimError
from greedy_infomax.objectives.supervised import Supervised
from greedy_infomax.tasks.vision import OBJECTIVES


def reference(
    z: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """(loss, accuracy): loops over examples: average the positions, score every class, take -log of the label's
    softmax; right when the label scores highest."""
    z, weight, bias = z.double(), weight.double(), bias.double()
    terms, right = [], []
    for b in range(z.shape[0]):
        vector = z[b].reshape(z.shape[1], -1).mean(1)
        scores = weight @ vector + bias
        terms.append(torch.logsumexp(scores, 0) - scores[labels[b]])
        right.append(int(scores.argmax()) == int(labels[b]))
    return torch.stack(terms).mean(), sum(right) / len(right)


@pytest.mark.parametrize("shape", [(4, 3), (4, 3, 7), (2, 5, 3, 4)])
def test_matches_loop_reference(shape):
    torch.manual_seed(0)
    objective = Supervised(shape[1], num_classes=6)
    z, labels = torch.randn(shape), torch.randint(6, (shape[0],))
    expected, accuracy = reference(z, labels, objective.classifier.weight, objective.classifier.bias)
    assert torch.allclose(objective(z, labels).double(), expected, atol=1e-6)
    assert objective.metrics["accuracy"].item() == pytest.approx(accuracy)


def test_zero_classifier_scores_every_class_alike():
    """All scores equal: the softmax is uniform and the loss is log(classes), whatever z and the labels."""
    objective = Supervised(3, num_classes=10)
    torch.nn.init.zeros_(objective.classifier.weight)
    torch.nn.init.zeros_(objective.classifier.bias)
    loss = objective(torch.randn(5, 3, 2, 2), torch.randint(10, (5,)))
    assert loss.item() == pytest.approx(math.log(10))


def test_unlabelled_batch_is_refused_and_the_registry_names_it():
    with pytest.raises(GimError, match="needs labels"):
        Supervised(3, 2)(torch.randn(2, 3))
    assert OBJECTIVES["supervised"] is Supervised
