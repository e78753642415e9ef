"""Host batches onto the training device."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from greedy_infomax.data.loader import to_device

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_to_device_keeps_values_dtype_and_shape(device):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)[:, None]      # a view, as the loaders pass
    tensor = to_device(array, torch.device(device))
    assert tensor.device.type == device and tensor.dtype == torch.uint8 and tensor.shape == (2, 1, 3, 4)
    assert tensor.cpu().flatten().tolist() == list(range(24))
