import os

import pytest

from tests.helpers import ASSETS, IMAGES

os.environ.setdefault("MLX_ENABLE_TF32", "0")

try:  # keep the oracles from fighting the 2-core machine
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - oracles are always installed in CI
    pass


@pytest.fixture
def images():
    """The folder of bundled sample photographs (``assets/images``)."""
    return IMAGES


@pytest.fixture
def assets():
    """The folder of bundled assets (tiny models, images)."""
    return ASSETS
