"""gim embed: its .npz loads with NumPy and refits the linear accuracy of gim probe exactly; the feature extractor of a
run (vision or audio) gives the same features; formats, unlabelled splits and bad modules."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from greedy_infomax.cli import main
from greedy_infomax.data.loader import BatchLoader
from greedy_infomax.data.transforms import ImageTransform
from greedy_infomax.errors import GimError
from greedy_infomax.evaluation.embed import array_writer, embed
from greedy_infomax.evaluation.probes import linear_probe
from greedy_infomax.evaluation.speech_features import last_frames, to_label_hop
from greedy_infomax.reporting.run_folder import RunFolder
from greedy_infomax.tasks import PRESETS, task_of
from greedy_infomax.tasks.audio import load_speech
from greedy_infomax.tasks.vision import load_split
from greedy_infomax.workflows import embed_run, load_extractor, pretrain, probe_run


@pytest.fixture(scope="module")
def embedded(probe_smoke_run, tmp_path_factory):
    """What `gim probe` computes for the smoke run (its table, without the plot), and `gim embed` of module 2 on
    both probe splits."""
    output = tmp_path_factory.mktemp("embed")
    config = probe_smoke_run.config
    linear_only = replace(config.probe, random_init=False, raw_pixels=False)
    probed = probe_run(probe_smoke_run, replace(config, probe=linear_only))
    for split in ("train", "test"):
        assert (
            main(
                [
                    "embed",
                    str(probe_smoke_run.path),
                    "--module",
                    "2",
                    "--split",
                    split,
                    "--output",
                    str(output / f"{split}.npz"),
                ]
            )
            == 0
        )
    return probed, output


def test_embedded_features_refit_the_probe_accuracy_of_their_module(probe_smoke_run, embedded):
    probed, output = embedded
    train, test = (np.load(output / f"{split}.npz") for split in ("train", "test"))
    assert set(train) == {"features", "labels"} and train["features"].dtype == np.float32
    assert train["features"].shape == (64, 8) and train["labels"].shape == (64,)
    arrays = [torch.from_numpy(split[name]) for split in (train, test) for name in ("features", "labels")]
    p, seed = probe_smoke_run.config.probe, probe_smoke_run.config.train.seed
    accuracy = linear_probe(*arrays, 10, p.epochs, p.lr, p.batch_size, seed=seed)
    assert accuracy == probed["trained"][1]["linear"]


def test_the_extractor_of_a_run_gives_the_embedded_features(probe_smoke_run, embedded):
    extractor = load_extractor(probe_smoke_run.path, module=2)
    images = torch.from_numpy(load_split(probe_smoke_run.config.data, "probe_test").images[:5].copy())  # (5, 1, 28, 28)
    features = extractor(extractor.transform(images))
    written = np.load(embedded[1] / "test.npz")["features"][:5]
    assert not features.requires_grad
    np.testing.assert_allclose(features.numpy(), written, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def speech_run(speech_root, tmp_path_factory) -> RunFolder:
    """The speech-smoke preset (5 convs and a GRU, 6 modules of 8 channels) trained for 2 steps."""
    config = PRESETS["speech-smoke"]
    config = replace(
        config, data=replace(config.data, root=str(speech_root)), train=replace(config.train, max_steps=2, device="cpu")
    )
    run = RunFolder.create(tmp_path_factory.mktemp("speech"), "speech", config)
    pretrain(config, run)
    return run


@pytest.mark.parametrize("module", [2, 6])
def test_the_extractor_of_an_audio_run_gives_the_embedded_frames(speech_run, module):
    """A test utterance's frames of module 2 (a conv, 20 samples per frame) and module 6 (the GRU, 160), pooled to
    the 10 ms phone labels as `gim embed` pools them, are the phone features it writes for that utterance."""
    extractor = load_extractor(speech_run.path, module)
    corpus = load_speech(speech_run.config.data)
    utterance = corpus.splits["test"][0]
    waveform = torch.from_numpy(corpus.waveform(utterance))[None, None]  # (1, 1, samples)
    frames = extractor(extractor.transform(waveform))  # (1, frames, 8)
    assert frames.shape[::2] == (1, 8) and not frames.requires_grad
    assert abs(frames.shape[1] - utterance.num_samples / extractor.hop) <= 1, "one frame every `hop` samples"
    labels = len(corpus.phones(utterance))
    per_label = last_frames(to_label_hop(frames.transpose(1, 2), extractor.hop, corpus.spec), labels)  # (8, labels)
    written = embed_run(speech_run, module, "probe_test")["phone_features"][:labels]
    np.testing.assert_allclose(per_label.T.numpy(), written, rtol=1e-5, atol=1e-6)


def test_an_unlabelled_split_gives_features_only(probe_smoke_run):
    config = probe_smoke_run.config
    array = load_split(config.data, "probe_test")
    loader = BatchLoader(
        replace(array, labels=None), 32, ImageTransform.for_data(28, False, True, array.spec), torch.device("cpu")
    )
    modules, _ = task_of(config).load_trained(probe_smoke_run, config, 1, torch.device("cpu"))
    arrays = embed(modules, loader, module=1)
    assert list(arrays) == ["features"] and arrays["features"].shape == (64, 4)


def test_formats_and_module_range_are_checked_before_any_work(probe_smoke_run, tmp_path, capsys):
    with pytest.raises(GimError, match="choose one of: .npz, .safetensors"):
        array_writer(tmp_path / "features.npy")
    assert main(["embed", str(probe_smoke_run.path), "--module", "4", "--output", str(tmp_path / "x.npz")]) == 2
    assert "module: must be in 1..3, got 4" in capsys.readouterr().err


def test_safetensors_output_round_trips_or_names_the_missing_package(tmp_path):
    arrays = {"features": np.arange(6, dtype=np.float32).reshape(3, 2), "labels": np.array([0, 2, 1])}
    try:
        import safetensors.numpy
    except ImportError:
        with pytest.raises(GimError, match="pip install safetensors"):
            array_writer(tmp_path / "x.safetensors")
        return
    loaded = safetensors.numpy.load_file(str(array_writer(tmp_path / "x.safetensors")(arrays)))
    assert all(np.array_equal(loaded[name], arrays[name]) for name in arrays)


@pytest.mark.parametrize(
    ("limit", "images"),
    [("32", 32), ("5", 5), ("0", 10_000)],
    ids=["fewer", "less-than-a-training-batch", "whole-split"],
)
def test_embed_limit_overrides_the_runs_and_zero_means_the_whole_split(probe_smoke_run, tmp_path, limit, images):
    """The smoke run trained and probed on 64 images; Fashion-MNIST's test split has 10,000."""
    output = tmp_path / "test.npz"
    assert (
        main(["embed", str(probe_smoke_run.path), "--module", "1", "--data.limit", limit, "--output", str(output)]) == 0
    )
    assert np.load(output)["features"].shape[0] == images


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--probe.pool", "2"], "--probe.pool: not an option of audio runs"),
        (["--data.dataset", "fashion-mnist"], "--data.dataset fashion-mnist: audio runs embed one of librispeech"),
    ],
)
def test_embed_options_an_audio_run_lacks_are_one_line(speech_run, tmp_path, capsys, option, message):
    assert main(["embed", str(speech_run.path), "--module", "1", *option, "--output", str(tmp_path / "x.npz")]) == 2
    assert capsys.readouterr().err.startswith(f"gim: error: {message}")


def test_a_run_trained_on_a_gpu_this_machine_lacks_embeds_on_what_it_has(probe_smoke_run, tmp_path, capsys):
    run = RunFolder.open(shutil.copytree(probe_smoke_run.path, tmp_path / "run"))
    config = run.config
    run.update_config(replace(config, train=replace(config.train, device=f"cuda:{torch.cuda.device_count()}")))
    assert main(["embed", str(run.path), "--module", "1", "--output", str(tmp_path / "auto.npz")]) == 0
    argv = ["embed", str(run.path), "--module", "1", "--device", "cpu", "--output", str(tmp_path / "cpu.npz")]
    assert main(argv) == 0
    np.testing.assert_allclose(
        np.load(tmp_path / "cpu.npz")["features"], np.load(tmp_path / "auto.npz")["features"], rtol=1e-4, atol=1e-5
    )
