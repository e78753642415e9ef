"""Where and how modules run: the device, precision, memory format, compilation, activation recomputation,
determinism and the CPU allocator. Training, probing and embedding all place modules through here, so a module
runs the same way whichever of them built it."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import types
import warnings
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn
from torch.utils import checkpoint as activation_checkpoint

from greedy_infomax.config import TrainConfig, check_lenders_step
from greedy_infomax.errors import GimError

# CPU features with bf16 arithmetic in hardware (x86 AVX512-BF16 or AMX; Arm BF16 or SVE BF16), as torch names them
_BF16_CPU_FEATURES = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")

# glibc mallopt parameters
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -2, -3, -4, -8
_MAPPINGS = 65536  # glibc's default M_MMAP_MAX


def to_device(host: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on `device`. To a GPU it goes through pinned memory without blocking: a plain copy first waits
    for every kernel queued so far (the previous step's), which leaves the GPU idle while the host prepares the
    next batch."""
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


def tune_allocator(phase: Literal["training", "probing"] = "training") -> None:
    """Set up glibc malloc for the work ahead; does nothing where glibc is absent.

    training: keep freed tensor buffers in the process for the next step instead of returning them to the kernel.
    glibc gives each buffer above its mmap threshold (32 MiB at most) a mapping of its own and unmaps it on free,
    so every step pays page faults and page zeroing to get the same buffers back. At the paper's geometry one heap
    serving every buffer and never trimmed trains markedly faster on a CPU (`gim bench --allocator glibc` against
    the default `tuned` measures it; docs/performance.md has the numbers); peak RSS rises, as the heap keeps its
    high-water mark.

    probing: buffers above 32 MiB are mapped on their own again, and what the heap holds free is handed back. A
    probe allocates its feature tensors once per encoder (gigabytes on a large split), where the heap of training
    would keep each encoder's and fragment between them.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_ARENA_MAX, 1)  # one heap for every thread, so that holds in OpenMP threads too
    if phase == "probing":
        mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # a fixed threshold: glibc's own rises to the largest buffer freed
        mallopt(_M_MMAP_MAX, _MAPPINGS)
        libc.malloc_trim(0)
        return
    mallopt(_M_MMAP_MAX, 0)  # no mapping per buffer: every buffer comes from the heap
    mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)  # never hand the heap's top back
    mallopt(_M_TOP_PAD, 256 << 20)  # and grow it in large steps


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 in hardware; elsewhere autocast emulates it, far slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu" and hasattr(torch.cpu, "get_capabilities"):  # older torch cannot tell: say no (fp32)
        capabilities = torch.cpu.get_capabilities()
        return any(capabilities.get(feature, False) for feature in _BF16_CPU_FEATURES)
    return False


def resolve_device(name: str, option: str = "train.device") -> torch.device:
    """The device `option` names, "auto" being a GPU if torch sees one; one it cannot use is a config error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise GimError(f"{option}: {name!r} is not a device this runs on (cpu, cuda, cuda:1, auto)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise GimError(f"{option}: {name} asked for, but torch sees {torch.cuda.device_count()} CUDA GPUs")
    return device


def trained_indices(options: TrainConfig, num_modules: int) -> range:
    """0-based indices of the modules that learn: all of them, or only `train_module`."""
    k = options.train_module
    return range(num_modules) if k is None else range(k - 1, k)


def configure(
    modules: nn.ModuleList, options: TrainConfig, device: torch.device, with_optimizers: bool = True
) -> nn.ModuleList:
    """Place modules on the device in the memory format and precision of `options`; optimisers on trained ones."""
    if with_optimizers and options.train_module is not None and options.train_module > len(modules):
        raise GimError(f"train.train_module: must be at most {len(modules)}, got {options.train_module}")
    if with_optimizers and any(module.lookahead for module in modules):  # a config checks this before; Python not
        check_lenders_step(options, "isolate(overlap=N)")
    if options.backward_chunks > 1 and any(
        isinstance(layer, nn.modules.batchnorm._BatchNorm) for module in modules for layer in module.block.modules()
    ):
        raise GimError(
            "train.backward_chunks: a block with BatchNorm normalises each part by its own statistics, not the "
            "batch's; use 1"
        )
    _set_determinism(options.deterministic, device)
    modules = modules.to(device)
    if options.channels_last:
        modules = to_channels_last(modules)
    dtype = autocast_dtype(options.precision, device)
    for index, module in enumerate(modules):
        module.autocast_dtype = dtype
        module.backward_chunks = options.backward_chunks
        if options.recompute_activations:
            recompute_in_backward(module.block)
        if options.compile:
            compile_in_place(module.block)
            compile_in_place(module.objective)
        if with_optimizers and index in trained_indices(options, len(modules)):
            module.configure_optimizer(options.lr, options.weight_decay)
    return modules


def to_channels_last(modules: nn.ModuleList) -> nn.ModuleList:
    """Channels-last for every convolution except strided 1x1 ones reading fewer than 8 channels: on AVX2-only CPUs
    oneDNN gets their weight gradient wrong in that layout (with torch 2.13: wrong, and not the same twice), so
    they keep the standard layout for weight and input, and run eagerly under `train.compile` (whose graph could
    choose channels-last again). Only tiny encoders have such convolutions."""
    modules = modules.to(memory_format=torch.channels_last)
    for conv in modules.modules():
        if (
            isinstance(conv, nn.Conv2d)
            and conv.kernel_size == (1, 1)
            and conv.stride != (1, 1)
            and conv.in_channels < 8
        ):
            conv.weight.data = conv.weight.data.clone(memory_format=torch.contiguous_format)
            conv.register_forward_pre_hook(_standard_layout)
            conv.forward = torch.compiler.disable(conv.forward)
    return modules


def compile_in_place(module: nn.Module) -> None:
    """torch.compile a module's forward (an encoder block, an objective) as one graph with a dynamo cache of its own,
    in place (parameter names, and so checkpoints, stay those of the plain module). Not `nn.Module.compile()`:
    dynamo does not start tracing in torch.nn's own files, so that compiled an nn.Sequential block one residual
    block at a time, the blocks of all modules sharing one cache of 8 graphs: dynamic shapes from the second module
    on, eager mode once a probe's no-grad passes had filled it. Compiled code draws random numbers (an objective's
    negatives) as eager code does, so compiling changes results only by rounding."""
    import torch._inductor.config  # inductor only when compiling: it takes a second to import

    torch._inductor.config.fallback_random = True
    forward = module.forward

    def compiled(*inputs: Any, **named: Any) -> torch.Tensor:
        return forward(*inputs, **named)

    # A copy of the code object per module: dynamo keys its cache on the code object.
    code = compiled.__code__.replace()
    module.forward = torch.compile(
        types.FunctionType(code, compiled.__globals__, compiled.__name__, None, compiled.__closure__)
    )


def _standard_layout(conv: nn.Conv2d, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(x.clone(memory_format=torch.contiguous_format) for x in inputs)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 when asked for, or for 'auto' where the device computes it natively; None means fp32."""
    native = native_bf16(device)
    if precision == "fp32" or (precision == "auto" and not native):
        return None
    if not native:
        warnings.warn(
            f"train.precision bf16: this {device.type} has no bf16 arithmetic, so autocast emulates it, "
            "several times slower than fp32; 'auto' picks bf16 only where it is native",
            stacklevel=3,
        )
    return torch.bfloat16


def recompute_in_backward(block: nn.Module) -> None:
    """Activation checkpointing for each layer of the block's (nested) nn.Sequentials, in place, so parameter names
    stay those of the plain block; under no_grad (frozen modules, probes) the layers run as they are."""
    for sequential in [m for m in block.modules() if isinstance(m, nn.Sequential)]:
        for layer in sequential.children():
            if not isinstance(layer, nn.Sequential):
                layer.forward = functools.partial(_recomputed, layer.forward)


def _recomputed(forward: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
    if not torch.is_grad_enabled():
        return forward(*inputs)
    return activation_checkpoint.checkpoint(forward, *inputs, use_reentrant=False)


def _set_determinism(enabled: bool, device: torch.device) -> None:
    """Without it, multi-threaded CPU kernels (e.g. the accumulating backward of the negatives' gather) and
    cuDNN add in a varying order, so two runs with one seed drift apart in the last bits. Off, cuDNN may also time
    its convolution algorithms for each new shape and keep the fastest, whose choice can differ between runs.
    PyTorch's deterministic mode also fills every new buffer with NaN, a debugging aid that catches kernels that
    read memory they never wrote. No kernel here does, and the fills cost GPU time on every step (a profile is in
    benchmarks/results/), so they stay off."""
    if enabled and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for determinism
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not enabled
