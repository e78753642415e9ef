"""The cross-check with the original code, pinned: benchmarks/cross_check.py ran the original and ours on the same
weights, inputs and negatives; here our paper models, rebuilt from its seed and scales, on its input, replaying the
negatives the original drew (stored in benchmarks/results/), must give the losses the original computed. Needs only
this project. The cross-check's own functions build and replay, so this test and the script cannot drift apart."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
_spec = importlib.util.spec_from_file_location("cross_check", BENCHMARKS / "cross_check.py")
cross_check = importlib.util.module_from_spec(_spec)
sys.modules["cross_check"] = cross_check  # its dataclasses look their module up while it loads
_spec.loader.exec_module(cross_check)

REPORT = json.loads((BENCHMARKS / "results" / "cross-check.json").read_text())
PINS = torch.load(BENCHMARKS / "results" / "cross-check-negatives.pt")
PINNED = [case for case in REPORT["cases"] if case["dtype"] == "float32" and case["name"] in PINS]


def test_every_model_is_pinned_and_the_stored_check_passed():
    assert {case["name"] for case in PINNED} == {"vision-gim-1x1", "vision-cpc-1x1", "audio-gim-1x1", "audio-cpc-1x1"}
    assert REPORT["passed"] and all(case["passed"] for case in REPORT["cases"])


@pytest.mark.parametrize("case", PINNED, ids=[case["name"] for case in PINNED])
def test_our_losses_are_the_originals_on_its_negatives(case):
    pinned = cross_check.Case(case["task"], case["model"], case["groups"], case["per_group"], case["seed"])
    modules = cross_check.our_modules(pinned)
    cross_check.scale_predictors(modules, case["predictor_scales"])
    replay = [
        [([indices.long() for indices in negatives], starts) for negatives, starts in groups]
        for groups in PINS[case["name"]]
    ]
    losses = cross_check.our_losses(modules, cross_check.case_input(pinned), replay)
    assert losses == pytest.approx([module["loss_original"] for module in case["modules"]], rel=1e-5)
