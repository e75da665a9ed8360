"""Sinusoidal timestep embeddings (cos first), as Wan and LTX-2 use them."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np


def sinusoidal_embedding(t: mx.array, dim: int, max_period: float = 10000.0, float64: bool = True) -> mx.array:
    """[cos(t·f_k), sin(t·f_k)] with f_k = max_period^(-k/(dim/2)), k = 0..dim/2-1.

    t: any shape of timesteps (Wan: 0..1000; LTX: sigma·1000). Returns t.shape + (dim,), float32.
    ``float64`` computes the angles in float64 on the host (Wan's reference does); MLX GPU
    backends have no float64, so this path goes through NumPy and needs t to be evaluable.
    """
    half = dim // 2
    if float64:
        tn = np.asarray(t, dtype=np.float64)
        freqs = np.power(max_period, -np.arange(half, dtype=np.float64) / half)
        ang = tn[..., None] * freqs
        return mx.array(np.concatenate([np.cos(ang), np.sin(ang)], axis=-1).astype(np.float32))
    freqs = mx.exp(-math.log(max_period) * mx.arange(half, dtype=mx.float32) / half)
    ang = t.astype(mx.float32)[..., None] * freqs
    return mx.concatenate([mx.cos(ang), mx.sin(ang)], axis=-1)
