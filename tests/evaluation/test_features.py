"""Frozen features: pooling position axes against a loop over regions, every module's readout from one frozen pass
in its own precision, a whole loader's features and labels, the non-finite check, and the fingerprint that proves
an encoder stayed frozen."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import TensorBatches, tiny_sequence_modules
from torch import nn

from greedy_infomax.data.loader import BatchLoader
from greedy_infomax.data.spec import ImageArray, ImageSpec
from greedy_infomax.data.transforms import ImageTransform
from greedy_infomax.errors import GimError
from greedy_infomax.evaluation.features import (
    FINITE_CHUNK,
    FeatureRows,
    extract_features,
    fingerprint,
    finite,
    frozen_pass,
    left_unchanged,
    module_features,
    pool_positions,
    raw_pixel_features,
)


def region_means(z: torch.Tensor, cells: int) -> torch.Tensor:
    """The loop reference of adaptive average pooling: cell i of an axis of length n averages positions
    floor(i n / cells) .. ceil((i + 1) n / cells) - 1; flattened channel first, then cells in row-major order."""
    B, C, *sizes = z.shape
    bounds = [[(i * n // cells, -(-(i + 1) * n // cells)) for i in range(cells)] for n in sizes]
    out = torch.empty(B, C, *[cells] * len(sizes))
    for cell in np.ndindex(*[cells] * len(sizes)):
        region = tuple(slice(*bounds[axis][i]) for axis, i in enumerate(cell))
        out[(slice(None), slice(None), *cell)] = z[(slice(None), slice(None), *region)].flatten(2).mean(2)
    return out.flatten(1)


@pytest.mark.parametrize(
    ("shape", "cells"), [((2, 3, 7), 3), ((2, 3, 8), 1), ((2, 3, 5, 6), 2), ((2, 3, 4, 4), 4), ((1, 2, 3, 4, 5), 2)]
)
def test_pooling_averages_each_region_of_every_position_axis(shape, cells):
    z = torch.randn(shape)
    pooled = pool_positions(z, cells)
    assert pooled.shape == (shape[0], shape[1] * cells ** (len(shape) - 2))
    torch.testing.assert_close(pooled, region_means(z, cells))


def test_vectors_pass_through_pooling():
    z = torch.randn(4, 6)
    assert pool_positions(z, 3) is z


def test_module_features_are_each_readout_pooled_while_the_next_module_gets_the_block_output():
    modules = tiny_sequence_modules().train()
    x = torch.randn(3, 2, 8)  # (B, C, T)
    features = module_features(modules, x, pool=2)
    with torch.no_grad():
        h1 = modules[0].block(x)  # (B, 3, 8)
        h2 = modules[1].block(h1)  # (B, 5, 4)
        expected = [region_means(modules[0].readout(h1), 2), region_means(h2, 2)]
    assert [f.shape for f in features] == [(3, 4 * 2), (3, 5 * 2)]
    for got, want in zip(features, expected):
        torch.testing.assert_close(got, want)
    assert not any(f.requires_grad for f in features), "no autograd graph"
    assert not any(module.training for module in modules), "eval mode"


def test_a_frozen_pass_runs_each_module_and_its_view_in_the_modules_precision():
    """Under bf16 autocast (placement.configure sets it on every module alike) the outputs are bf16, and the
    features computed from them float32."""
    modules = tiny_sequence_modules()
    for module in modules:
        module.autocast_dtype = torch.bfloat16
    x = torch.randn(3, 2, 8)
    outputs = frozen_pass(modules, x, lambda module, h: h)
    features = module_features(modules, x, pool=1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        h1 = modules[0](x)
        h2 = modules[1](h1)
        readout = modules[0].readout(h1)
    assert [output.dtype for output in outputs] == [torch.bfloat16, torch.bfloat16]
    assert torch.equal(outputs[0], h1) and torch.equal(outputs[1], h2)
    assert readout.dtype == torch.bfloat16, "the readout runs under autocast too"
    assert features[0].dtype == torch.float32 and torch.equal(features[0], readout.float().mean(2))


@pytest.mark.parametrize("labelled", [True, False])
def test_extracted_features_are_every_batch_of_the_epoch_in_order(labelled):
    modules = tiny_sequence_modules()
    inputs, labels = torch.randn(7, 2, 8), torch.arange(7)
    loader = TensorBatches(inputs, labels if labelled else None, batch_size=3)
    features, extracted_labels = extract_features(modules, loader, pool=1, epoch=2)
    assert loader.epochs == [2]
    for got, want in zip(features, module_features(modules, inputs + 2, pool=1)):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want)
    assert torch.equal(extracted_labels, labels) if labelled else extracted_labels is None


def test_features_are_written_into_one_tensor_per_module_and_passes_share_it():
    """No concatenation of batches: each module's features of a split and of a second pass over it (an augmented
    view) are rows of one tensor allocated at the first batch, in the order the batches came."""
    modules = tiny_sequence_modules()
    inputs, labels = torch.randn(7, 2, 8), torch.arange(7)
    loader = TensorBatches(inputs, labels, batch_size=3)
    rows = FeatureRows(2 * 9)  # two passes of 3 batches of at most 3
    first, _ = extract_features(modules, loader, pool=1, into=rows)
    storages = [features.untyped_storage().data_ptr() for features in first]
    features, extracted_labels = extract_features(modules, loader, pool=1, epoch=1, into=rows)
    assert [f.untyped_storage().data_ptr() for f in features] == storages
    for got, one, two in zip(features, *(module_features(modules, inputs + e, pool=1) for e in (0, 1))):
        assert got.shape[0] == 14 and got.untyped_storage().nbytes() == 18 * got.shape[1] * 4
        torch.testing.assert_close(got, torch.cat([one, two]))
    assert torch.equal(extracted_labels, labels.repeat(2))


def test_a_store_in_bfloat16_holds_the_features_rounded_and_half_the_bytes():
    modules = tiny_sequence_modules()
    inputs = torch.randn(7, 2, 8)
    features, _ = extract_features(modules, TensorBatches(inputs, None, 3), pool=1, into=FeatureRows(9, torch.bfloat16))
    for got, want in zip(features, module_features(modules, inputs, pool=1)):
        assert got.dtype == torch.bfloat16 and got.untyped_storage().nbytes() == 9 * got.shape[1] * 2
        assert torch.equal(got, want.bfloat16())


def test_a_loader_longer_than_it_said_still_gives_every_row():
    modules = tiny_sequence_modules()
    inputs = torch.randn(7, 2, 8)
    features, _ = extract_features(modules, TensorBatches(inputs, None, 3), pool=1, into=FeatureRows(2))
    for got, want in zip(features, module_features(modules, inputs, pool=1)):
        torch.testing.assert_close(got, want)


def test_extraction_names_the_first_module_whose_features_are_not_finite():
    modules = tiny_sequence_modules()
    with torch.no_grad():
        modules[1].block.bias.fill_(float("inf"))
    with pytest.raises(GimError, match="^trained: test: module 2 gives non-finite features"):
        extract_features(modules, TensorBatches(torch.randn(4, 2, 8), None, 2), pool=1, description="trained: test")


def test_finite_returns_finite_features_and_names_the_first_module_that_is_not():
    ok = torch.ones(3, 2)
    assert finite([ok, ok], "x") == [ok, ok]
    for bad in (float("inf"), float("-inf"), float("nan")):
        with pytest.raises(GimError, match="test: module 2 gives non-finite features: its weights may have diverged"):
            finite([ok, torch.tensor([[1.0, bad]]), torch.tensor([[bad]])], "test")


def test_fingerprint_sees_every_parameter_change_but_not_the_memory_format():
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Conv2d(3, 4, 1))
    before = fingerprint(model)
    assert fingerprint(copy.deepcopy(model)) == before
    assert fingerprint(copy.deepcopy(model).to(memory_format=torch.channels_last)) == before
    with torch.no_grad():
        model[1].bias[2] += 1e-3
    assert fingerprint(model) != before


def test_left_unchanged_passes_a_frozen_encoder_and_fails_one_that_changed():
    modules = tiny_sequence_modules()
    with left_unchanged(modules, "trained"):
        module_features(modules, torch.randn(2, 2, 8), pool=1)
    with pytest.raises(RuntimeError, match="probing changed the random init encoder's parameters"):
        with left_unchanged(modules, "random init"):
            with torch.no_grad():
                modules[1].block.weight[0, 0, 0] += 1e-4


def test_raw_pixel_features_are_the_transformed_images_flattened_in_stored_order():
    spec = ImageSpec(1, 4, 4, 3, (0.5,), (0.25,), 0.5, 0.25)
    images = np.random.default_rng(0).integers(0, 256, (5, 1, 4, 4), dtype=np.uint8)
    transform = ImageTransform(4, False, False, (0.5,), (0.25,))
    loader = BatchLoader(ImageArray(images, np.array([2, 0, 1, 1, 0]), spec), 2, transform, torch.device("cpu"))
    features, labels = raw_pixel_features(loader)
    expected = (torch.from_numpy(images).float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(features, expected.flatten(1))
    assert labels.tolist() == [2, 0, 1, 1, 0]


def test_finite_checks_every_chunk_of_rows():
    """The check runs FINITE_CHUNK rows at a time (a whole split at once made temporaries near twice its size):
    a bad value in the last, partial chunk is still found."""
    features = torch.zeros(2 * FINITE_CHUNK + 3, 2)
    features[-1, 1] = float("nan")
    with pytest.raises(GimError, match="test: module 1 gives non-finite features"):
        finite([features], "test")
