"""The Python API in one import: train a network of your own greedily, probe every module, take its features away.

    from greedy_infomax import api as gim

    blocks = gim.split(network, after=["relu1", "relu2"])                  # 3 gradient-isolated modules
    modules = gim.isolate(blocks, partial(gim.InfoNCE2d, prediction_steps=2), sample=images[:1])
    modules = gim.train(modules, loader, gim.RunFolder.create(Path("runs"), "mine"), gim.TrainConfig(epochs=1))
    rows = gim.probe_modules(modules, train_loader, test_loader, gim.ProbeConfig(), num_classes=10)
    arrays = gim.embed(modules, test_loader, module=2)                     # {"features": (N, D), "labels": (N,)}

Each name is defined where its concept lives (models/split.py, engines/, evaluation/, data/, tasks/); this module
only gathers them, and docs/api.md walks through them with examples that run in the tests.
"""

from greedy_infomax.config import DistributedConfig, TrainConfig
from greedy_infomax.data.fashion_mnist import read_fashion_mnist
from greedy_infomax.data.image_folder import read_image_folder
from greedy_infomax.data.librispeech import WindowLoader, read_librispeech
from greedy_infomax.data.loader import Batches, BatchLoader
from greedy_infomax.data.speech_folder import read_speech_folder
from greedy_infomax.data.torch_data import as_batches
from greedy_infomax.data.transforms import ImageTransform
from greedy_infomax.data.views import TwoViewTransform
from greedy_infomax.engines import train
from greedy_infomax.engines.module_parallel import is_first_rank
from greedy_infomax.evaluation.embed import FeatureExtractor, SpeechFeatureExtractor, array_writer, embed
from greedy_infomax.evaluation.online_probe import OnlineProbes
from greedy_infomax.evaluation.protocol import probe_modules
from greedy_infomax.isolation import IsolatedModule
from greedy_infomax.models.audio import GRUStage
from greedy_infomax.models.patches import PatchGridPool, Patchify
from greedy_infomax.models.split import Objective, isolate, split
from greedy_infomax.objectives import BarlowTwins, CLAPP1d, CLAPP2d, InfoNCE1d, InfoNCE2d, SimCLR, Supervised, VICReg
from greedy_infomax.reporting.run_folder import RunFolder
from greedy_infomax.tasks import PRESETS, TASKS, Task, register
from greedy_infomax.tasks.vision import ProbeConfig
from greedy_infomax.workflows import load_extractor, pretrain, pretrain_run, probe_run

__all__ = [
    # cut a network into modules, and the objectives to attach
    "split",
    "isolate",
    "IsolatedModule",
    "Objective",
    "InfoNCE2d",
    "InfoNCE1d",
    "Supervised",
    "CLAPP2d",
    "CLAPP1d",
    "SimCLR",
    "BarlowTwins",
    "VICReg",
    "Patchify",
    "PatchGridPool",
    "GRUStage",
    # train, probe, embed
    "train",
    "TrainConfig",
    "RunFolder",
    "OnlineProbes",
    "probe_modules",
    "ProbeConfig",
    "embed",
    "array_writer",
    "load_extractor",
    "FeatureExtractor",
    "SpeechFeatureExtractor",
    # the module-parallel engine under torchrun
    "DistributedConfig",
    "is_first_rank",
    # the paper's models, from a preset; tasks of your own
    "PRESETS",
    "pretrain",
    "pretrain_run",
    "probe_run",
    "TASKS",
    "Task",
    "register",
    # data
    "Batches",
    "BatchLoader",
    "as_batches",
    "ImageTransform",
    "TwoViewTransform",
    "read_fashion_mnist",
    "read_image_folder",
    "WindowLoader",
    "read_librispeech",
    "read_speech_folder",
]
