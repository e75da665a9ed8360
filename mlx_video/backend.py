"""Where MLX computes, as the key of the per-backend constants (``memory.CALIBRATION``,
``nn.blockwise.DEQUANTIZE_MIN_TOKENS``): "cpu", "cuda" or "metal"."""

from __future__ import annotations

import mlx.core as mx

BACKENDS = ("cpu", "cuda", "metal")
ALIASES = {"gpu": "metal"}  # the older name of Metal's constants, still read from command lines


def backend() -> str:
    """ "cpu" (MLX's CPU backend: no fused attention, conv unfold), "cuda" (no conv unfold buffer) or "metal":
    where MLX computes by default."""
    if mx.default_device() == mx.cpu:
        return "cpu"
    cuda = getattr(mx, "cuda", None)
    return "cuda" if cuda is not None and cuda.is_available() else "metal"


def backend_arg(name: str) -> str:
    """A backend named on a command line (an argparse ``type``, beside ``choices=BACKENDS``): the name, with
    "gpu" read as "metal"."""
    return ALIASES.get(name, name)
