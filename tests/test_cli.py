"""The gim command end to end, in-process: pretrain, probe, resume, one-line errors and --help."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import yaml
from conftest import read_only, run_lock_holder

from greedy_infomax import workflows
from greedy_infomax.cli import main
from greedy_infomax.reporting import probe_report
from greedy_infomax.reporting.run_folder import RunFolder
from greedy_infomax.tasks import PRESETS


def _exit_code(argv: list[str]) -> int:
    """main's return value, or the code of the SystemExit the argument parser raises; a traceback fails."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code
    except Exception as error:  # noqa: BLE001 - that is the failure
        pytest.fail(f"gim {' '.join(argv)}: traceback instead of a one-line error: {error!r}")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """`gim pretrain --preset smoke` for 6 of its 8 batches of 16 (128 images); returns (exit code, run folder path)."""
    output = tmp_path_factory.mktemp("runs")
    code = main(
        [
            "pretrain",
            "--preset",
            "smoke",
            "--output",
            str(output),
            "--name",
            "r",
            "--train.max_steps",
            "6",
            "--data.limit",
            "128",
        ]
    )
    return code, output / "r"


@pytest.fixture
def run_copy(smoke_run, tmp_path):
    """A private copy of the smoke run, for tests that may damage it."""
    return shutil.copytree(smoke_run[1], tmp_path / "r")


def test_pretrain_creates_a_run_folder(smoke_run):
    code, path = smoke_run
    assert code == 0
    run = RunFolder.open(path)
    config = run.config
    assert config.train.max_steps == 6 and config.data.limit == 128
    assert config.model == PRESETS["smoke"].model, "options not given come from the preset"
    assert run.latest_checkpoint() is not None
    assert [row["step"] for row in run.metrics()] == [2, 4, 6]


def test_probe_writes_json_markdown_and_plot(smoke_run, capsys):
    _, path = smoke_run
    assert main(["probe", str(path), "--probe.epochs", "1"]) == 0
    for name in ("probe.json", "probe.md", "probe.png"):
        assert (path / name).stat().st_size > 0, name
    results = json.loads((path / "probe.json").read_text())
    assert [row["module"] for row in results["trained"]] == [1, 2, 3]
    assert results["step"] == int(RunFolder.open(path).latest_checkpoint().name.split("-")[1])
    assert "| module |" in capsys.readouterr().out
    assert (path / "probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_continues_the_run(smoke_run):
    _, path = smoke_run
    assert main(["pretrain", "--resume", str(path), "--train.max_steps", "8"]) == 0
    run = RunFolder.open(path)
    assert run.latest_checkpoint().name == "step-00000008"
    assert run.config.train.max_steps == 8
    steps = [row["step"] for row in run.metrics()]
    assert steps == sorted(set(steps)) and steps[-1] == 8


@pytest.mark.parametrize(
    "option, value",
    [
        ("--model.planes", "[4,4]"),
        ("--train.lr", "-1"),
        ("--objective.prediction_steps", "9"),
        ("--train.train_module", "4"),
        ("--objective.temperature", "0"),
    ],
)
def test_bad_option_value_is_one_line_exit_2(tmp_path, capsys, option, value):
    code = _exit_code(["pretrain", "--preset", "smoke", "--output", str(tmp_path), "--name", "r", option, value])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gim: error: ") and option[2:] in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "r").exists(), "a bad option must not leave a run folder behind"


@pytest.mark.parametrize("objective", ["clapp", "simclr", "barlow_twins", "vicreg", "supervised"])
def test_global_negatives_for_an_objective_that_cannot_pool_them_is_one_line(tmp_path, capsys, objective):
    code = _exit_code(
        [
            "pretrain",
            "--preset",
            "smoke",
            "--output",
            str(tmp_path),
            "--objective.name",
            objective,
            "--distributed.negatives",
            "global",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.strip().splitlines() == [
        f"gim: error: distributed.negatives: global shares the negative pool across replicas, which only infonce_2d "
        f"can; objective {objective} trains on each replica's own batch (pass local)"
    ], err
    assert not any(tmp_path.iterdir())


def test_unknown_preset_lists_the_valid_ones(tmp_path, capsys):
    assert _exit_code(["pretrain", "--preset", "nope", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gim: error: ") and all(name in err for name in PRESETS)


def test_probe_of_a_folder_that_is_not_a_run_is_one_line(tmp_path, capsys):
    assert _exit_code(["probe", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [err.strip()] and "not a run folder" in err


def test_unknown_option_fails(tmp_path, capsys):
    code = _exit_code(["pretrain", "--preset", "smoke", "--output", str(tmp_path), "--train.no_such_option", "1"])
    assert code not in (0, None)
    assert "no_such_option" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pretrain", "--train.precision", "fp16"], 'Parser key "train.precision"'),
        (["pretrain", "--presett", "smoke"], "unrecognized arguments: --presett smoke"),
        (["pretrain", "--model.stages_per_module", "3"], 'Parser key "model.stages_per_module"'),
        (["probe"], "the following arguments are required: probe.run"),
        (["nope"], "invalid choice: 'nope'"),
    ],
)
def test_an_option_the_parser_refuses_is_one_line_not_the_usage(capsys, argv, message):
    assert _exit_code(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("gim: error: ") and message in err
    assert err.strip().endswith("--help` lists the options)")


def test_pretrain_help_lists_options_with_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["pretrain", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--model.planes" in out and "--train.lr" in out and "--preset" in out
    assert "default: (64, 128, 256)" in " ".join(out.split())


def test_resume_with_equals_sign_continues_the_run(run_copy):
    """`--resume=RUN` is the same option as `--resume RUN`: the run's own config, not the paper-stl10 defaults."""
    config = RunFolder.open(run_copy).config
    assert _exit_code(["pretrain", f"--resume={run_copy}", "--train.epochs", "2", "--train.max_steps", "10"]) == 0
    run = RunFolder.open(run_copy)
    assert run.latest_checkpoint().name == "step-00000010"
    assert run.config.model == config.model and run.config.data == config.data


def test_resume_refuses_a_preset_rather_than_ignoring_it(run_copy, capsys):
    assert _exit_code(["pretrain", "--resume", str(run_copy), "--preset", "fashion-mnist"]) == 2
    assert "--preset: a resumed run keeps its own config" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--name", "--output"])
def test_resume_refuses_a_new_folder_rather_than_ignoring_it(run_copy, capsys, option):
    assert _exit_code(["pretrain", "--resume", str(run_copy), option, "elsewhere"]) == 2
    assert f"{option}: a resumed run stays in its folder {run_copy}" in capsys.readouterr().err


def test_failed_resume_leaves_the_run_config_unchanged(run_copy, capsys):
    """Resuming with an architecture that does not fit the checkpoints fails and must not rewrite config.yaml,
    or the run can no longer be probed or resumed."""
    before = (run_copy / "config.yaml").read_text()
    assert _exit_code(["pretrain", "--resume", str(run_copy), "--model.planes", "[4,8,16]"]) == 2
    assert "does not fit" in capsys.readouterr().err
    assert (run_copy / "config.yaml").read_text() == before


def test_probe_pool_larger_than_the_grid_is_one_line(run_copy, capsys):
    assert _exit_code(["probe", str(run_copy), "--probe.pool", "99"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [err.strip()] and err.startswith("gim: error: probe.pool")


def test_probe_with_more_neighbours_than_training_images_does_not_crash(run_copy, capsys):
    """128 probe-training images and --probe.knn_k 500: use them all, or refuse in one line; never a traceback."""
    assert _exit_code(["probe", str(run_copy), "--probe.knn_k", "500", "--probe.epochs", "1"]) in (0, 2)
    assert "Traceback" not in capsys.readouterr().err


def test_probe_options_do_not_depend_on_argument_order(run_copy, monkeypatch):
    """Unset probe options default to the run's own (smoke: knn_k 5) whether RUN comes first or last."""
    seen = []

    def record(run, config, device):
        seen.append(config.probe)
        return {}

    monkeypatch.setattr(workflows, "probe_run", record)
    monkeypatch.setattr(probe_report, "write_probe_report", lambda path, results: "")
    assert main(["probe", str(run_copy), "--probe.epochs", "1"]) == 0
    assert main(["probe", "--probe.epochs", "1", str(run_copy)]) == 0
    assert seen[0] == seen[1] == replace(PRESETS["smoke"].probe, epochs=1)


def test_pretrain_with_fewer_images_than_one_batch_is_an_error(tmp_path, capsys):
    """8 images and batches of 16 give zero training steps: say so, rather than 'succeed' with no checkpoint."""
    code = _exit_code(["pretrain", "--preset", "smoke", "--output", str(tmp_path), "--name", "r", "--data.limit", "8"])
    err = capsys.readouterr().err
    assert code == 2 and any(line.startswith("gim: error: ") for line in err.splitlines()), (code, err)


def _stopping_after_two_steps(monkeypatch):
    """Make local pre-training stop as SIGTERM would after step 2, once; the next call trains for real."""
    import greedy_infomax.workflows as workflows
    from greedy_infomax.errors import TrainingStopped

    real = workflows.pretrain

    def stopped(config, run, resume=False):
        monkeypatch.setattr(workflows, "pretrain", real)
        real(replace(config, train=replace(config.train, max_steps=2)), run, resume)
        run.update_config(config)
        raise TrainingStopped(15, f"stopped by SIGTERM after step 2; checkpoint {run.latest_checkpoint()}")

    monkeypatch.setattr(workflows, "pretrain", stopped)


@pytest.mark.parametrize("command", [["pretrain"], ["demo"]])
def test_stopped_training_exits_128_plus_the_signal_with_one_line_saying_how_to_continue(
    tmp_path, capsys, monkeypatch, command
):
    _stopping_after_two_steps(monkeypatch)
    argv = [*command, "--preset", "smoke", "--data.limit", "64", "--train.max_steps", "4"]
    assert main([*argv, "--output", str(tmp_path), "--name", "r"]) == 143
    error = capsys.readouterr().err.strip().splitlines()
    resume = f"gim {command[0]} --resume {tmp_path / 'r'}"
    assert error[-1].startswith("gim: stopped by SIGTERM") and error[-1].endswith(f"continue with: {resume}")
    assert main([*command, "--resume", str(tmp_path / "r")]) == 0
    run = RunFolder.open(tmp_path / "r")
    assert [row["step"] for row in run.metrics()] == [2, 4]
    assert (run.path / "probe.json").exists() == (command == ["demo"]), "a resumed demo goes on to probe"


def test_a_demo_refuses_a_preset_or_config_file_of_the_other_task(tmp_path, capsys):
    from greedy_infomax.config import to_dict

    (tmp_path / "audio.yaml").write_text(yaml.safe_dump(to_dict(PRESETS["speech-smoke"])))
    for argv in (["demo", "audio", "--preset", "smoke"], ["demo", "--config", str(tmp_path / "audio.yaml")]):
        assert _exit_code([*argv, "--output", str(tmp_path)]) == 2
        assert "but this is the" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [tmp_path / "audio.yaml"], "nothing made"


def test_a_config_file_combines_with_the_options_after_it(tmp_path):
    """The file alone (a limit of 8 under batches of 16) is invalid; with --data.batch_size 4 after it, it is not."""
    from greedy_infomax.config import to_dict

    values = to_dict(PRESETS["smoke"])
    values["data"]["limit"] = 8
    (tmp_path / "smoke.yaml").write_text(yaml.safe_dump(values))
    argv = [
        "pretrain",
        "--config",
        str(tmp_path / "smoke.yaml"),
        "--data.batch_size",
        "4",
        "--train.max_steps",
        "1",
        "--output",
        str(tmp_path),
        "--name",
        "r",
    ]
    assert _exit_code(argv) == 0
    assert RunFolder.open(tmp_path / "r").config.data.limit == 8


@pytest.mark.skipif(shutil.which("festival") is None, reason="needs Debian's festival (setup.sh installs it)")
def test_data_speech_corpus_generates_a_readable_corpus(tmp_path):
    from greedy_infomax.data.librispeech import read_librispeech

    assert main(["data", "speech-corpus", "--root", str(tmp_path), "--speakers", "2", "--utterances", "2"]) == 0
    corpus = read_librispeech(tmp_path)
    assert len(corpus.speakers) == 2 and corpus.splits["train"] and corpus.splits["test"]


def test_supervised_objective_sized_for_other_classes_is_one_line(tmp_path, capsys):
    code = main(
        [
            "pretrain",
            "--preset",
            "smoke",
            "--objective.name",
            "supervised",
            "--objective.num_classes",
            "5",
            "--output",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert "pass --objective.num_classes 10" in capsys.readouterr().err


def test_sequential_curriculum_with_one_trained_module_is_one_line(tmp_path, capsys):
    code = main(
        [
            "pretrain",
            "--preset",
            "smoke",
            "--train.curriculum",
            "sequential",
            "--train.train_module",
            "2",
            "--output",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert "train.curriculum" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("gpu", "train.device: 'gpu' is not a device"),
        ("mps", "train.device: 'mps' is not a device this runs on"),
        ("cuda:7", "train.device: cuda:7 asked for, but torch sees"),
    ],
)
def test_an_unusable_device_is_one_line_and_the_name_can_be_used_again(tmp_path, capsys, device, message):
    argv = [
        "pretrain",
        "--preset",
        "smoke",
        "--data.limit",
        "64",
        "--train.max_steps",
        "1",
        "--output",
        str(tmp_path),
        "--name",
        "again",
    ]
    assert _exit_code([*argv, "--train.device", device]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gim: error: {message}") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "again").exists(), "a failed start leaves no run folder behind"
    assert _exit_code([*argv, "--train.device", "cpu"]) == 0


@pytest.mark.parametrize("name", ["mine", "."])
def test_a_failed_start_in_a_folder_that_was_there_removes_nothing_of_it(tmp_path, capsys, name):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    output = tmp_path / "mine" if name == "." else tmp_path
    argv = ["pretrain", "--preset", "smoke", "--train.device", "cuda:7", "--output", str(output), "--name", name]
    assert _exit_code(argv) == 2
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "--presets", "smoke", "--steps", "1", "--output", "/proc/no/bench"],
        ["bench", "--presets", "smoke", "--steps", "1", "--device", "cuda:7"],
        ["embed", "RUN", "--module", "1", "--output", "/proc/no/such.npz"],
        ["embed", "RUN", "--module", "1", "--device", "cuda:7"],
        ["probe", "RUN", "--device", "cuda:7"],
        ["pretrain", "--preset", "smoke", "--output", "RUN/metrics.jsonl"],
    ],
)
def test_a_path_or_device_that_cannot_be_used_is_one_line_before_any_work(run_copy, capsys, argv):
    assert _exit_code([word.replace("RUN", str(run_copy)) for word in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gim: error: ") and len(err.strip().splitlines()) == 1, "one line and no progress: " + err


def test_data_with_a_bad_option_leaves_no_new_folder(tmp_path, capsys):
    assert _exit_code(["data", "speech-corpus", "--root", str(tmp_path / "new"), "--speakers", "0"]) == 2
    assert "at least 1 speaker" in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_data_with_a_root_that_cannot_be_a_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    assert _exit_code(["data", "speech-corpus", "--root", str(tmp_path / "a-file"), "--speakers", "1"]) == 2
    assert "--root: cannot create the folder" in capsys.readouterr().err


def test_a_config_file_of_an_audio_run_starts_an_audio_run(tmp_path, speech_root):
    """Without --preset the options were the default vision preset's, and an audio file was refused."""
    from greedy_infomax.config import to_dict

    config = PRESETS["speech-smoke"]
    data = replace(config.data, root=str(speech_root), limit=4)
    (tmp_path / "audio.yaml").write_text(yaml.safe_dump(to_dict(replace(config, data=data))))
    assert (
        _exit_code(
            [
                "pretrain",
                "--config",
                str(tmp_path / "audio.yaml"),
                "--train.max_steps",
                "1",
                "--output",
                str(tmp_path),
                "--name",
                "a",
            ]
        )
        == 0
    )
    assert RunFolder.open(tmp_path / "a").config == replace(config, data=data, train=replace(config.train, max_steps=1))


def test_a_damaged_config_file_is_one_line(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("train:\n  lr: [1e-3\n")
    assert _exit_code(["pretrain", "--config", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gim: error: {tmp_path / 'bad.yaml'}: ") and len(err.strip().splitlines()) == 1, err


def test_probe_and_embed_a_kept_checkpoint_step(tmp_path, capsys):
    """train.keep_every keeps step 4 of 8; `--step 4` probes it into probes/step-00000004/ and embeds it, next to
    the newest checkpoint's own probe; a step not kept is one line naming those that were."""
    assert (
        main(
            [
                "pretrain",
                "--preset",
                "smoke",
                "--output",
                str(tmp_path),
                "--name",
                "r",
                "--data.limit",
                "128",
                "--train.checkpoint_every",
                "2",
                "--train.keep_every",
                "4",
            ]
        )
        == 0
    )
    run = tmp_path / "r"
    assert RunFolder.open(run).checkpoint_steps() == [4, 6, 8]
    assert main(["probe", str(run), "--step", "4", "--probe.epochs", "1"]) == 0
    assert json.loads((run / "probes" / "step-00000004" / "probe.json").read_text())["step"] == 4
    assert main(["embed", str(run), "--step", "4", "--module", "1", "--data.limit", "16"]) == 0
    at_4 = np.load(run / "embeddings" / "module-1-test-step-00000004.npz")["features"]
    assert main(["embed", str(run), "--module", "1", "--data.limit", "16"]) == 0
    newest = np.load(run / "embeddings" / "module-1-test.npz")["features"]
    assert at_4.shape == newest.shape and not np.array_equal(at_4, newest)
    capsys.readouterr()
    assert _exit_code(["probe", str(run), "--step", "2"]) == 2
    assert "kept no checkpoint of that step (kept: 4, 6, 8)" in capsys.readouterr().err


@pytest.mark.parametrize("objective", ["clapp", "simclr", "barlow_twins", "vicreg"])
def test_pretrain_and_probe_with_each_other_local_objective(tmp_path, objective):
    """The smoke preset trained for 2 steps by every module's own CLAPP, SimCLR, Barlow Twins or VICReg loss, then
    probed from its run folder alone."""
    assert (
        main(
            [
                "pretrain",
                "--preset",
                "smoke",
                "--objective.name",
                objective,
                "--output",
                str(tmp_path),
                "--name",
                "r",
                "--data.limit",
                "64",
                "--train.max_steps",
                "2",
            ]
        )
        == 0
    )
    run = RunFolder.open(tmp_path / "r")
    [row] = run.metrics()
    assert all(np.isfinite(row[f"loss/module{k}"]) for k in (1, 2, 3)), row
    assert main(["probe", str(run.path), "--probe.epochs", "1", "--probe.random_init", "false"]) == 0
    results = json.loads((run.path / "probe.json").read_text())
    assert results["method"] == f"greedy {objective} (3 modules)"
    assert [row["module"] for row in results["trained"]] == [1, 2, 3]


def test_pretrain_and_probe_audio_with_clapp(tmp_path, speech_root):
    assert (
        main(
            [
                "pretrain",
                "--preset",
                "speech-smoke",
                "--objective.name",
                "clapp",
                "--data.root",
                str(speech_root),
                "--data.limit",
                "4",
                "--output",
                str(tmp_path),
                "--name",
                "r",
                "--train.max_steps",
                "2",
            ]
        )
        == 0
    )
    run = RunFolder.open(tmp_path / "r")
    assert all(np.isfinite(row[f"loss/module{k}"]) for row in run.metrics() for k in range(1, 7))
    assert main(["probe", str(run.path), "--probe.random_init", "false", "--probe.log_mel", "false"]) == 0
    results = json.loads((run.path / "probe.json").read_text())
    assert results["method"] == "greedy clapp (6 modules)"
    assert [row["module"] for row in results["trained"]] == [1, 2, 3, 4, 5, 6]


def test_a_second_writer_of_a_live_run_is_one_line_naming_the_holder_and_changes_nothing(run_copy, capsys):
    files = {path: path.read_bytes() for path in run_copy.rglob("*") if path.is_file() and path.name != "lock"}
    with run_lock_holder(run_copy) as holder:
        assert _exit_code(["pretrain", "--resume", str(run_copy), "--train.lr", "0.5", "--train.max_steps", "8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gim: error: {run_copy} is in use by pid {holder.pid} ") and len(err.splitlines()) == 1
    assert {path: path.read_bytes() for path in run_copy.rglob("*") if path.is_file() and path.name != "lock"} == files


@pytest.mark.parametrize("name", ["../escaped", ".", "ABSOLUTE"])
def test_a_run_name_that_is_not_one_folder_name_is_refused(tmp_path, capsys, name):
    output = tmp_path / "runs"
    name = name.replace("ABSOLUTE", str(tmp_path / "escaped"))
    assert _exit_code(["pretrain", "--preset", "smoke", "--output", str(output), "--name", name]) == 2
    assert "must be one folder name inside" in capsys.readouterr().err
    assert not (tmp_path / "escaped").exists() and not (output / "meta.json").exists()


def test_a_torn_metrics_line_does_not_block_the_resume(run_copy):
    """The issue's reproduction: garbage after the last row, as a crash in the middle of a write leaves."""
    with open(run_copy / "metrics.jsonl", "a") as file:
        file.write("garbage{\n")
    with pytest.warns(UserWarning, match="metrics.jsonl: removed its last line, cut short by a crash"):
        assert _exit_code(["pretrain", "--resume", str(run_copy), "--train.max_steps", "8"]) == 0
    steps = [json.loads(line)["step"] for line in (run_copy / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 8


def test_kept_checkpoints_and_validation_rows_survive_a_racing_writer_and_a_torn_line(tmp_path, capsys):
    """train.keep_every, train.validation and --step with the lock and the torn-line repair: the refused writer
    and the repaired line leave the kept checkpoints and the per-epoch validation rows as an unbroken run has them."""
    argv = [
        "pretrain",
        "--preset",
        "smoke",
        "--output",
        str(tmp_path),
        "--name",
        "r",
        "--data.limit",
        "128",
        "--train.validation",
        "0.25",
        "--train.epochs",
        "2",
        "--train.max_steps",
        "6",
        "--train.log_every",
        "1",
        "--train.checkpoint_every",
        "2",
        "--train.keep_every",
        "4",
    ]
    assert main(argv) == 0  # 96 images trained on: 6 steps of 16 per epoch
    run = tmp_path / "r"
    with run_lock_holder(run) as holder:
        assert _exit_code(["pretrain", "--resume", str(run), "--train.max_steps", "12"]) == 2
    assert f"is in use by pid {holder.pid}" in capsys.readouterr().err
    with open(run / "metrics.jsonl", "a") as file:
        file.write('{"step": 7, "loss/mod')
    with pytest.warns(UserWarning, match="removed its last line"):
        assert _exit_code(["pretrain", "--resume", str(run), "--train.max_steps", "12"]) == 0
    rows = RunFolder.open(run).metrics()
    assert [row["step"] for row in rows if "loss/module1" in row] == list(range(1, 13))
    assert [row["step"] for row in rows if "val_loss/module1" in row] == [6, 12]
    assert RunFolder.open(run).checkpoint_steps() == [4, 8, 10, 12]
    assert main(["embed", str(run), "--step", "4", "--module", "1", "--data.limit", "16"]) == 0


def test_a_full_disk_while_logging_is_one_line_and_the_run_resumes(tmp_path):
    """A real write error: every file is limited to 1500 bytes (RLIMIT_FSIZE), so the metrics or the TensorBoard
    file fills in the middle of a write, as on a full disk; tensorboardX used to add tracebacks from its thread and
    its exit hook."""
    resource = pytest.importorskip("resource")
    argv = [
        "pretrain",
        "--preset",
        "smoke",
        "--output",
        str(tmp_path),
        "--name",
        "r",
        "--train.log_every",
        "1",
        "--train.max_steps",
        "8",
        "--data.limit",
        "128",
    ]

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1500, 1500))

    repository = pathlib.Path(__file__).resolve().parents[1]
    full = subprocess.run(
        [sys.executable, "-m", "greedy_infomax.cli", *argv],
        capture_output=True,
        text=True,
        preexec_fn=limit_file_size,
        cwd=repository,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(repository)},
    )
    lines = [
        line
        for line in full.stderr.replace("\r", "\n").splitlines()
        if line and "step/s" not in line and "s/step" not in line and "?step" not in line
    ]
    assert full.returncode == 2 and len(lines) == 1, full.stderr
    assert re.match(r"gim: error: could not write \S+ \(File too large\); no checkpoint was saved yet", lines[0])
    assert _exit_code(["pretrain", "--resume", str(tmp_path / "r")]) == 0
    assert [row["step"] for row in RunFolder.open(tmp_path / "r").metrics()] == list(range(1, 9))


def test_a_resume_with_every_checkpoint_deleted_is_one_line_and_keeps_the_metrics(run_copy, capsys):
    shutil.rmtree(run_copy / "checkpoints")
    metrics = (run_copy / "metrics.jsonl").read_bytes()
    assert _exit_code(["pretrain", "--resume", str(run_copy)]) == 2
    err = capsys.readouterr().err
    assert "saved checkpoints and none is left" in err and len(err.strip().splitlines()) == 1
    assert (run_copy / "metrics.jsonl").read_bytes() == metrics


@pytest.mark.parametrize("step", [[], ["--step", "6"]])
def test_probe_of_a_run_folder_it_cannot_write_fails_before_probing(run_copy, capsys, monkeypatch, step):
    """Also for a kept step, whose report goes into RUN/probes/step-N/."""
    monkeypatch.setattr(workflows, "probe_run", lambda *args, **kwargs: pytest.fail("probed before the check"))
    report = run_copy / ("probes/step-00000006" if step else "") / "probe.json"
    with read_only(run_copy):
        assert _exit_code(["probe", str(run_copy), *step]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gim: error: cannot write {report} (") and "nothing was probed" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("where", ["read-only folder", "existing folder"])
def test_embed_to_a_place_it_cannot_write_fails_before_embedding(run_copy, tmp_path, capsys, monkeypatch, where):
    monkeypatch.setattr(workflows, "embed_run", lambda *args, **kwargs: pytest.fail("embedded before the check"))
    (tmp_path / "out" / "features.npz").mkdir(parents=True)
    argv = ["embed", str(run_copy), "--module", "1", "--output"]
    if where == "existing folder":
        assert _exit_code([*argv, str(tmp_path / "out" / "features.npz")]) == 2
        assert "features.npz is a folder, not a file to write; nothing was embedded" in capsys.readouterr().err
        return
    with read_only(tmp_path / "out"):
        assert _exit_code([*argv, str(tmp_path / "out" / "other.npz")]) == 2
    assert "cannot write" in capsys.readouterr().err and not (tmp_path / "out" / "other.npz").exists()


def test_an_absurd_learning_rate_stops_with_a_checkpoint_that_a_sane_resume_trains_from(tmp_path, capsys):
    argv = ["pretrain", "--preset", "smoke", "--output", str(tmp_path), "--name", "r", "--data.limit", "64"]
    assert _exit_code([*argv, "--train.lr", "1e10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    named = re.search(r"the newest checkpoint, (\S+), is from before", err)
    assert err.startswith("gim: error: module 1 diverged by step") and named, err
    assert _exit_code(["pretrain", "--resume", str(tmp_path / "r"), "--train.lr", "1e-3"]) == 0
    run = RunFolder.open(tmp_path / "r")
    assert run.latest_checkpoint().name == "step-00000004" and pathlib.Path(named[1]).name == "step-00000000"
    assert all(row["loss/module1"] < 2 for row in run.metrics()), "trained from the weights before the blow-up"


@pytest.mark.parametrize("preset", [[], ["--preset", "smoke"]])
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"train: 7\n", "train: must be a section of options, got 7"),
        (b"\xff\xfetrain: {}\n", "not UTF-8 text (byte 0xff at offset 0)"),
        (b"", "holds nothing"),
    ],
)
def test_a_config_file_mistake_is_one_line_whatever_else_is_given(tmp_path, capsys, preset, content, message):
    """`train: 7` passed silently with or without --preset, and a file not in UTF-8 gave a traceback."""
    (tmp_path / "bad.yaml").write_bytes(content)
    assert _exit_code(["pretrain", *preset, "--config", str(tmp_path / "bad.yaml"), "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"gim: error: {tmp_path / 'bad.yaml'}: {message}" + err.split(message, 1)[1] and err.count("\n") == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bad.yaml"], "no run folder"
