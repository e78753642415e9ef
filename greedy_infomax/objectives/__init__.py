"""Per-module objectives. Each is an nn.Module with forward(z, labels=None) -> scalar loss; those that predict from
a context network also take its output as `context`. An objective that cannot train without labels says so with
`needs_labels = True`; one that measures more than its loss (InfoNCE: how often the positive scores highest;
supervised: classification accuracy) leaves it, detached and on the device, in a dict `metrics` at every forward,
which the engines log beside the loss. Each task names the objectives it offers (`objective.name`) in its own
module."""
from greedy_infomax.objectives.infonce_1d import InfoNCE1d
from greedy_infomax.objectives.infonce_2d import InfoNCE2d
from greedy_infomax.objectives.speech_supervised import SpeechSupervised
from greedy_infomax.objectives.supervised import Supervised

__all__ = ["InfoNCE1d", "InfoNCE2d", "SpeechSupervised", "Supervised"]
