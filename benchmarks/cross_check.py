"""Cross-check against the original code: with the same weights, inputs and negatives, the original Greedy InfoMax
(loeweX/Greedy_InfoMax, MIT licence) and this project compute the same losses, gradients and Adam step.

For vision and audio, GIM and end-to-end CPC, with one negative group and with the paper's groups (8 for vision,
4 for audio), it builds the original's model and ours at full size, copies our weights into the original's,
feeds both one random batch, replays in ours the negatives (and audio subsampling windows) the original drew,
translated to our index layout, and compares every module: the loss, every parameter's gradient, our Adam step
(lr 2e-4) taken from the original's gradients, and the weights after each side's own step. The original runs
its groups as nn.DataParallel did, one chunk of the batch per GPU (here one chunk after the other, each chunk's
gradients, weighted 1/G, summed into one Adam step); ours takes the whole batch with `objective.negative_groups`.

Each case runs in fp32 and in fp64 (`--dtypes`). Errors are max |ours - original| / max |original| per tensor,
the largest over a module's tensors. Criteria: loss, gradients and Adam step within 1e-5, except fp32 gradients,
which may also differ by up to twice each side's `floor`: how far that side's fp32 gradients are from those of
its own loss computed in fp64 on the same fp32 encoder. The encoder's summed bias gradients cancel so much that
one rounding of dL/dz moves them by about 1e-5 (`exact_loss`: both losses in fp64, the encoder in fp32), and the
original's softmax-then-log rounds worse than our log-softmax. fp64 shows what remains beyond rounding: the
original's log(p + 1e-11) in the vision loss where ours has log p (`--drop-original-epsilon` takes it out of
the original, and agreement reaches 1e-14). The weights after each side's step are reported, not judged: Adam's
first step g / (|g| + 1e-8) turns any difference in a gradient near 0 into one of up to 2 lr.

Weights: ours at the seed's default init, then each module's W_k scaled (`calibrate`) so that a context's scores
over the candidates spread with a standard deviation of 1; at PyTorch's default init they are all near 0, and
which negative is which would hardly change a loss. The PixelCNN's vertical convolutions are compared through
their mask: the original zeroes the masked taps in place before each use (so it has gradients for them, and Adam
moves them, to no effect), ours multiplies the weight by the mask.

The fp32 single-group cases (one image or window) also pin CI: their negatives go to `cross-check-negatives.pt`,
their scales and losses into the JSON, and tests/test_cross_check.py rebuilds our models from the seed, replays
those negatives and compares with the original's losses, without the original code.

Get the original code (nothing of it is copied into this project), then run from the repository root:

    git --git-dir=<a clone of loeweX/Greedy_InfoMax>/.git archive 22d17e4 GreedyInfoMax | tar -x -C /work/orig
    python benchmarks/cross_check.py --original /work/orig

Grouped cases default to 2 images (windows) per group: the group size does not change the math being compared,
and the paper's 8 x 32 images take tens of minutes per case on 2 cores (`--per-group 32 --only vision-gim-8x32`;
audio's 4 x 8 is `--per-group 8 --only audio-gim-4x8`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.machinery
import io
import json
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from greedy_infomax.bench import machine
from greedy_infomax.config import AnyRunConfig
from greedy_infomax.isolation import IsolatedModule
from greedy_infomax.models.pixelcnn import RowCausalConv2d
from greedy_infomax.objectives import infonce_1d, infonce_2d
from greedy_infomax.tasks import PRESETS, build_modules, task_of

RESULTS = Path(__file__).resolve().parent / "results"
LR = 2e-4
TOLERANCE = 1e-5
ORIGINAL_COMMIT = "22d17e4"
SUBSAMPLE_WINDOW = 128  # the original's audio subsampling window
SCORE_SPREAD = 1.0
Replay = list[list[tuple[list[torch.Tensor], list[int]]]]
"""Per module, per negative group: the negatives it draws (in draw order) and its audio window starts."""


@dataclass(frozen=True)
class Case:
    task: str  # vision | audio
    model: str  # gim | cpc
    groups: int
    per_group: int
    seed: int = 0

    @property
    def name(self) -> str:
        return f"{self.task}-{self.model}-{self.groups}x{self.per_group}"

    @property
    def pinned(self) -> bool:
        """Single-group cases pin CI (tests/test_cross_check.py)."""
        return self.groups == 1


def cases(per_group: int) -> list[Case]:
    return [
        Case(task, model, groups, 1 if groups == 1 else per_group)
        for task, paper_groups in (("vision", 8), ("audio", 4))
        for model in ("gim", "cpc")
        for groups in (1, paper_groups)
    ]


# ------------------------------------------------------------------------------------------------------------ ours


def our_config(case: Case) -> AnyRunConfig:
    """The paper preset, end-to-end with the PixelCNN for vision CPC, with the case's negative groups. (The modules
    never read the batch size; the config's is only kept valid.)"""
    config = PRESETS["paper-stl10" if case.task == "vision" else "paper-librispeech"]
    config = replace(
        config,
        data=replace(config.data, batch_size=2 * case.groups),
        objective=replace(config.objective, negative_groups=case.groups),
    )
    return task_of(config).end_to_end_cpc(config) if case.model == "cpc" else config


def our_modules(case: Case) -> nn.ModuleList:
    torch.manual_seed(case.seed)
    return build_modules(our_config(case), 1)


def calibrate(modules: nn.ModuleList, x: torch.Tensor) -> list[float]:
    """Per module, the factor for its W_k that spreads the step-1 scores of a context over all candidates of the
    batch with a standard deviation of SCORE_SPREAD (averaged over up to 1024 contexts). At PyTorch's default init
    a context scores every candidate alike, every loss is near log(N + 1), and which negative is which would
    hardly matter to a loss."""
    scales = []
    with torch.no_grad():
        for module in modules:
            h = module.block(x)
            z, objective = module.readout(h), module.objective
            if isinstance(objective, infonce_2d.InfoNCE2d):
                c = z if objective.autoregressor is None else objective.autoregressor(z)  # (B, Cc, H, W)
                channels = c.shape[1]
                queries = c.permute(0, 2, 3, 1).flatten(0, 2)  # (P, Cc)
                candidates = objective.predictors(z)[:, :channels].permute(0, 2, 3, 1).flatten(0, 2)  # W_1 z
            else:
                c = z if module.autoregressor is None else module.autoregressor(h)  # (B, Cc, T)
                channels = z.shape[1]
                queries = objective.predictors(c.transpose(1, 2))[..., :channels].flatten(0, 1)  # W_1 c
                candidates = z.transpose(1, 2).flatten(0, 1)  # (P, C)
            queries = queries[:: max(1, len(queries) // 1024)]
            scales.append(SCORE_SPREAD / (queries @ candidates.T).std(1).mean().item())
            x = module(x)
    return scales


def scale_predictors(modules: nn.ModuleList, scales: list[float]) -> None:
    with torch.no_grad():
        for module, scale in zip(modules, scales):
            module.objective.predictors.weight.mul_(scale)


def case_input(case: Case) -> torch.Tensor:
    """A random batch: (B, 1, 64, 64) grayscale crops or (B, 1, 20480) windows."""
    generator = torch.Generator().manual_seed(1000 + case.seed)
    shape = (1, 64, 64) if case.task == "vision" else (1, 20480)
    return torch.randn(case.groups * case.per_group, *shape, generator=generator)


@contextlib.contextmanager
def replaying(negatives: list[torch.Tensor], starts: list[int]) -> Iterator[None]:
    """Our objectives draw the given negatives and subsampling window starts, in order, instead of random ones.
    Each request must have the shape of the replayed tensor: the pools must agree, not only the indices."""
    negatives, starts = list(negatives), list(starts)

    def sampler(rows: int, num_negatives: int, pool_size: int, device: torch.device) -> torch.Tensor:
        indices = negatives.pop(0)
        assert indices.shape == (rows, num_negatives), (tuple(indices.shape), rows, num_negatives)
        assert 0 <= int(indices.min()) and int(indices.max()) < pool_size, "an index outside our pool"
        return indices.long().to(device)

    def window(self, steps: int) -> tuple[int, int]:
        if not self.subsample or steps <= self.subsample_window:
            return 0, steps
        return starts.pop(0), self.subsample_window

    saved = infonce_2d.sample_negatives, infonce_1d.sample_permuted_negatives, infonce_1d.InfoNCE1d.window
    infonce_2d.sample_negatives = infonce_1d.sample_permuted_negatives = sampler
    infonce_1d.InfoNCE1d.window = window
    try:
        yield
        assert not negatives and not starts, "draws left over"
    finally:
        infonce_2d.sample_negatives, infonce_1d.sample_permuted_negatives, infonce_1d.InfoNCE1d.window = saved


def joined(groups: list[tuple[list[torch.Tensor], list[int]]]) -> tuple[list[torch.Tensor], list[int]]:
    """A module's draws for the whole batch: its groups' in order."""
    return [t for negatives, _ in groups for t in negatives], [start for _, starts in groups for start in starts]


def our_step(modules: nn.ModuleList, x: torch.Tensor, replay: Replay) -> list[float]:
    """One training step of every module (each its own Adam), replaying the draws."""
    losses = []
    for module, groups in zip(modules, replay):
        module.configure_optimizer(LR)
        with replaying(*joined(groups)):
            x, loss, _ = module.step(x)
        losses.append(loss.item())
    return losses


def our_losses(modules: nn.ModuleList, x: torch.Tensor, replay: Replay) -> list[float]:
    """Every module's loss without a step, replaying the draws (what the CI pin computes)."""
    losses = []
    with torch.no_grad():
        for module, groups in zip(modules, replay):
            with replaying(*joined(groups)):
                x, loss = module.loss(x)
            losses.append(loss.item())
    return losses


def taken_gradients(modules: nn.Module) -> dict[int, torch.Tensor | None]:
    """The fp32 gradients of the parameters by id, which are then cleared."""
    gradients = {}
    for parameter in modules.parameters():
        gradients[id(parameter)] = None if parameter.grad is None else parameter.grad.float()
        parameter.grad = None
    return gradients


def chunked_gradients(modules: nn.ModuleList, x: torch.Tensor, replay: Replay) -> dict[int, torch.Tensor | None]:
    """Our gradients summed the original's way: each group's chunk through each module on its own, its loss divided
    by G and backpropagated, the chunks' gradients adding up. Only the order of the sums differs from our
    backward over the whole batch."""
    for module, groups in zip(modules, replay):
        objective, outputs = module.objective, []
        objective.negative_groups = 1
        for chunk, group in zip(x.chunk(len(groups)), groups):
            with replaying(*group):
                h, loss = module.loss(chunk)
            (loss / len(groups)).backward()
            outputs.append(h.detach())
        objective.negative_groups = len(groups)
        x = torch.cat(outputs)
    return taken_gradients(modules)


def exact_loss_gradients(modules: nn.ModuleList, x: torch.Tensor, replay: Replay) -> dict[int, torch.Tensor | None]:
    """Our gradients with the objective, PixelCNN included, in fp64 on the fp32 encoder's output; the modules are
    left as they were. They differ from the fp32 gradients by the rounding in the loss alone."""
    for module, groups in zip(modules, replay):
        objective, forward = module.objective.double(), module.objective.forward
        objective.forward = lambda z, labels=None, **context: forward(
            z.double(), labels, **{key: value.double() for key, value in context.items()}
        )
        with replaying(*joined(groups)):
            h, loss = module.loss(x)
        loss.backward()
        del objective.forward  # the class's forward again
        objective.float()
        x = h.detach()
    return taken_gradients(modules)


# -------------------------------------------------------------------------------------------------------- original


def import_original(root: Path) -> types.SimpleNamespace:
    """The original's model modules. Their package also imports plotting, t-SNE and audio-file libraries that no
    model, loss or optimiser step uses; where those are not installed, empty stand-ins take their place (any use
    would fail loudly)."""
    sys.path.insert(0, str(root))
    for name in ("seaborn", "sklearn", "sklearn.manifold", "torchaudio"):
        try:
            __import__(name)
        except ImportError:
            stand_in = types.ModuleType(name)
            stand_in.__spec__ = importlib.machinery.ModuleSpec(name, None)  # torch's import checks look for one
            stand_in.TSNE = None
            sys.modules[name] = stand_in
    from GreedyInfoMax.audio.models import full_model, loss_InfoNCE
    from GreedyInfoMax.vision.models import FullModel, InfoNCE_Loss

    return types.SimpleNamespace(vision=FullModel, audio=full_model, vision_loss=InfoNCE_Loss, audio_loss=loss_InfoNCE)


def original_model(original: types.SimpleNamespace, case: Case) -> nn.Module:
    """The original's model as its training scripts build it (paper options; nn.DataParallel is emulated in
    `original_step`). It prints its layers and masks: kept out of our output."""
    common = dict(device=torch.device("cpu"), loss=0, weight_init=False, learning_rate=LR)
    with contextlib.redirect_stdout(io.StringIO()):
        if case.task == "vision":
            opt = types.SimpleNamespace(
                **common,
                negative_samples=16,
                prediction_step=5,
                resnet=50,
                grayscale=True,
                model_splits=3 if case.model == "gim" else 1,
                train_module=3,
                dataset="stl10",
            )
            model = original.vision.FullVisionModel(opt, calc_loss=True)
            model.switch_calc_loss(True)
        else:
            opt = types.SimpleNamespace(
                **common,
                negative_samples=10,
                prediction_step=12,
                sampling_method=1,
                subsample=True,
                batch_size=case.per_group,
                remove_BPTT=False,
                use_autoregressive=False,
                model_splits=6 if case.model == "gim" else 1,
            )
            model = original.audio.FullModel(
                opt,
                kernel_sizes=[10, 8, 4, 4, 4],
                strides=[5, 4, 2, 2, 2],
                padding=[2, 2, 2, 2, 1],
                enc_hidden=512,
                reg_hidden=256,
            )
    return model.train()


class Draws:
    """The original's random draws (torch.randint / torch.randperm / np.random.randint) per (group, module): recorded
    on a first pass, replayed in the same order on a later one. Each of its loss modules is wrapped to say which
    module is drawing."""

    def __init__(self, losses: list[nn.Module]) -> None:
        self.group, self.module = 0, 0
        self.torch: dict[tuple[int, int], list[torch.Tensor]] = {}
        self.windows: dict[tuple[int, int], list[int]] = {}
        self.replay = False
        for index, loss in enumerate(losses):
            name = "get_loss" if hasattr(loss, "get_loss") else "forward"
            setattr(loss, name, self._entering(index, getattr(loss, name)))

    def _entering(self, index: int, method: Callable) -> Callable:
        def wrapped(*args, **kwargs):
            self.module = index
            return method(*args, **kwargs)

        return wrapped

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Record the draws (on the first pass), or replay them (once `replay` is set)."""
        real = torch.randint, torch.randperm, np.random.randint
        drawn = {
            "torch": {key: list(values) for key, values in self.torch.items()},
            "windows": {key: list(values) for key, values in self.windows.items()},
        }

        def through(function: Callable, kind: str) -> Callable:
            def draw(*args, **kwargs):
                key = self.group, self.module
                if self.replay:
                    return drawn[kind][key].pop(0)
                value = function(*args, **kwargs)
                getattr(self, kind).setdefault(key, []).append(value if kind == "torch" else int(value))
                return value

            return draw

        torch.randint, torch.randperm = through(real[0], "torch"), through(real[1], "torch")
        np.random.randint = through(real[2], "windows")
        try:
            yield
        finally:
            torch.randint, torch.randperm, np.random.randint = real


def original_losses(model: nn.Module, case: Case) -> list[nn.Module]:
    """The original's loss modules, in module order (the CPC encoder's own unused one left out)."""
    if case.task == "vision":
        return [encoder.loss for encoder in model.encoder] if case.model == "gim" else [model.autoregressor.loss]
    return [module.loss for module in model.fullmodel]


def original_backward(model: nn.Module, x: torch.Tensor, case: Case, draws: Draws) -> list[float]:
    """nn.DataParallel's forward and backward over `groups` GPUs, on the CPU: each chunk's forward (the module losses
    of the original's forward), the losses averaged over the chunks and summed over the modules. The chunks'
    backward passes run one at a time (the gradient of a mean is the mean of the gradients), as DataParallel sums
    the replicas' gradients; that keeps one chunk's graph in memory. Returns the mean losses."""
    per_chunk = []
    for group, chunk in enumerate(x.chunk(case.groups)):
        draws.group = group
        with draws.active():
            loss = model(chunk, None, n=3)[0] if case.task == "vision" else model(chunk)  # (1, modules)
        (loss.sum() / case.groups).backward()
        per_chunk.append(loss.detach())
    draws.replay = True  # later passes draw the same
    return torch.cat(per_chunk).mean(0).tolist()


def original_step(model: nn.Module, x: torch.Tensor, case: Case, draws: Draws) -> list[float]:
    """The original's training step: its backward, then one Adam step over all its parameters."""
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    optimizer.zero_grad()
    losses = original_backward(model, x, case, draws)
    optimizer.step()
    return losses


def original_exact_loss_gradients(
    model: nn.Module, x: torch.Tensor, case: Case, draws: Draws
) -> dict[int, torch.Tensor]:
    """The original's gradients (by parameter id) with its loss modules, PixelCNN included, in fp64 on the fp32
    encoder's output; the model is left as it was. (`exact_loss_gradients` for the original.)"""
    if case.task == "vision" and case.model == "cpc":
        exact = [(model.autoregressor, "forward")]
    else:
        exact = [(loss, "get_loss" if case.task == "audio" else "forward") for loss in original_losses(model, case)]
    saved = [module.__dict__.get(name) for module, name in exact]  # instance wrappers (Draws'), if any
    for module, name in exact:
        method = getattr(module.double(), name)
        setattr(
            module,
            name,
            lambda *args, method=method, **kwargs: method(
                *[value.double() if torch.is_tensor(value) and value.is_floating_point() else value for value in args],
                **kwargs,
            ),
        )
    model.zero_grad(set_to_none=True)
    original_backward(model, x, case, draws)
    for (module, name), previous in zip(exact, saved):
        if previous is None:
            delattr(module, name)
        else:
            setattr(module, name, previous)
        module.float()
    return taken_gradients(model)


# ---------------------------------------------------------------------------------------- draws in our index layout


def our_vision_negatives(
    draws: list[torch.Tensor], batch: int, rows: int = 7, columns: int = 7, negatives: int = 16, skip: int = 1
) -> list[torch.Tensor]:
    """The original's rand_index of each step k, (R*W*B*N, 1) over its (row, column, image) layout of the step's
    target rows, as our (R*B*W, N) indices b * R * W + row * W + column, queries in (row, image, column) order."""
    ours = []
    for k, drawn in enumerate(draws, start=1):
        R = rows - k - skip
        index = drawn.reshape(R, columns, batch, negatives)  # query (row, column, image)
        row, column, image = index // (columns * batch), index // batch % columns, index % batch
        ours.append((image * R * columns + row * columns + column).permute(0, 2, 1, 3).reshape(-1, negatives))
    return ours


def our_audio_negatives(permutations: list[torch.Tensor], batch: int, length: int) -> list[torch.Tensor]:
    """The original's table, column n = permutation n of the B*T steps (entry b*T + t, our layout too), cut to the
    B*(L-1) last rows that its steps read."""
    table = torch.stack(permutations, dim=1)  # (B*T, N)
    return [table[len(table) - batch * (length - 1) :]]


def translate(case: Case, draws: Draws, modules: int) -> Replay:
    """What each group of each of our modules draws: the original's draws in our layout."""
    replay: Replay = []
    for module in range(modules):
        groups = []
        for group in range(case.groups):
            drawn, windows = draws.torch[group, module], draws.windows.get((group, module), [])
            if case.task == "vision":
                groups.append((our_vision_negatives(drawn, case.per_group), []))
            else:
                length = SUBSAMPLE_WINDOW if windows else len(drawn[0]) // case.per_group
                groups.append((our_audio_negatives(drawn, case.per_group, length), windows))
        replay.append(groups)
    return replay


# ------------------------------------------------------------------------------------------------------ weights


def parameter_pairs(case: Case, ours: nn.ModuleList, model: nn.Module) -> list[list[tuple[str, nn.Parameter, list]]]:
    """Per module: (our name, our parameter, the original's parameters that concatenate to it)."""
    pairs = []
    for index, module in enumerate(ours):
        if case.task == "vision":
            encoder = model.encoder[index]
            theirs_block = list(encoder.model.parameters())
            loss = encoder.loss if case.model == "gim" else model.autoregressor.loss
            predictors = list(loss.W_k.parameters())
        else:
            original = model.fullmodel[index]
            theirs_block = list(original.encoder.parameters()) if hasattr(original, "encoder") else []
            predictors = [original.loss.predictor.weight]
        ours_block = list(module.block.named_parameters())
        assert len(ours_block) == len(theirs_block), (len(ours_block), len(theirs_block))
        found = [(f"block.{name}", parameter, [theirs]) for (name, parameter), theirs in zip(ours_block, theirs_block)]
        found.append(("objective.predictors.weight", module.objective.predictors.weight, predictors))
        if case.task == "audio" and module.autoregressor is not None:
            gru = dict(original.autoregressor.gru.named_parameters())
            found += [
                (f"autoregressor.gru.{name}", parameter, [gru[name]])
                for name, parameter in module.autoregressor.gru.named_parameters()
            ]
        if case.task == "vision" and case.model == "cpc":
            found += pixelcnn_pairs(module.objective.autoregressor, model.autoregressor)
        assert len(found) == len(list(module.parameters())), "every parameter of ours has its original"
        pairs.append(found)
    return pairs


PIXELCNN_NAMES = {
    "vertical": "vertical_conv",
    "horizontal": "horizontal_conv",
    "vertical_to_horizontal": "v_to_h_conv",
    "horizontal_out": "horizontal_output",
    "vertical_skip": "residual_vertical",
}


def pixelcnn_pairs(ours: nn.Module, original: nn.Module) -> list[tuple[str, nn.Parameter, list]]:
    theirs = dict(original.named_parameters())
    found = []
    for name, parameter in ours.named_parameters():
        parts = name.split(".")
        if parts[0] == "out":
            their_name = f"stack_out.{parts[1]}"
        else:
            their_name = f"stack.layers.{parts[1]}.{PIXELCNN_NAMES[parts[2]]}.{parts[3]}"
        found.append((f"objective.autoregressor.{name}", parameter, [theirs[their_name]]))
    return found


def copy_weights(pairs: list[list[tuple[str, nn.Parameter, list]]]) -> None:
    with torch.no_grad():
        for _, ours, theirs in (pair for module in pairs for pair in module):
            for target, source in zip(theirs, ours.chunk(len(theirs))):
                assert target.shape == source.shape, (target.shape, source.shape)
                target.copy_(source)


# ----------------------------------------------------------------------------------------------------- comparing


def relative(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    scale = theirs.abs().max().item()
    difference = (ours - theirs).abs().max().item()
    return difference / scale if scale > 0 else difference


def masks(modules: nn.ModuleList) -> dict[int, torch.Tensor]:
    """Our row-causal weights' masks, by parameter id."""
    return {id(layer.weight): layer.mask for layer in modules.modules() if isinstance(layer, RowCausalConv2d)}


def compare_module(
    pairs: list[tuple[str, nn.Parameter, list]],
    before: dict[int, torch.Tensor],
    masked: dict[int, torch.Tensor],
    references: dict[str, dict] | None,
) -> dict:
    """The largest relative errors over the module's tensors: `gradient`, ours against the original's; `step`, our
    optimiser's step taken from the original's gradients against the original's (the Adam update alone); `weight`,
    the weights after each side's own step. With `references` (fp32), the rounding floors: `floor` and
    `original_floor`, each side's gradients against the same side's with its loss computed in fp64 (the rounding in
    the loss alone); `order_floor`, ours against ours summed chunk by chunk as the original sums (the order of
    the sums alone); `chunked`, ours summed that way against the original's."""
    kinds = ("gradient", "step", "weight") + (
        ("floor", "original_floor", "order_floor", "chunked") if references else ()
    )
    worst = {kind: (0.0, "") for kind in kinds}
    without_gradient = []
    for name, ours, theirs in pairs:
        grads = [parameter.grad for parameter in theirs]
        if ours.grad is None or any(grad is None for grad in grads):
            assert ours.grad is None and all(grad is None for grad in grads), f"{name}: a gradient on one side only"
            assert torch.equal(ours, before[id(ours)]), f"{name} moved without a gradient"
            without_gradient.append(name)
            continue
        mask = masked.get(id(ours), torch.ones(()))
        twin = nn.Parameter(before[id(ours)].clone())
        twin.grad = torch.cat(grads)
        IsolatedModule.configure_optimizer(nn.ParameterList([twin]), LR).step()  # ours builds this Adam
        weight = torch.cat([parameter.detach() for parameter in theirs])
        errors = {
            "gradient": relative(ours.grad * mask, twin.grad * mask),
            "step": relative(twin.detach() * mask, weight * mask),
            "weight": relative(ours.detach() * mask, weight * mask),
        }
        if references:
            exact_theirs = torch.cat([references["original_exact"][id(p)] for p in theirs])
            chunked = references["chunked"][id(ours)]
            errors |= {
                "floor": relative(ours.grad * mask, references["exact"][id(ours)] * mask),
                "original_floor": relative(twin.grad * mask, exact_theirs * mask),
                "order_floor": relative(ours.grad * mask, chunked * mask),
                "chunked": relative(chunked * mask, twin.grad * mask),
            }
        for kind, error in errors.items():
            worst[kind] = max(worst[kind], (error, name))
    return {
        **{f"{kind}_rel": error for kind, (error, _) in worst.items()},
        **{f"{kind}_worst": name for kind, (_, name) in worst.items()},
        "parameters": len(pairs),
        "without_gradient": without_gradient,
    }


def passed(module: dict) -> bool:
    """Loss, gradients and Adam step within the tolerance; in fp32 (where floors are measured) the gradients within
    the tolerance or twice the largest floor: the encoder's summed bias gradients cancel so much that one rounding
    of dL/dz, or another order of the same sums, moves them by 1e-5 to 1e-4. The weights after each side's own
    step are reported, not judged: Adam's first step g / (|g| + 1e-8) turns any difference in a gradient near 0
    (rounding, or the original's 1e-11 inside its log) into one of up to 2 lr."""
    floors = [module[key] for key in ("floor_rel", "original_floor_rel", "order_floor_rel") if key in module]
    gradient = max([TOLERANCE] + [2 * floor for floor in floors])
    return module["loss_rel"] <= TOLERANCE and module["step_rel"] <= TOLERANCE and module["gradient_rel"] <= gradient


def run_case(case: Case, original: types.SimpleNamespace) -> tuple[dict, Replay | None]:
    started = time.perf_counter()
    ours, x = our_modules(case), case_input(case)
    scales = calibrate(ours, x)
    scale_predictors(ours, scales)
    model = original_model(original, case)
    pairs = parameter_pairs(case, ours, model)
    copy_weights(pairs)
    before = {id(parameter): parameter.detach().clone() for parameter in ours.parameters()}
    draws = Draws(original_losses(model, case))
    fp32 = torch.get_default_dtype() == torch.float32
    original_exact = original_exact_loss_gradients(model, x, case, draws) if fp32 else None  # draws recorded
    theirs = original_step(model, x, case, draws)  # ... or replayed
    replay = translate(case, draws, len(ours))
    references = (
        {
            "original_exact": original_exact,
            "exact": exact_loss_gradients(ours, x, replay),
            "chunked": chunked_gradients(ours, x, replay),
        }
        if fp32
        else None
    )
    mine = our_step(ours, x, replay)
    for module in ours:
        module.optimizer = None  # its moments: memory we do not need
    masked = masks(ours)
    modules = []
    for index, (loss_ours, loss_theirs, module_pairs) in enumerate(zip(mine, theirs, pairs), start=1):
        module = {
            "module": index,
            "loss": loss_ours,
            "loss_original": loss_theirs,
            "loss_rel": abs(loss_ours - loss_theirs) / abs(loss_theirs),
            **compare_module(module_pairs, before, masked, references),
        }
        modules.append({**module, "passed": passed(module)})
    result = {
        **asdict(case),
        "name": case.name,
        "dtype": str(torch.get_default_dtype()).removeprefix("torch."),
        "batch": case.groups * case.per_group,
        "predictor_scales": scales,
        "modules": modules,
        "passed": all(module["passed"] for module in modules),
        "seconds": round(time.perf_counter() - started, 1),
    }
    return result, (replay if case.pinned and fp32 else None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--original", type=Path, default=Path("/work/orig"), help="folder holding the original's GreedyInfoMax package"
    )
    parser.add_argument("--per-group", type=int, default=2, help="images (windows) per group in the grouped cases")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    parser.add_argument("--only", nargs="*", default=None, help="case names to run (default: all)")
    parser.add_argument(
        "--drop-original-epsilon",
        action="store_true",
        help="the original's vision loss takes log(p) instead of log(p + 1e-11): with it, the one "
        "intended difference gone, fp64 runs agree to rounding",
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "cross-check.json")
    args = parser.parse_args()
    original = import_original(args.original)
    if args.drop_original_epsilon:
        original.vision_loss.ExpNLLLoss.forward = lambda self, input, target: F.nll_loss(torch.log(input), target)
    results, pins = [], {}
    for dtype in args.dtypes:
        torch.set_default_dtype(getattr(torch, dtype))  # both models, their inputs and buffers
        for case in cases(args.per_group):
            if args.only and case.name not in args.only:
                continue
            print(f"{case.name} {dtype} ...", file=sys.stderr, flush=True)
            result, pin = run_case(case, original)
            print(
                json.dumps({key: result[key] for key in ("name", "dtype", "passed", "seconds")}),
                file=sys.stderr,
                flush=True,
            )
            for module in result["modules"]:
                print(
                    "  module {module}: ".format(**module)
                    + ", ".join(f"{key} {value:.1e}" for key, value in module.items() if key.endswith("_rel")),
                    file=sys.stderr,
                )
            results.append(result)
            if pin is not None:
                pins[case.name] = [
                    [([t.to(torch.int16) for t in negatives], starts) for negatives, starts in groups] for groups in pin
                ]
    report = {
        "machine": {**machine("cpu"), "command": " ".join(["python", *sys.argv])},
        "original": f"loeweX/Greedy_InfoMax@{ORIGINAL_COMMIT}",
        "original_epsilon": not args.drop_original_epsilon,
        "tolerance": TOLERANCE,
        "error": "max |ours - original| / max |original| per tensor; the largest over a module's tensors",
        "passed": all(result["passed"] for result in results),
        "cases": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    if pins:
        torch.save(pins, args.output.with_name("cross-check-negatives.pt"))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
