"""Process settings: the tuned allocator hands freed tensor buffers back without new page faults; host tensors
reach the training device intact."""

import subprocess
import sys

import pytest
import torch
from conftest import DEVICES

from greedy_infomax.placement import to_device

FAULTS_OF_A_SECOND_BUFFER = """
import resource, sys, torch
from greedy_infomax.placement import tune_allocator
if sys.argv[1] == "tuned":
    tune_allocator()

def faults() -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(16 << 20).fill_(1.0) * 2   # two 64 MiB buffers, above any mmap threshold glibc allows
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

for _ in range(2):
    faults()
print(min(faults() for _ in range(8)))   # where glibc maps each buffer anew, the heap reuses one at least once
"""


def test_tuned_allocator_reuses_freed_buffers_where_glibc_maps_them_again():
    counts = {}
    for allocator in ("glibc", "tuned"):
        done = subprocess.run(
            [sys.executable, "-c", FAULTS_OF_A_SECOND_BUFFER, allocator], capture_output=True, text=True, check=True
        )
        counts[allocator] = int(done.stdout.split()[-1])
    assert counts["tuned"] * 10 < counts["glibc"], counts


RESIDENT_AFTER_A_FREED_BUFFER = """
import resource, sys, torch
from greedy_infomax.placement import tune_allocator
tune_allocator("training")
if sys.argv[1] == "probing":
    tune_allocator("probing")

def resident_mib() -> float:
    return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize() / 2**20

before = resident_mib()
features = torch.empty(64 << 20).fill_(1.0)  # 256 MiB of features, freed when the probe of one encoder ends
del features
print(resident_mib() - before)
"""


def test_probing_hands_a_freed_feature_tensor_back_where_training_keeps_it():
    kept = {}
    for phase in ("training", "probing"):
        done = subprocess.run(
            [sys.executable, "-c", RESIDENT_AFTER_A_FREED_BUFFER, phase], capture_output=True, text=True, check=True
        )
        kept[phase] = float(done.stdout.split()[-1])
    assert kept["training"] > 200 and kept["probing"] < 20, kept


@pytest.mark.parametrize("device", DEVICES)
def test_to_device_keeps_values_dtype_and_shape(device):
    host = torch.arange(24, dtype=torch.uint8).reshape(2, 3, 4)[:, None]  # a view, as the loaders pass
    tensor = to_device(host, torch.device(device))
    assert tensor.device.type == device and tensor.dtype == torch.uint8 and tensor.shape == (2, 1, 3, 4)
    assert tensor.cpu().flatten().tolist() == list(range(24))
