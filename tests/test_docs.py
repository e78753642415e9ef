"""Every code example in docs/ runs: each ```python block is one of docs/examples/*.py verbatim, each example runs
at a small size, and the ```bash blocks (the gim session of docs/cli.md) run command by command."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from conftest import finish, fork_ranks

from greedy_infomax.cli import main

DOCS = Path(__file__).parent.parent / "docs"
EXAMPLES = DOCS / "examples"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)


def _blocks(language: str) -> list[str]:
    return [
        text for page in sorted(DOCS.glob("*.md")) for lang, text in BLOCK.findall(page.read_text()) if lang == language
    ]


@pytest.fixture
def example(monkeypatch):
    """example(name) imports docs/examples/name.py as `python docs/examples/name.py` would find its neighbours."""
    monkeypatch.syspath_prepend(str(EXAMPLES))

    def load(name: str) -> ModuleType:
        return importlib.import_module(name)

    return load


def test_every_python_block_is_an_example_file_and_every_example_is_shown():
    examples = {path.name: path.read_text() for path in EXAMPLES.glob("*.py")}
    shown = _blocks("python")
    assert shown and all(block in examples.values() for block in shown), "a python block differs from its file"
    assert {name for name, text in examples.items() if text in shown} == set(examples), "an example is not shown"
    languages = {lang for page in DOCS.glob("*.md") for lang, _ in BLOCK.findall(page.read_text())}
    assert languages <= {"python", "bash", "text"}, "only these are checked (text: diagrams and file trees)"


def test_own_network_trains_probes_every_module_and_embeds(example, tmp_path):
    """The issue's acceptance test: a network that is not one of ours, trained through the public API for a few
    steps on the embedded data, every module probed, module 2's features written and loaded with NumPy."""
    rows = example("own_network").main(tmp_path, limit=128)
    assert [row["module"] for row in rows] == [1, 2, 3]
    assert all(0.0 <= row["linear"] <= 1.0 and 0.0 <= row["knn"] <= 1.0 for row in rows)
    (run,) = (tmp_path / "own-network").iterdir()  # named by the date and time
    written = np.load(run / "module-2-test.npz")
    assert written["features"].shape == (128, 64 * 2 * 2) and written["labels"].shape == (128,)
    assert (run / "checkpoints" / "step-00000004").is_dir()


def test_own_dataset_trains_on_a_dataset_class_and_probes_through_a_dataloader(example, tmp_path):
    rows = example("own_dataset").main(tmp_path, train_images=64, test_images=32)
    assert [row["module"] for row in rows] == [1, 2, 3]
    assert all(0.0 <= row["linear"] <= 1.0 for row in rows)
    (run,) = (tmp_path / "own-dataset").iterdir()
    assert (run / "checkpoints" / "step-00000002").is_dir()  # 64 images: 2 batches of 32


def test_own_objective_trains_beside_a_supervised_module(example, tmp_path):
    metrics = example("own_objective").main(tmp_path, limit=128)
    assert {"loss/module1", "loss/module2", "loss/module3"} <= set(metrics[-1])


def test_run_features_extracts_from_a_preset_run(example, tmp_path):
    features = example("run_features").main(tmp_path, limit=64, max_steps=2)
    assert features.shape == (8, 128 * 6 * 6) and features.isfinite().all()


def _run_example(main, *args) -> int:
    main(*args)
    return 0


def test_parallel_under_three_processes_equals_its_run_in_one(example, tmp_path, one_thread):
    """`torchrun --nproc-per-node 3 docs/examples/parallel.py` (3 gloo processes on loopback) and
    `python docs/examples/parallel.py` write the same checkpoint, bit for bit."""
    parallel = example("parallel")
    local = parallel.main(tmp_path / "local", limit=128).latest_checkpoint()
    ranks = fork_ranks(3, tmp_path, _run_example, parallel.main, tmp_path / "torchrun", 128)
    assert finish(ranks) == [0, 0, 0], [rank.output for rank in ranks]
    (run,) = (tmp_path / "torchrun" / "parallel").iterdir()
    checkpoint = run / "checkpoints" / local.name
    for name in ("module-1.pt", "module-2.pt", "module-3.pt"):
        weights, expected = (torch.load(folder / name)["state_dict"] for folder in (checkpoint, local))
        assert all(torch.equal(weights[key], expected[key]) for key in expected), name


def test_own_data_trains_on_an_image_folder_and_a_speech_folder_and_runs_again(example, tmp_path):
    """Run twice, an example makes a second run folder of each kind rather than failing on the first."""
    for _ in range(2):
        example("own_data").main(tmp_path / "data", tmp_path / "runs", per_class=4, recordings=5)
    for kind in ("image-folder", "speech-folder"):
        runs = sorted((tmp_path / "runs" / kind).iterdir())
        assert len(runs) == 2 and all((run / "metrics.jsonl").is_file() for run in runs)


def test_the_shell_sessions_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    commands = [line for block in _blocks("bash") for line in block.splitlines() if line.startswith("gim ")]
    assert commands
    for command in commands:
        assert main(shlex.split(command, comments=True)[1:]) == 0, command
