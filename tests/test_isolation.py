"""Gradient isolation: a module's step touches only its own parameters, and nothing flows back to earlier ones."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import make_tiny_config, snapshot

from greedy_infomax.config import TrainConfig
from greedy_infomax.engines.local import seed_module, train_step
from greedy_infomax.errors import GimError
from greedy_infomax.isolation import run_frozen
from greedy_infomax.models.split import isolate
from greedy_infomax.placement import configure, trained_indices
from greedy_infomax.tasks import PRESETS, prepare_modules, task_of

CPU = torch.device("cpu")


def _images(config, batch: int = 4, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, config.data.crop, config.data.crop, generator=generator)  # (B, 1, crop, crop)


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], prefix: str) -> dict[str, bool]:
    return {name: not torch.equal(before[name], after[name]) for name in before if name.startswith(prefix)}


@pytest.mark.parametrize("k", [1, 2, 3])
def test_stepping_module_k_changes_only_module_k(tiny_config, k):
    config = tiny_config(train_module=k)
    modules = prepare_modules(config, 1, CPU)
    before = snapshot(modules)
    _, losses, _ = train_step(
        modules, _images(config), trained_indices(config.train, config.model.num_modules), draws=(0, 0)
    )
    after = snapshot(modules)
    assert len(losses) == 1 and torch.isfinite(losses[0])
    for index in range(1, 4):
        changed = _changed(before, after, f"{index - 1}.")
        assert changed, "every module has parameters"
        if index == k:
            assert all(changed.values()), f"module {k}: unchanged {[n for n, c in changed.items() if not c]}"
        else:
            assert not any(changed.values()), f"module {index} changed: {[n for n, c in changed.items() if c]}"


def test_no_gradient_reaches_earlier_modules(tiny_config):
    config = tiny_config(train_module=2)
    modules = prepare_modules(config, 1, CPU)
    first, second = modules[0], modules[1]
    x = _images(config).requires_grad_(True)
    h = first(x)  # built with autograd on purpose: step() must cut it
    assert h.requires_grad
    second.configure_optimizer(1e-3)
    out, loss, _ = second.step(h)
    assert all(p.grad is None for p in first.parameters())
    assert x.grad is None
    assert all(p.grad is not None for p in second.parameters())
    assert not out.requires_grad and not loss.requires_grad

    leaf = torch.randn(out.shape[0], 8, 4, 4, requires_grad=True)  # an input that itself wants a gradient
    modules[2].configure_optimizer(1e-3)
    modules[2].step(leaf)
    assert leaf.grad is None


@pytest.mark.parametrize("cause", ["nan loss", "hold"])
def test_a_skipped_step_leaves_weights_and_adam_state_as_they_were(tiny_config, cause):
    config = tiny_config()
    module = prepare_modules(config, 1, CPU)[0]
    module.step(_images(config))  # Adam has moments and a step count to keep
    weights = snapshot(module)
    state = {name: value.clone() for name, value in module.optimizer.state_dict()["state"][0].items()}
    x, hold = _images(config, seed=1), torch.tensor(cause == "hold")
    if cause == "nan loss":
        x[0, 0, 0, 0] = float("nan")
    _, loss, skipped = module.step(x, hold=hold)
    assert skipped.item() and torch.isfinite(loss).item() == (cause == "hold")
    assert all(torch.equal(tensor, weights[name]) for name, tensor in snapshot(module).items())
    after = module.optimizer.state_dict()["state"][0]
    assert all(torch.equal(after[name], value) for name, value in state.items())
    _, _, skipped = module.step(_images(config, seed=2))
    assert not skipped.item() and snapshot(module)["block.1.0.weight"].ne(weights["block.1.0.weight"]).any()


def test_per_module_backward_equals_sum_of_detached_losses(tiny_config):
    """Three steps of train_step (each module: own backward, own Adam) vs one Adam on the summed loss.

    With a detach between modules, module j's loss does not depend on module i's parameters (i != j), so the
    gradient of the sum w.r.t. module i's parameters is exactly the gradient of loss i: the same autograd
    graph, the same operations in the same order. Adam is element-wise, so one Adam over all parameters
    updates each tensor exactly as that module's own Adam does. Each module draws its negatives after the same
    seed_module() in both formulations, so everything is bit-equal.
    """
    config = tiny_config()
    isolated = prepare_modules(config, 1, CPU)
    summed = prepare_modules(config, 1, CPU, with_optimizers=False)
    assert all(torch.equal(a, b) for a, b in zip(isolated.parameters(), summed.parameters()))
    optimizer = torch.optim.Adam(summed.parameters(), lr=config.train.lr, fused=True)
    for step in range(3):
        images = _images(config, seed=step)
        _, isolated_losses, _ = train_step(
            isolated, images, trained_indices(config.train, config.model.num_modules), draws=(100, step)
        )

        x, losses = images, []
        for index, module in enumerate(summed):
            seed_module((100, step), index)
            h = module.block(x)
            losses.append(module.objective(module.readout(h)))
            x = h.detach()
        optimizer.zero_grad(set_to_none=True)
        sum(losses).backward()
        optimizer.step()
        assert [l.item() for l in isolated_losses] == [l.detach().item() for l in losses]
    for (name, a), b in zip(isolated.named_parameters(), summed.parameters()):
        assert torch.equal(a, b), name


def test_run_frozen_builds_no_graph(tiny_config):
    config = tiny_config()
    modules = prepare_modules(config, 1, CPU)
    x = _images(config).requires_grad_(True)
    out = run_frozen(list(modules), x)
    assert not out.requires_grad and out.grad_fn is None
    assert out.shape == (4 * 16, 8, 2, 2)  # (B * grid * grid, C, h, w) of module 3
    assert torch.equal(out, _chain(modules, x.detach()))


def test_run_frozen_in_chunks_gives_the_whole_batch_output(tiny_config):
    config = tiny_config()
    modules = prepare_modules(config, 1, CPU)
    x = _images(config)
    whole = run_frozen(list(modules), x)
    for chunks in (2, 3, 100):  # uneven parts, more parts than samples
        torch.testing.assert_close(run_frozen(list(modules), x, chunks), whole)


def _chain(modules, x: torch.Tensor) -> torch.Tensor:
    for module in modules:
        x = module(x)
    return x


@pytest.mark.parametrize("k", [None, 1, 2, 3])
def test_prepare_modules_gives_optimizers_to_trained_modules_only(tiny_config, k):
    modules = prepare_modules(tiny_config(train_module=k), 1, CPU)
    has_optimizer = [module.optimizer is not None for module in modules]
    assert has_optimizer == [k is None or index == k for index in range(1, 4)]
    assert list(trained_indices(tiny_config(train_module=k).train, 3)) == ([0, 1, 2] if k is None else [k - 1])


def _overlapping(seed: int = 0, overlap: int = 1) -> torch.nn.ModuleList:
    """Three blocks of conv stages on (B, 2, T) sequences, block 2 of two stages, each module scored by the mean
    square of what it scores (differentiable, no randomness); with `overlap` 1 module k borrows block k + 1's first
    stage."""
    torch.manual_seed(seed)
    nn = torch.nn
    blocks = [
        nn.Sequential(nn.Conv1d(2, 3, 3, padding=1), nn.Tanh()),
        nn.Sequential(nn.Conv1d(3, 4, 3, padding=1), nn.Conv1d(4, 4, 1)),
        nn.Sequential(nn.Conv1d(4, 2, 1)),
    ]
    modules = isolate(blocks, lambda channels: _SquareLoss(), torch.zeros(1, 2, 8), overlap=overlap)
    for module in modules:
        module.configure_optimizer(1e-2)
    return modules


class _SquareLoss(torch.nn.Module):
    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return z.square().mean()


def test_an_overlapping_module_trains_the_borrowed_stage_with_the_sum_of_both_losses_gradients():
    """The loop reference: loss k is scored after block k + 1's first stage, on block k fed block k - 1's
    detached output; a borrowed stage's gradient is the sum of both losses', every other parameter has its own
    module's."""
    modules, reference = _overlapping(), _overlapping()
    x = torch.randn(4, 2, 8)
    train_step(modules, x, range(3), draws=(0, 0))
    b1, b2, b3 = (module.block for module in reference)
    h1 = b1(x)
    h2 = b2(h1.detach())
    losses = (b2[0](h1).square().mean(), b3(h2).square().mean(), b3(h2.detach()).square().mean())
    trained = ([*b1.parameters(), *b2[0].parameters()], [*b2.parameters(), *b3.parameters()], [*b3.parameters()])
    gradients = {}
    for loss, parameters in zip(losses, trained):
        for parameter, gradient in zip(parameters, torch.autograd.grad(loss, parameters, retain_graph=True)):
            gradients[id(parameter)] = gradients.get(id(parameter), 0) + gradient
    for ours, theirs in zip(modules.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours.grad, gradients[id(theirs)], rtol=1e-6, atol=1e-7)
    # one update per parameter, by its owner: module 1's Adam does not hold the stage it borrows
    owned = [{id(p) for group in m.optimizer.param_groups for p in group["params"]} for m in modules]
    assert owned[0] == {id(p) for p in modules[0].parameters()}
    assert not owned[0] & {id(p) for p in modules[1].block.parameters()}
    assert owned[1] == {id(p) for p in modules[1].parameters()}


def test_no_gradient_crosses_more_than_the_overlap():
    modules = _overlapping()
    modules[0].step(torch.randn(4, 2, 8))
    assert all(p.grad is not None for p in modules[0].parameters())
    assert all(p.grad is not None for p in modules[1].block[0].parameters())
    assert all(p.grad is None for p in [*modules[1].block[1].parameters(), *modules[2].parameters()])


def test_overlap_leaves_checkpoints_as_they_were_and_zero_is_gim():
    with_overlap, without = _overlapping(overlap=1), _overlapping(overlap=0)
    assert with_overlap.state_dict().keys() == without.state_dict().keys()
    x = torch.randn(4, 2, 8)
    gim = _overlapping(overlap=0)
    train_step(without, x, range(3), draws=(0, 0))
    for module in gim:  # GIM by hand: each module on the detached output of the one before
        module.optimizer.zero_grad()
        h = module.block(x)
        h.square().mean().backward()
        module.optimizer.step()
        x = h.detach()
    for ours, theirs in zip(without.parameters(), gim.parameters(), strict=True):
        assert torch.equal(ours, theirs)


def test_a_borrower_that_skips_does_not_leak_its_gradient_into_the_lenders_update():
    """Module 1's loss is NaN: it holds, so module 2 holds too (its borrowed stage carries the NaN gradient); the
    next step starts from clean gradients and moves every weight again."""
    modules = _overlapping()
    before = snapshot(modules)
    x = torch.randn(4, 2, 8)
    _, _, held = train_step(modules, torch.full_like(x, float("nan")), range(3), draws=(0, 0))
    assert held and all(torch.equal(before[name], value) for name, value in modules.state_dict().items())
    _, losses, held = train_step(modules, x, range(3), draws=(0, 1))
    assert not held and all(torch.isfinite(loss) for loss in losses)
    assert all(torch.isfinite(p).all() for p in modules.parameters())


def _steps_both_ways(config, x: torch.Tensor, chunks: int, dtype: torch.dtype = torch.float64) -> dict:
    """One train_step of every module of `config` from the same weights and batch x, with the whole batch's
    backward and with `chunks` backward parts: {chunks: (modules, outputs and losses)}."""
    steps = {}
    for backward_chunks in (1, chunks):
        options = replace(config.train, backward_chunks=backward_chunks)
        modules = prepare_modules(replace(config, train=options), x.shape[1], CPU).to(dtype)
        outputs = []
        _, losses, held = train_step(modules, x.to(dtype), range(len(modules)), draws=(0, 0), outputs=outputs)
        assert not held
        steps[backward_chunks] = (modules, outputs + losses)
    return steps


def _vision(objective: str, overlap: int = 0, precision: str = "fp32"):
    config = make_tiny_config(precision=precision)
    return replace(
        config, model=replace(config.model, overlap=overlap), objective=replace(config.objective, name=objective)
    )


@pytest.mark.parametrize(
    ("config", "chunks"),
    [
        (_vision("infonce_2d"), 3),
        (_vision("infonce_2d", overlap=1), 2),
        (_vision("simclr"), 2),
        (_vision("barlow_twins", overlap=1), 2),
        (_vision("vicreg"), 4),
        (PRESETS["speech-smoke"], 2),
        (replace(PRESETS["speech-smoke"], objective=replace(PRESETS["speech-smoke"].objective, name="clapp")), 3),
    ],
    ids=["infonce_2d", "infonce_2d-overlap", "simclr", "barlow_twins-overlap", "vicreg", "audio", "audio-clapp"],
)
def test_backward_in_chunks_gives_the_whole_batch_gradients(config, chunks):
    """Gradient caching, in float64 to see past rounding: the same outputs, losses and gradients as one backward
    of the whole batch, borrowed stages and the audio GRU included, the negatives drawn alike, and a projector's
    running statistics those of all rows."""
    x = task_of(config).example_batch(config, 8 if config.task == "audio" else 4, CPU)  # 4 images: 8 two-view rows
    x = _images(config, batch=8) if config.task == "vision" else x
    steps = _steps_both_ways(config, x, chunks)
    (whole, whole_values), (parts, parts_values) = steps[1], steps[chunks]
    for ours, theirs in zip(parts_values, whole_values, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    for (name, ours), theirs in zip(parts.named_parameters(), whole.parameters(), strict=True):
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-10, atol=1e-10, msg=lambda m, n=name: f"{n}: {m}")
    for name, value in whole.state_dict().items():
        assert torch.equal(parts.state_dict()[name], value) or "running" not in name


def test_backward_in_chunks_in_bf16_follows_the_whole_batch_gradient():
    steps = _steps_both_ways(
        _vision("vicreg", precision="bf16"), _images(make_tiny_config(), batch=8), 2, torch.float32
    )
    for ours, theirs in zip(steps[2][0], steps[1][0], strict=True):
        mine, reference = (torch.cat([p.grad.flatten() for p in m.parameters()]) for m in (ours, theirs))
        assert (mine - reference).norm() < 0.05 * reference.norm()


def test_backward_in_chunks_refuses_a_block_with_batchnorm():
    modules = isolate(
        [torch.nn.Sequential(torch.nn.Conv1d(2, 3, 1), torch.nn.BatchNorm1d(3))],
        lambda c: _SquareLoss(),
        torch.zeros(2, 2, 8),
    )
    with pytest.raises(GimError, match="train.backward_chunks: a block with BatchNorm"):
        configure(modules, TrainConfig(device="cpu", backward_chunks=2), CPU)
