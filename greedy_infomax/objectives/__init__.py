"""Per-module objectives, by name. Each is an nn.Module with forward(z, labels=None) -> scalar loss."""
from greedy_infomax.objectives.infonce_1d import InfoNCE1d
from greedy_infomax.objectives.infonce_2d import InfoNCE2d
from greedy_infomax.objectives.supervised import Supervised

OBJECTIVES = {
    "infonce_2d": InfoNCE2d,
    "infonce_1d": InfoNCE1d,
    "supervised": Supervised,
}
