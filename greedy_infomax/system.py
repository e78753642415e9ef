"""Process-level settings that make training faster on CPU."""
from __future__ import annotations

import ctypes
import ctypes.util

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
