"""Per-module objectives, by task and name (`objective.name`). Each is an nn.Module with
forward(z, labels=None) -> scalar loss; the audio ones also take the autoregressor's output as `context`."""
from greedy_infomax.objectives.infonce_1d import InfoNCE1d
from greedy_infomax.objectives.infonce_2d import InfoNCE2d
from greedy_infomax.objectives.speech_supervised import SpeechSupervised
from greedy_infomax.objectives.supervised import Supervised

OBJECTIVES = {
    "vision": {"infonce_2d": InfoNCE2d, "supervised": Supervised},
    "audio": {"infonce_1d": InfoNCE1d, "supervised": SpeechSupervised},
}
