"""The vision task's paper probe protocol: every labelled image every epoch under a crop and flip drawn anew, one
linear classifier per module, the encoder left unchanged."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import torch

from greedy_infomax.cli import main
from greedy_infomax.data.loader import BatchLoader, epoch_order
from greedy_infomax.data.spec import ImageArray, ImageSpec
from greedy_infomax.tasks import PRESETS, vision
from greedy_infomax.workflows import probe_run

CPU = torch.device("cpu")


def test_the_paper_probes_loader_crops_every_image_anew_every_epoch():
    """10 images of 28x28 in batches of 4 with 20x20 crops: 3 batches an epoch, the last one of 2 images, and an
    image's crop in epoch 1 is not its crop in epoch 0."""
    spec = ImageSpec(1, 28, 28, 10, (0.5,), (0.25,), 0.5, 0.25)
    images = np.random.default_rng(0).integers(0, 256, (10, 1, 28, 28), dtype=np.uint8)
    array = ImageArray(images, np.arange(10), spec)
    config = replace(PRESETS["smoke"], data=replace(PRESETS["smoke"].data, crop=20))
    loader = vision._augmented(BatchLoader(array, 16, vision.eval_transform(config.data, spec), CPU), config,
                               batch_size=4, keep_last=True)
    crops = []
    for epoch in range(2):
        batches = list(loader.epoch(epoch))
        assert [len(labels) for _, labels in batches] == [4, 4, 2]
        order = epoch_order(10, config.train.seed, epoch)
        rows = np.concatenate([np.sort(order[b * 4:(b + 1) * 4]) for b in range(3)])   # image of each row
        assert sorted(rows.tolist()) == list(range(10)), "every image once"
        x = torch.cat([images for images, _ in batches])
        crops.append(x[np.argsort(rows)])                                            # (10, 1, 20, 20) by image
    differ = [not torch.equal(a, b) for a, b in zip(crops[0], crops[1], strict=True)]
    assert sum(differ) >= 8


def test_paper_protocol_fits_one_linear_classifier_per_module_on_fresh_flips(monkeypatch, probe_smoke_run):
    """Recorded at the encoder: each epoch feeds all 64 training images (the last batch of 16 kept), each as itself
    or its mirror, drawn anew each epoch; then the 64 test images once."""
    features = vision.module_features
    inputs: list[torch.Tensor] = []

    def recording(modules, x, pool):
        inputs.append(x.clone())
        return features(modules, x, pool)

    monkeypatch.setattr(vision, "module_features", recording)
    config = probe_smoke_run.config
    options = replace(config.probe, protocol="paper", epochs=2, batch_size=24, random_init=False, raw_pixels=False)
    results = probe_run(probe_smoke_run, replace(config, probe=options), device="cpu")
    assert (results["protocol"], results["probes"]) == ("paper", ["linear"])
    assert [row.keys() - {"module"} for row in results["trained"]] == [{"features", "linear"}] * 3
    assert [len(x) for x in inputs] == [24, 24, 16] * 2 + [32, 32]
    centre = torch.cat([x for x, _ in vision.eval_loader(config, "probe_train", CPU).epoch()])   # (64, 1, 28, 28)
    epochs = [torch.cat(inputs[:3]), torch.cat(inputs[3:6])]
    for x in epochs:
        as_is, mirrored = _found(x, centre), _found(x, centre.flip(3))
        assert (as_is | mirrored).all() and 0 < (~as_is).sum() < 64, "each image as itself or mirrored"
    assert not _found(epochs[1], epochs[0]).all(), "epoch 1 draws its flips anew"


def _found(x: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """(N,) whether each image of x equals one of pool."""
    return ((x[:, None] - pool[None]).flatten(2).abs().amax(2) < 1e-6).any(1)


def test_gim_probe_runs_the_paper_protocol(probe_smoke_run, tmp_path):
    run = shutil.copytree(probe_smoke_run.path, tmp_path / "run")
    assert main(["probe", str(run), "--probe.protocol", "paper", "--probe.epochs", "1", "--device", "cpu"]) == 0
    results = json.loads((run / "probe.json").read_text())
    assert results["protocol"] == "paper" and "paper's protocol" in results["features"]
    assert [row["module"] for row in results["random"]] == [1, 2, 3]
    assert results["baseline"]["name"] == "raw pixels" and results["baseline"]["features"] == 28 * 28
