"""`gim reproduce` end to end on the smoke budgets, its commands re-making a row, and the regrouping that lets an
end-to-end encoder be probed at GIM's module boundaries."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from greedy_infomax.cli import main
from greedy_infomax.config import end_to_end
from greedy_infomax.data.speech_corpus import generate_speech_corpus
from greedy_infomax.evaluation.features import frozen_pass
from greedy_infomax.models import copy_stages
from greedy_infomax.reproduce import METHODS
from greedy_infomax.tasks import PRESETS, prepare_modules, task_of
from greedy_infomax.tasks import audio as audio_task

ROWS = [method.name for method in METHODS]


def test_an_end_to_end_encoder_cut_at_gim_boundaries_gives_its_intermediate_outputs():
    config = end_to_end(PRESETS["smoke"])
    [whole] = prepare_modules(config, 1, torch.device("cpu"), with_optimizers=False)
    cut = copy_stages(
        [whole], prepare_modules(task_of(config).cut_at(config, (1, 1, 1)), 1, torch.device("cpu"), False)
    )
    x = torch.randn(2, 1, 28, 28)
    outputs = frozen_pass(cut, x, lambda module, h: h)
    with torch.no_grad():
        assert torch.equal(outputs[0], whole.block[:2](x))
        assert torch.equal(outputs[2], whole.block(x))


def _table_rows(markdown: str) -> dict[str, list[str]]:
    rows = {}
    for line in markdown.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] != "method":
            rows.setdefault(cells[0], cells[1:])
    return rows


def test_vision_smoke_writes_every_method_and_its_commands_remake_a_row(tmp_path: Path, capsys):
    output = tmp_path / "vision"
    assert main(["reproduce", "vision", "--budget", "smoke", "--output", str(output)]) == 0
    summary = json.loads((output / "comparison.json").read_text())
    assert [method["method"] for method in summary["methods"]] == ROWS
    for method in summary["methods"]:
        assert [row["module"] for row in method["results"]["trained"]] == [1, 2, 3], method["method"]
    rows = _table_rows((output / "comparison.md").read_text())
    assert list(rows) == ROWS + ["random init", "raw pixels"]
    assert rows["GIM"][3] == "81.9" and rows["end-to-end CPC"][3] == "80.5"  # the paper's column
    accuracy = {
        method["slug"]: [row["linear"] for row in method["results"]["trained"]] for method in summary["methods"]
    }
    assert rows["end-to-end CPC"][:3] == [f"{100 * a:.1f}" for a in accuracy["cpc"]]
    assert (output / "comparison.png").stat().st_size > 0

    # The commands of a row re-make it exactly, in another folder.
    lines = (output / "commands.sh").read_text().splitlines()
    cpc = lines[lines.index("# end-to-end CPC, seed 2") + 1 : lines.index("# end-to-end CPC, seed 2") + 3]
    again = tmp_path / "again"
    for line in cpc:
        assert main(shlex.split(line.replace(str(output), str(again)))[1:]) == 0
    remade = json.loads((again / "cpc" / "probe.json").read_text())
    assert [row["linear"] for row in remade["trained"]] == accuracy["cpc"]

    # A second call for one method finds it probed and rewrites the report, which keeps every method probed so far
    # and the training times measured then.
    capsys.readouterr()
    assert main(["reproduce", "vision", "--budget", "smoke", "--output", str(output), "--methods", "gim"]) == 0
    assert "already done" in capsys.readouterr().out
    again = json.loads((output / "comparison.json").read_text())
    assert [(m["method"], m["seconds"]) for m in again["methods"]] == [
        (m["method"], m["seconds"]) for m in summary["methods"]
    ]
    assert list(_table_rows((output / "comparison.md").read_text())) == ROWS + ["random init", "raw pixels"]


@pytest.mark.skipif(shutil.which("festival") is None, reason="needs festival (./setup.sh installs it as root)")
def test_audio_smoke_generates_its_corpus_and_writes_speaker_and_phone_tables(tmp_path: Path, monkeypatch):
    """The corpus is missing, so the reproduction makes it first, as `gim pretrain` would (3 speakers here)."""
    made = []

    def small_corpus(root: Path) -> Path:
        made.append(root)
        return generate_speech_corpus(root, num_speakers=3, utterances_per_speaker=4)

    monkeypatch.setattr(audio_task, "generate_speech_corpus", small_corpus)
    root = tmp_path / "speech"
    output = tmp_path / "audio"
    assert main(["reproduce", "audio", "--budget", "smoke", "--root", str(root), "--output", str(output)]) == 0
    summary = json.loads((output / "comparison.json").read_text())
    assert [method["method"] for method in summary["methods"]] == ROWS
    for method in summary["methods"]:
        assert [row["module"] for row in method["results"]["trained"]] == [1, 2, 3, 4, 5, 6]
    markdown = (output / "comparison.md").read_text()
    assert "### speaker probe" in markdown and "### phone probe" in markdown
    assert set(_table_rows(markdown)) == set(ROWS) | {"random init", "log-mel"}
    supervised = json.loads((output / "greedy-supervised" / "config.yaml").with_name("probe.json").read_text())
    assert supervised["method"] == "greedy supervised (6 modules)"
    assert made == [root]


def test_an_interrupted_method_reports_the_time_of_all_its_attempts(tmp_path: Path, monkeypatch, capsys):
    """Stopped while probing, then run again: the time column adds both attempts, not the second alone."""
    import greedy_infomax.reproduce as reproduce_module
    from greedy_infomax.errors import TrainingStopped

    real = reproduce_module.write_probe_report

    def stopped(*args, **kwargs):
        monkeypatch.setattr(reproduce_module, "write_probe_report", real)
        raise TrainingStopped(2, "stopped by SIGINT")

    monkeypatch.setattr(reproduce_module, "write_probe_report", stopped)
    argv = ["reproduce", "vision", "--budget", "smoke", "--output", str(tmp_path), "--methods", "gim"]
    assert main(argv) == 130
    assert "continue with the same gim reproduce command" in capsys.readouterr().err
    first = float((tmp_path / "gim" / "reproduce-seconds.txt").read_text())
    assert main(argv) == 0
    summary = json.loads((tmp_path / "comparison.json").read_text())
    assert summary["methods"][0]["seconds"] > first > 0


def test_the_paper_audio_comparison_has_a_speaker_and_a_phone_model_per_supervised_method():
    """As the original code trains them (--loss 1 and --loss 2); vision and the CPU budgets keep one row each."""
    from greedy_infomax.reproduce import methods_of

    paper = {method.slug: method for method in methods_of("audio", "paper") if method.paper}
    assert list(paper) == [
        "gim",
        "gim-sequential",
        "cpc",
        "greedy-supervised-speaker",
        "greedy-supervised-phone",
        "supervised-speaker",
        "supervised-phone",
    ]
    base = PRESETS["paper-librispeech"]
    phone = paper["supervised-phone"].change(base)
    assert (phone.objective.name, phone.objective.targets, phone.model.stages_per_module) == (
        "supervised",
        "phone",
        (6,),
    )
    assert [method.slug for method in methods_of("audio", "cpu") if method.paper] == [method.slug for method in METHODS]
    assert [method.slug for method in methods_of("vision", "paper") if method.paper] == [
        method.slug for method in METHODS
    ]


def test_the_local_learning_methods_after_gim_are_rows_of_their_tasks_but_not_run_by_default():
    from greedy_infomax.reproduce import methods_of

    after = ["gim-overlap", "clapp"]
    cuts = ("", "-overlap", "-end-to-end")
    after += [f"{name}{cut}" for name in ("simclr", "barlow-twins", "vicreg") for cut in cuts]
    vision, audio = methods_of("vision", "cpu"), methods_of("audio", "cpu")
    assert [m.slug for m in vision if not m.paper] == after
    assert [m.slug for m in audio if not m.paper] == ["gim-overlap", "clapp"], "no two-view objective for audio"
    assert [m.slug for m in vision if m.paper] == ["gim", "gim-sequential", "cpc", "greedy-supervised", "supervised"]


def test_a_method_after_gim_trains_as_its_row_says_and_its_commands_remake_it(tmp_path: Path):
    output = tmp_path / "after"
    argv = ["reproduce", "vision", "--budget", "smoke", "--output", str(output)]
    assert main([*argv, "--methods", "gim-overlap", "simclr-overlap", "simclr-end-to-end"]) == 0
    summary = json.loads((output / "comparison.json").read_text())
    assert [m["method"] for m in summary["methods"]] == [
        "GIM, overlap 1 (LoCo)",
        "SimCLR per module, overlap 1 (LoCo)",
        "SimCLR end to end",
    ]
    overlap, simclr_overlap, simclr = (
        yaml.safe_load((output / slug / "config.yaml").read_text())
        for slug in ("gim-overlap", "simclr-overlap", "simclr-end-to-end")
    )
    assert overlap["model"]["overlap"] == 1 and overlap["objective"]["name"] == "infonce_2d"
    assert simclr_overlap["model"]["overlap"] == 1 and simclr_overlap["objective"]["name"] == "simclr"
    assert simclr_overlap["model"]["stages_per_module"] == [1, 1, 1]
    assert simclr["model"]["stages_per_module"] == [3] and simclr["objective"]["name"] == "simclr"
    assert simclr["probe"]["stages_per_module"] == [1, 1, 1], "probed at GIM's module boundaries"
    lines = (output / "commands.sh").read_text().splitlines()
    remake = lines[
        lines.index("# GIM, overlap 1 (LoCo), seed 2") + 1 : lines.index("# GIM, overlap 1 (LoCo), seed 2") + 3
    ]
    assert "--model.overlap 1" in remake[0]
    again = tmp_path / "again"
    for line in remake:
        assert main(shlex.split(line.replace(str(output), str(again)))[1:]) == 0
    accuracies = [
        [row["linear"] for row in json.loads((folder / "probe.json").read_text())["trained"]]
        for folder in (output / "gim-overlap", again / "gim-overlap")
    ]
    assert accuracies[0] == accuracies[1]


def test_several_seeds_give_each_method_the_mean_and_spread_of_its_runs_each_remade_by_its_commands(tmp_path: Path):
    """The budget's own seed keeps the method's folder (so earlier reproductions count as that seed); another seed
    trains into <slug>-seed<N>; the random encoder and the raw input are probed beside GIM at each seed."""
    output = tmp_path / "seeds"
    argv = ["reproduce", "vision", "--budget", "smoke", "--output", str(output), "--methods", "gim"]
    assert main([*argv, "--seeds", "2", "5"]) == 0
    runs = [json.loads((output / name / "probe.json").read_text()) for name in ("gim", "gim-seed5")]
    assert yaml.safe_load((output / "gim-seed5" / "config.yaml").read_text())["train"]["seed"] == 5
    accuracies = [[module["linear"] for module in run["trained"]] for run in runs]
    assert accuracies[0] != accuracies[1], "the seed changes the run"
    assert "random" in runs[0] and "random" in runs[1], "a random encoder at each seed"
    [row] = json.loads((output / "comparison.json").read_text())["methods"]
    assert row["seeds"] == [2, 5]
    mean = [module["linear"] for module in row["results"]["trained"]]
    spread = [module["linear"] for module in row["results"]["spread"]]
    assert mean == pytest.approx([(a + b) / 2 for a, b in zip(*accuracies)])
    assert spread == pytest.approx([abs(a - b) / 2**0.5 for a, b in zip(*accuracies)]), "sample standard deviation"
    table = _table_rows((output / "comparison.md").read_text())
    assert table["GIM"][0] == f"{100 * mean[0]:.1f} ± {100 * spread[0]:.1f}" and table["GIM"][-1] == "2, 5"
    random = [(run["random"][0]["linear"]) for run in runs]
    assert table["random init"][0] == f"{50 * sum(random):.1f} ± {100 * abs(random[0] - random[1]) / 2**0.5:.1f}"

    lines = (output / "commands.sh").read_text().splitlines()
    remake = lines[lines.index("# GIM, seed 5") + 1 : lines.index("# GIM, seed 5") + 3]
    assert "--train.seed 5" in remake[0] and "--name gim-seed5" in remake[0]
    again = tmp_path / "again"
    for line in remake:
        assert main(shlex.split(line.replace(str(output), str(again)))[1:]) == 0
    remade = json.loads((again / "gim-seed5" / "probe.json").read_text())
    assert [module["linear"] for module in remade["trained"]] == accuracies[1]

    # One seed, the default, reads back the folder trained before without running it again.
    assert main(argv) == 0
    [row] = json.loads((output / "comparison.json").read_text())["methods"]
    assert row["seeds"] == [2] and "spread" not in row["results"]
