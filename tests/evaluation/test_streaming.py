"""Streaming probes: one optimiser step per stream item, every classifier on its own output's raw features, the
paper's Xavier-normal init, and one-line errors for empty streams."""

from __future__ import annotations

import math

import pytest
import torch

from greedy_infomax.errors import GimError
from greedy_infomax.evaluation import streaming
from greedy_infomax.evaluation.probes import linear_classifier


def _steps(count: int, seed: int, offset: float = 100.0) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
    """`count` steps of two outputs (3 and 5 features, far from standardised: `offset` plus noise of std 10);
    labels 0..2 are the first output's first feature, a one-hot code in the next two."""
    generator = torch.Generator().manual_seed(seed)
    steps = []
    for _ in range(count):
        labels = torch.randint(3, (8,), generator=generator)
        first = torch.stack([offset + 10 * labels, 10.0 * (labels == 1), 10.0 * (labels == 2)], 1).float()
        steps.append(([first, offset + 10 * torch.randn(8, 5, generator=generator)], labels))
    return steps


def test_each_classifier_sees_its_outputs_raw_features_and_steps_once_per_item(monkeypatch):
    train, test = _steps(3, seed=0), _steps(2, seed=1)
    seen: list[list[torch.Tensor]] = []
    steps = []

    def recording(features: int, num_classes: int, seed: int, xavier: bool = False) -> torch.nn.Linear:
        classifier = linear_classifier(features, num_classes, seed, xavier)
        inputs: list[torch.Tensor] = []
        seen.append(inputs)
        classifier.register_forward_pre_hook(lambda module, args: inputs.append(args[0].clone()))
        classifier.weight.register_post_accumulate_grad_hook(lambda weight: steps.append(len(seen)))
        return classifier

    monkeypatch.setattr(streaming, "linear_classifier", recording)
    results = streaming.fit_streaming(lambda epoch: train, lambda epoch: test, 3, epochs=2, lr=1e-2, seed=0)
    assert [features for features, _ in results] == [3, 5]
    assert len(steps) == 2 * 2 * 3, "2 epochs of 3 items, one backward per item and classifier"
    for output, inputs in enumerate(seen):
        expected = [features[output] for features, _ in 2 * train + test]
        assert len(inputs) == len(expected)
        assert all(torch.equal(x, y) for x, y in zip(inputs, expected, strict=True)), "raw, not standardised"


def test_a_separable_raw_feature_is_learnt_and_scored_on_the_test_stream():
    train, test = _steps(10, seed=0, offset=0.0), _steps(5, seed=1, offset=0.0)
    [(_, first), (_, second)] = streaming.fit_streaming(
        lambda epoch: train, lambda epoch: test, 3, epochs=10, lr=0.1, seed=0
    )
    assert first == 1.0 and second < 0.7


def test_xavier_init_draws_normal_weights_with_the_xavier_spread():
    """Xavier-normal std is sqrt(2 / (fan_in + fan_out)); PyTorch's default draws uniformly within
    1/sqrt(fan_in), which a normal draw of that spread leaves with hundreds of its 10k weights."""
    fan_in, fan_out = 256, 41
    xavier = linear_classifier(fan_in, fan_out, seed=3, xavier=True)
    default = linear_classifier(fan_in, fan_out, seed=3)
    bound = 1 / math.sqrt(fan_in)
    assert default.weight.abs().max() <= bound
    assert (xavier.weight.abs() > bound).sum() > 100
    assert xavier.weight.std().item() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.05)
    assert torch.equal(xavier.bias, default.bias), "the bias keeps the default init"
    assert torch.equal(xavier.weight, linear_classifier(fan_in, fan_out, seed=3, xavier=True).weight)


def test_a_probe_without_training_or_test_items_is_one_line():
    with pytest.raises(GimError, match="no step to fit"):
        streaming.fit_streaming(lambda epoch: [], lambda epoch: _steps(1, 0), 3, epochs=2, lr=1e-3, seed=0)
    with pytest.raises(GimError, match="no test items"):
        streaming.fit_streaming(lambda epoch: _steps(1, 0), lambda epoch: [], 3, epochs=1, lr=1e-3, seed=0)


def test_non_finite_features_name_the_module():
    bad = [([torch.ones(2, 3), torch.full((2, 5), float("nan"))], torch.zeros(2, dtype=torch.int64))]
    with pytest.raises(GimError, match="module 2 gives non-finite features"):
        streaming.fit_streaming(lambda epoch: bad, lambda epoch: bad, 3, epochs=1, lr=1e-3, seed=0)
