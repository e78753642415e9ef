"""What every two-view objective shares: forward = loss of its projector's two views, the pairing of rows b and
B + b, symmetry in the views and the images, and gradients for the module and every parameter of its head."""

from __future__ import annotations

import pytest
import torch

from greedy_infomax.objectives import BarlowTwins, SimCLR, VICReg

TWO_VIEW = [SimCLR, BarlowTwins, VICReg]


def objective_and_views(cls: type, B: int = 6, C: int = 5) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return cls(C, hidden_dim=16, projection_dim=8), torch.randn(2 * B, C, 3, 3)


@pytest.mark.parametrize("cls", TWO_VIEW)
def test_forward_scores_the_projected_views(cls):
    objective, z = objective_and_views(cls)
    view1, view2 = objective.projector(z)
    assert torch.equal(objective(z), objective.loss(view1, view2))


@pytest.mark.parametrize("cls", TWO_VIEW)
def test_the_loss_ignores_the_order_of_images_and_of_views(cls):
    objective, z = objective_and_views(cls)
    B = len(z) // 2
    order = torch.randperm(B)
    loss = objective(z)
    torch.testing.assert_close(objective(torch.cat([z[:B][order], z[B:][order]])), loss)
    torch.testing.assert_close(objective(torch.cat([z[B:], z[:B]])), loss)


@pytest.mark.parametrize("cls", TWO_VIEW)
def test_two_views_of_the_same_image_cost_less_than_views_of_different_images(cls):
    """Row b and row B + b are one image's two views: identical views beat the same rows paired one image off."""
    objective, z = objective_and_views(cls)
    B = len(z) // 2
    views = z[:B]
    matched = objective(torch.cat([views, views]))
    mismatched = objective(torch.cat([views, views.roll(1, 0)]))
    assert matched < mismatched


@pytest.mark.parametrize("cls", TWO_VIEW)
def test_gradients_reach_the_module_and_every_parameter_of_the_head(cls):
    objective, z = objective_and_views(cls)
    z.requires_grad_(True)
    objective(z).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    for name, parameter in objective.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_a_network_with_a_different_two_view_objective_per_module_learns_on_augmented_views():
    """isolate() sizes each module's projector; on one batch of views every module's own loss falls."""
    from functools import partial

    from greedy_infomax.data.views import TwoViewTransform
    from greedy_infomax.models.split import isolate, split

    torch.manual_seed(0)
    network = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3),
        torch.nn.ReLU(),
    )
    objectives = [partial(cls, hidden_dim=32, projection_dim=16) for cls in TWO_VIEW]
    modules = isolate(split(network, after=["1", "3"]), objectives, torch.zeros(1, 1, 20, 20))
    for module in modules:
        module.configure_optimizer(lr=1e-2)
    images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    views = TwoViewTransform(20, False, (0.5,), (0.25,))(images, torch.Generator().manual_seed(0))  # (16, 1, 20, 20)
    history = []
    for _ in range(15):
        x, losses = views, []
        for module in modules:
            x, loss, skipped = module.step(x)
            assert not skipped
            losses.append(loss.item())
        history.append(losses)
    for index, cls in enumerate(TWO_VIEW):
        assert history[-1][index] < history[0][index], (cls.__name__, history[0][index], history[-1][index])
