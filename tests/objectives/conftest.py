"""Shared by the InfoNCE tests: record the negative indices an objective samples, to replay them."""
from __future__ import annotations

from types import ModuleType

import pytest

from greedy_infomax.objectives.negatives import sample_negatives


@pytest.fixture
def record_negatives(monkeypatch):
    """record_negatives(objective_module) -> list that fills with (indices, pool_size) per sampling call."""
    def record(module: ModuleType) -> list:
        sampled = []

        def recording(rows, num_negatives, pool_size, device):
            indices = sample_negatives(rows, num_negatives, pool_size, device)
            sampled.append((indices, pool_size))
            return indices

        monkeypatch.setattr(module, "sample_negatives", recording)
        return sampled
    return record
