"""gim bench: FLOP counting, the matmul ceiling, one real bench of the smoke preset, and train.compile."""

from dataclasses import asdict, replace

import pytest
import torch
from torch import nn

from greedy_infomax.bench import (
    GIB,
    SETTLE_LIMIT,
    Case,
    Schedule,
    bench,
    build_training,
    count_flops,
    default_precisions,
    failure,
    matmul_ceiling,
    methods_of,
    table,
    warm_up,
)
from greedy_infomax.engines.local import train_step
from greedy_infomax.isolation import run_frozen
from greedy_infomax.objectives import BarlowTwins
from greedy_infomax.tasks import PRESETS, prepare_modules


def test_flop_count_covers_forward_and_backward():
    layer = nn.Linear(64, 32)
    x = torch.randn(8, 64, requires_grad=True)
    flops = count_flops(lambda: layer(x).sum().backward())
    assert flops == 3 * 2 * 8 * 64 * 32  # forward, gradient of the input, gradient of the weight


def test_matmul_ceiling_is_a_rate():
    assert matmul_ceiling(torch.float32, torch.device("cpu"), size=128, seconds=0.05) > 0.1


def test_bench_of_the_smoke_preset_measures_every_case(tmp_path):
    report = bench(
        ("smoke",), ("end-to-end", "simultaneous"), ("fp32",), schedule=Schedule(1, 2, 1), progress=lambda line: None
    )
    records = {record["mode"]: record for record in report["records"]}
    assert set(records) == {"end-to-end", "simultaneous", "data"}
    assert not any("error" in record for record in records.values()), records
    # The same encoder: end-to-end backpropagates through every stage, GIM runs the same convolutions per module.
    e2e, gim = records["end-to-end"], records["simultaneous"]
    assert e2e["flops_per_step"] > 0 and gim["flops_per_step"] > 0
    assert gim["peak_above_model_bytes"] >= 0 and e2e["samples_per_second"] > 0
    assert records["data"]["samples_per_second"] > 0
    assert report["ceilings_gflops"]["fp32"] > 0
    text = table(report)
    assert "| smoke | fp32 | simultaneous |" in text and "data / training" in text


def test_each_timed_group_is_divided_by_the_ceiling_measured_just_before_it(monkeypatch):
    """A shared CPU's ceiling drifts within minutes, so each group of steps is compared with its own."""
    from greedy_infomax import bench as bench_module

    measured = iter([100.0, 200.0, 400.0])
    monkeypatch.setattr(bench_module, "matmul_ceiling", lambda dtype, device, seconds: next(measured))
    record = bench_module.measure_training(Case("smoke", "simultaneous", "fp32", "cpu", None, Schedule(1, 3, 3)))
    assert record["ceilings_gflops"] == [100.0, 200.0, 400.0]
    rates = [record["flops_per_step"] / seconds / 1e9 for seconds in record["seconds_per_step"]]
    assert record["ceiling_fraction"] == pytest.approx(sorted(r / c for r, c in zip(rates, (100, 200, 400)))[1])


@pytest.mark.parametrize(
    "growing_steps, warmup, expected", [(0, 1, 1), (3, 1, 4), (3, 5, 5), (100, 1, 1 + SETTLE_LIMIT), (100, 0, 0)]
)
def test_warm_up_goes_on_while_steps_still_raise_the_peak_memory(monkeypatch, growing_steps, warmup, expected):
    """A step that grows the heap pays page faults, so timing starts once a step leaves the peak where it was."""
    from greedy_infomax import bench as bench_module

    steps = []
    monkeypatch.setattr(bench_module, "memory_peak", lambda device: 1000 * (1 + min(len(steps), growing_steps)))
    assert warm_up(lambda: steps.append(1), warmup, torch.device("cpu")) == expected == len(steps)


def test_compiled_modules_train_like_plain_ones_and_keep_parameter_names():
    """Blocks and objectives compiled: the same negatives are drawn, so the losses agree up to rounding."""
    config = PRESETS["smoke"]
    x = torch.randn(4, 1, 28, 28)
    results = []
    for compiled in (False, True):
        modules = prepare_modules(
            replace(config, train=replace(config.train, compile=compiled, device="cpu", precision="fp32")),
            1,
            torch.device("cpu"),
        )
        _, losses, _ = train_step(modules, x, range(3), (2, 0))
        results.append((list(modules.state_dict()), torch.stack(losses), modules))
    (names, plain_losses, plain), (compiled_names, compiled_losses, compiled) = results
    assert names == compiled_names
    torch.testing.assert_close(compiled_losses, plain_losses, rtol=1e-4, atol=1e-5)
    for a, b in zip(plain.parameters(), compiled.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def test_each_compiled_block_and_objective_is_one_graph_with_a_dynamo_cache_of_its_own():
    """nn.Module.compile() traced an nn.Sequential one residual block at a time, into one cache of 8 graphs shared by
    every module, which no-grad passes at new batch sizes (probes, frozen modules) filled: dynamo then ran eagerly.
    The objective, negative sampling included, is one graph too."""
    from torch._dynamo.utils import counters

    config = PRESETS["smoke"]
    train = replace(config.train, compile=True, device="cpu", precision="fp32", channels_last=False)
    modules = prepare_modules(replace(config, train=train), 1, torch.device("cpu"))
    counters.clear()
    train_step(modules, torch.randn(4, 1, 28, 28), range(3), (2, 0))
    assert counters["stats"]["unique_graphs"] == 2 * len(modules)
    for batch in (8, 5, 3, 2):
        run_frozen(list(modules), torch.randn(batch, 1, 28, 28))
    assert counters["frames"]["ok"] == counters["frames"]["total"], dict(counters["frames"])


def test_table_projects_the_paper_schedule_from_the_measured_rate():
    record = {
        "preset": "paper-stl10",
        "mode": "simultaneous",
        "precision": "bf16",
        "samples_per_second": 300 * 100_000 / 3600 / 2,
        "flops_per_step": 2e12,
        "gflops_per_second": 100.0,
        "ceiling_fraction": 0.5,
        "peak_bytes": 2 << 30,
        "peak_above_model_bytes": 1 << 30,
    }
    machine = {"gpu": None, "cpu": "test", "threads": 1, "torch": torch.__version__, "date": "today"}
    report = {
        "ceilings_gflops": {"bf16": 200.0},
        "records": [record, {**record, "preset": "fashion-mnist"}],
        "machine": machine,
        "switches": {},
        "allocator": "tuned",
    }
    rows = [line for line in table(report).splitlines() if line.startswith("| paper-stl10 | bf16")]
    assert rows and rows[0].endswith("| 2 |")  # 3e7 images at 4167 images/s: 2 hours
    assert next(line for line in table(report).splitlines() if line.startswith("| fashion-mnist")).endswith("| — |")


def test_bench_measures_bf16_by_default_only_where_it_is_native(monkeypatch):
    from greedy_infomax import placement

    for native, expected in ((True, ("fp32", "bf16")), (False, ("fp32",))):
        monkeypatch.setattr(placement, "native_bf16", lambda device: native)
        assert default_precisions("cpu") == expected


def test_bench_measures_each_method_after_gim_against_gim_in_the_same_run(tmp_path):
    """Each method is the preset trained its way (a two-view objective on two views, counted as one sample), in a
    row of its own with its speed and memory over GIM's."""
    report = bench(
        ("smoke",),
        ("simultaneous",),
        ("fp32",),
        schedule=Schedule(1, 2, 1),
        progress=lambda line: None,
        methods=("gim-overlap", "barlow-twins"),
    )
    records = {record.get("method") or record["mode"]: record for record in report["records"]}
    assert set(records) == {"simultaneous", "gim-overlap", "barlow-twins", "data"}
    assert not any("error" in record for record in records.values()), records
    gim, twins = records["simultaneous"], records["barlow-twins"]
    assert twins["samples_per_second"] > 0 and twins["flops_per_step"] != gim["flops_per_step"]
    assert twins["samples_per_second_vs_gim"] == twins["samples_per_second"] / gim["samples_per_second"]
    assert twins["peak_above_model_bytes_vs_gim"] is not None
    text = table(report)
    assert "| smoke | fp32 | barlow-twins |" in text and "| smoke | fp32 | gim-overlap |" in text
    assert "vs. GIM" in text and "| smoke | fp32 | simultaneous |" in text


def test_a_methods_case_trains_the_method_and_counts_images_not_views():
    case = Case("smoke", "simultaneous", "fp32", "cpu", 8, Schedule(1, 1, 1), method="barlow-twins")
    config = case.config()
    assert config.objective.name == "barlow_twins" and config.model.num_modules == 3
    assert (
        Case("smoke", "simultaneous", "fp32", "cpu", 8, Schedule(1, 1, 1), method="gim-overlap").config().model.overlap
        == 1
    )
    training = build_training(case)
    assert all(isinstance(module.objective, BarlowTwins) for module in training.modules)
    assert training.x.shape[0] == 16 and training.samples == 8
    assert methods_of("speech-smoke", ("all",)) == ["gim-overlap", "clapp"]


def test_methods_are_measured_against_gim_simultaneous_even_where_modes_leave_it_out(monkeypatch):
    """GIM of the same preset and precision is their reference: it is measured, and the JSON holds each method's
    ratios to it as the table shows them; a method whose objective the task lacks is skipped."""
    from greedy_infomax import bench as bench_module

    measured = {None: (100.0, GIB), "clapp": (50.0, 2 * GIB)}
    monkeypatch.setattr(bench_module, "matmul_ceiling", lambda dtype, device: 1.0)
    monkeypatch.setattr(
        bench_module,
        "run_case",
        lambda case: {
            **asdict(case),
            "wall_seconds": 0.0,
            "samples_per_second": measured[case.method][0],
            "peak_above_model_bytes": measured[case.method][1],
            **dict.fromkeys(("flops_per_step", "gflops_per_second", "ceiling_fraction", "peak_bytes"), 1),
        },
    )
    report = bench(
        ("speech-smoke",), ("end-to-end",), ("fp32",), progress=lambda line: None, methods=("clapp", "simclr")
    )
    cases = [(record["mode"], record["method"]) for record in report["records"]]
    assert cases == [("end-to-end", None), ("simultaneous", None), ("simultaneous", "clapp"), ("data", None)]
    clapp = report["records"][2]
    assert (clapp["samples_per_second_vs_gim"], clapp["peak_above_model_bytes_vs_gim"]) == (0.5, 2.0)
    assert "| speech-smoke | fp32 | clapp | 50 | 0.50 | 2.00 | 2.00 |" in table(report).splitlines()


def test_a_failed_case_says_why_and_a_silent_kill_points_at_memory():
    assert failure(1, "Traceback\nGimError: no data\n") == "GimError: no data"
    assert "out of memory" in failure(-9, "")
    assert failure(-11, "") == "exit -11"
