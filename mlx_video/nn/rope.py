"""Rotary position embeddings (RoPE) built from explicit per-axis positions.

Positions are data: a caller passes one integer (or real) position vector per axis and gets
cos/sin tables for every token of the row-major grid those vectors span. Angles are computed in
float64 with NumPy (MLX GPU backends have no float64) and stored float32.

The Wan DiT uses the *interleaved* form: head channels (2i, 2i+1) form the complex number
x[2i] + i·x[2i+1], rotated by exp(i·pos·theta^(-2j/d_axis)) (docs/wan.md 2.4).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import mlx.core as mx
import numpy as np


class RopeTables(NamedTuple):
    """Rotation coefficients per token and channel pair, each [L, 1, D/2, 2] float32 (the 1
    broadcasts over heads): a rotated pair is ``x[2i]·even[i] + x[2i+1]·odd[i]`` with
    even = (cos, sin) and odd = (-sin, cos). This layout lets the rotation run as one fused
    elementwise kernel that writes only its output (the stack-of-halves form measured 4-7x the
    input's size in temporaries on CPU and CUDA; this one 1x)."""

    even: mx.array
    odd: mx.array

    @property
    def cos(self) -> mx.array:
        """[L, 1, D/2] float32."""
        return self.even[..., 0]

    @property
    def sin(self) -> mx.array:
        """[L, 1, D/2] float32."""
        return self.even[..., 1]


def rope_frequencies(dim: int, theta: float = 10000.0) -> np.ndarray:
    """theta^(-2j/dim) for j = 0..dim/2-1, float64 [dim/2]. Raises ValueError for odd ``dim``."""
    if dim % 2:
        raise ValueError(f"a RoPE axis needs an even number of channels, got {dim}")
    return 1.0 / np.power(float(theta), np.arange(0, dim, 2, dtype=np.float64) / dim)


def nd_rope_tables(positions: Sequence, dims: Sequence[int], theta: float = 10000.0) -> RopeTables:
    """Interleaved n-D RoPE tables for the grid spanned by per-axis ``positions``.

    positions: one 1-D sequence per axis (lengths n_0..n_k; any ints or reals, e.g. ``arange``,
    reversed, or arbitrary frame indices). dims: rotary channels per axis (even; they sum to the
    head dim D). Token (i_0, .., i_k) of the row-major grid (L = n_0·..·n_k tokens) gets the
    angles pos_a[i_a]·theta^(-2j/dims[a]) for each axis a, concatenated over axes in order.
    Returns :class:`RopeTables` ([L, 1, D/2, 2] float32 tables; ``.cos``/``.sin`` [L, 1, D/2]).
    """
    if len(positions) != len(dims):
        raise ValueError(f"{len(positions)} position vectors for {len(dims)} axis dims")
    pos = [np.asarray(p, dtype=np.float64).reshape(-1) for p in positions]
    grid = tuple(len(p) for p in pos)
    parts = []
    for a, (p, d) in enumerate(zip(pos, dims)):
        ang = np.outer(p, rope_frequencies(d, theta))               # [n_a, d/2] float64
        shape = [1] * len(grid) + [d // 2]
        shape[a] = grid[a]
        parts.append(np.broadcast_to(ang.reshape(shape), grid + (d // 2,)))
    ang = np.concatenate(parts, axis=-1).reshape(-1, 1, sum(dims) // 2)
    cos, sin = np.cos(ang), np.sin(ang)
    return RopeTables(mx.array(np.stack([cos, sin], -1).astype(np.float32)),
                      mx.array(np.stack([-sin, cos], -1).astype(np.float32)))


@mx.compile
def _rotate(x: mx.array, even: mx.array, odd: mx.array) -> mx.array:
    shape, dtype = x.shape, x.dtype
    pairs = x.reshape(*shape[:-1], shape[-1] // 2, 2)
    out = pairs[..., :1].astype(mx.float32) * even + pairs[..., 1:].astype(mx.float32) * odd
    return out.astype(dtype).reshape(shape)


def apply_rope_interleaved(x: mx.array, rope: RopeTables) -> mx.array:
    """Rotate interleaved channel pairs of ``x`` [B, L, H, D] by ``rope`` (tables for L tokens).

    Computed in float32 and cast back to x's dtype (bf16 in production). Follows Wan's
    ``rope_apply`` (which rotates in float64; the difference is float32 rounding, ~1e-7 relative).
    """
    return _rotate(x, rope.even, rope.odd)
