"""The speech supervised objective against a loop over examples and frames (loss and each classifier's
accuracy)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from greedy_infomax.errors import GimError
from greedy_infomax.objectives.speech_supervised import SpeechSupervised


def reference_loss(h: torch.Tensor, speakers, phones, objective: SpeechSupervised) -> torch.Tensor:
    """Speaker CE of each example's time average; phone CE of each labelled frame's average of its steps."""
    B, _, T = h.shape
    frames = phones.shape[1]
    speaker_terms, phone_terms = [], []
    for b in range(B):
        speaker_terms.append(F.cross_entropy(objective.speaker(h[b].mean(1)), speakers[b]))
        for f in range(frames):
            if phones[b, f] >= 0:
                steps = h[b, :, f * T // frames : -(-(f + 1) * T // frames)]  # adaptive bins
                phone_terms.append(F.cross_entropy(objective.phone(steps.mean(1)), phones[b, f]))
    return torch.stack(speaker_terms).mean() + torch.stack(phone_terms).mean()


@pytest.mark.parametrize("steps", [8, 31])
def test_matches_loop_reference(steps):
    torch.manual_seed(0)
    objective = SpeechSupervised(5, num_speakers=3, num_phones=4)
    h = torch.randn(2, 5, steps)
    speakers, phones = torch.tensor([0, 2]), torch.tensor([[1, 3, -1, 0], [2, -1, -1, 1]])
    expected = reference_loss(h, speakers, phones, objective)
    torch.testing.assert_close(objective(h, (speakers, phones)), expected)
    speaker_right = [int(objective.speaker(h[b].mean(1)).argmax()) == int(speakers[b]) for b in range(2)]
    frames = F.adaptive_avg_pool1d(h, 4).transpose(1, 2)
    phone_right = [
        int(objective.phone(frames[b, f]).argmax()) == int(phones[b, f])
        for b in range(2)
        for f in range(4)
        if phones[b, f] >= 0
    ]
    assert {name: value.item() for name, value in objective.metrics.items()} == pytest.approx(
        {"speaker_accuracy": sum(speaker_right) / 2, "phone_accuracy": sum(phone_right) / len(phone_right)}
    )


def test_reads_the_context_when_the_module_has_one():
    objective = SpeechSupervised(5, num_speakers=3, num_phones=4, context_channels=2)
    labels = (torch.tensor([1]), torch.tensor([[0, 1]]))
    context = torch.randn(1, 2, 4)
    assert objective(torch.randn(1, 5, 4), labels, context=context) == objective(
        torch.zeros(1, 5, 4), labels, context=context
    )


def test_refuses_speaker_labels_alone():
    with pytest.raises(GimError, match="phones=True"):
        SpeechSupervised(5, 3, 4)(torch.randn(2, 5, 8), torch.tensor([0, 1]))


def test_separate_speaker_and_phone_models_train_one_term_each():
    """The original code's two baselines: each model has only its own classifier, and the joint loss is their sum."""
    torch.manual_seed(0)
    h = torch.randn(2, 5, 8)
    speakers, phones = torch.tensor([0, 2]), torch.tensor([[1, 3, -1, 0], [2, -1, -1, 1]])
    both = SpeechSupervised(5, num_speakers=3, num_phones=4)
    speaker = SpeechSupervised(5, num_speakers=3, num_phones=4, targets="speaker")
    phone = SpeechSupervised(5, num_speakers=3, num_phones=4, targets="phone")
    assert speaker.phone is None and phone.speaker is None
    speaker.speaker.load_state_dict(both.speaker.state_dict())
    phone.phone.load_state_dict(both.phone.state_dict())
    torch.testing.assert_close(
        speaker(h, (speakers, phones)) + phone(h, (speakers, phones)), both(h, (speakers, phones))
    )
    torch.testing.assert_close(speaker(h, (speakers, phones)), F.cross_entropy(both.speaker(h.mean(2)), speakers))
    assert set(speaker.metrics) == {"speaker_accuracy"} and set(phone.metrics) == {"phone_accuracy"}
    with pytest.raises(ValueError, match="targets: must be both, speaker or phone"):
        SpeechSupervised(5, num_speakers=3, num_phones=4, targets="words")
