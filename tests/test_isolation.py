"""Gradient isolation: a module's step touches only its own parameters, and nothing flows back to earlier ones."""

from __future__ import annotations

import pytest
import torch
from conftest import snapshot

from greedy_infomax.engines.local import seed_module, train_step
from greedy_infomax.isolation import run_frozen
from greedy_infomax.placement import trained_indices
from greedy_infomax.tasks import prepare_modules

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
