"""What the hardware can do fast, and process-level settings that make training faster on CPU."""
from __future__ import annotations

import ctypes
import ctypes.util

import torch

# CPU features with bf16 arithmetic in hardware (x86 AVX512-BF16 or AMX; Arm BF16 or SVE BF16), as torch names them
_BF16_CPU_FEATURES = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")

# glibc mallopt parameters
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def tune_allocator() -> None:
    """Keep freed tensor buffers in the heap instead of returning them to the kernel on every step.

    glibc serves large allocations with mmap and unmaps them on free, so every training step pays page
    faults to re-acquire the same buffers; raising the thresholds gave 1.2-1.5x on these 2-core machines
    (shared/spec/cpu-performance.md). Does nothing where glibc is absent.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)   # glibc's maximum on 64-bit
    mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    mallopt(_M_TOP_PAD, 256 << 20)


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 in hardware; elsewhere autocast emulates it, far slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        capabilities = torch.cpu.get_capabilities()
        return any(capabilities.get(feature, False) for feature in _BF16_CPU_FEATURES)
    return False
