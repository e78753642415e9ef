"""Your own data: a folder of images per class, and a folder of recordings per speaker.

    python docs/examples/own_data.py data        # writes stand-in folders under data/, then trains on each
"""
from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import numpy as np
import soundfile
import torch
from PIL import Image
from torch import nn

from greedy_infomax import api as gim
from own_network import network


def image_folder(root: Path, per_class: int) -> Path:
    """Stand-in for your photos: Fashion-MNIST images as PNG files in root/train/<class>/ and root/test/<class>/."""
    for split in ("train", "test"):
        data = gim.read_fashion_mnist(None, split)
        for label in range(10):
            folder = root / split / f"class-{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for index in np.flatnonzero(data.labels == label)[:per_class]:
                Image.fromarray(data.images[index, 0]).save(folder / f"{index}.png")
    return root


def speech_folder(root: Path, recordings: int) -> Path:
    """Stand-in for your recordings: each speaker hums at a pitch of its own, 1.5 s per recording, 16 kHz, in noise."""
    rng = np.random.default_rng(0)
    time = np.arange(24_000) / 16_000
    for speaker, pitch in enumerate((110.0, 150.0, 220.0)):
        (root / f"speaker-{speaker}").mkdir(parents=True, exist_ok=True)
        for index in range(recordings):
            hum = np.sin(2 * np.pi * pitch * (1 + 0.05 * rng.standard_normal()) * time)
            audio = 0.1 * hum + 0.02 * rng.standard_normal(len(time))
            soundfile.write(root / f"speaker-{speaker}" / f"s{speaker}-{index}.flac", audio.astype(np.float32), 16_000)
    return root


def train_on_images(root: Path, output: Path) -> list[dict]:
    """The network of own_network.py on root/train, probed on root/test (the CLI: --data.dataset image-folder)."""
    train, test = (gim.read_image_folder(root / split, grayscale=True) for split in ("train", "test"))
    transform = gim.ImageTransform.for_data(crop=28, flip=True, grayscale=True, spec=train.spec)
    loader = gim.BatchLoader(train, 32, transform, torch.device("cpu"), seed=0)
    torch.manual_seed(0)
    blocks = gim.split(network(), after=["relu1", "relu2"])
    modules = gim.isolate(blocks, partial(gim.InfoNCE2d, prediction_steps=2), sample=next(loader.epoch())[0][:1])
    gim.train(modules, loader, gim.RunFolder.create(output / "image-folder"), gim.TrainConfig(epochs=1, device="cpu"))
    evaluation = gim.ImageTransform.for_data(crop=28, flip=False, grayscale=True, spec=train.spec)
    probe_train, probe_test = (gim.BatchLoader(split, 256, evaluation, torch.device("cpu")) for split in (train, test))
    return gim.probe_modules(modules, probe_train, probe_test, gim.ProbeConfig(pool=2, knn_k=0),
                             num_classes=train.spec.num_classes)


def train_on_speech(root: Path, output: Path) -> list[dict]:
    """Two Conv1d modules, the second ending in a GRU as CPC's context network (the CLI: --data.dataset
    speech-folder); returns the logged losses."""
    corpus = gim.read_speech_folder(root)
    loader = gim.WindowLoader(corpus, "train", batch_size=4, device=torch.device("cpu"))
    convs = nn.Sequential(nn.Conv1d(1, 32, 10, stride=5, padding=2), nn.ReLU(),          # 20,480 -> 4,096 steps
                          nn.Conv1d(32, 32, 8, stride=4, padding=2), nn.ReLU())          # -> 1,024 steps
    infonce = partial(gim.InfoNCE1d, prediction_steps=4, num_negatives=8, subsample=True, subsample_window=64)
    torch.manual_seed(0)
    modules = gim.isolate(gim.split(convs, after=["1"]), infonce, sample=next(loader.epoch())[0][:1],
                          autoregressor=gim.GRUStage(32, 16))
    run = gim.RunFolder.create(output / "speech-folder")
    gim.train(modules, loader, run, gim.TrainConfig(epochs=1, lr=1e-3, device="cpu", log_every=1))
    return run.metrics()


def main(root: Path = Path("data"), output: Path = Path("runs"), per_class: int = 100, recordings: int = 10) -> None:
    for row in train_on_images(image_folder(root / "images", per_class), output):
        print(f"images, module {row['module']}: linear {row['linear']:.3f}")
    for row in train_on_speech(speech_folder(root / "speech", recordings), output):
        print(f"speech, step {row['step']}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if "loss" in k))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("data"))
