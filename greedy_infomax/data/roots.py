"""$GIM_DATA: the one folder under which every reader looks when it is given no root."""

from __future__ import annotations

import os
from pathlib import Path

from greedy_infomax.errors import GimError


def gim_data() -> Path | None:
    """The folder named by $GIM_DATA, or None where it is unset or empty."""
    value = os.environ.get("GIM_DATA")
    return Path(value).expanduser() if value else None


def required_gim_data(dataset: str, holds: str) -> Path:
    """$GIM_DATA for a dataset that has no system-wide install, or an error saying what the root must hold."""
    root = gim_data()
    if root is None:
        raise GimError(f"{dataset} needs a data root (the folder holding {holds}): pass one or set $GIM_DATA")
    return root
