"""Per-module objectives, by task and name (`objective.name`). Each is an nn.Module with
forward(z, labels=None) -> scalar loss; the audio ones also take the autoregressor's output as `context`.
The two-view ones (simclr, barlow_twins, vicreg) expect a batch of 2B rows: two augmented views of B images."""
from greedy_infomax.objectives.barlow_twins import BarlowTwins
from greedy_infomax.objectives.clapp import CLAPP1d, CLAPP2d
from greedy_infomax.objectives.infonce_1d import InfoNCE1d
from greedy_infomax.objectives.infonce_2d import InfoNCE2d
from greedy_infomax.objectives.simclr import SimCLR
from greedy_infomax.objectives.speech_supervised import SpeechSupervised
from greedy_infomax.objectives.supervised import Supervised
from greedy_infomax.objectives.vicreg import VICReg

OBJECTIVES = {
    "vision": {"infonce_2d": InfoNCE2d, "supervised": Supervised,
               "simclr": SimCLR, "barlow_twins": BarlowTwins, "vicreg": VICReg, "clapp_2d": CLAPP2d},
    "audio": {"infonce_1d": InfoNCE1d, "supervised": SpeechSupervised, "clapp_1d": CLAPP1d},
}
