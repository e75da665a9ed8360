"""Rotary position embeddings (RoPE): frequencies, angles from explicit positions, and the two table
layouts the models use. This module knows no family; each family builds its own positions:

- Wan (interleaved pairs): integer positions on the post-patch (T, h, w) grid, per-axis channel
  split, built by ``mlx_video.wan.transformer.WanModel.rope_tables`` (docs/wan.md 2.4);
- LTX-2 (split halves): fractional positions ``2·p/max_pos − 1`` of each token's [start, end) in
  seconds and pixels (token positions from ``mlx_video.ltx2.conditioning``), built by
  ``mlx_video.ltx2.rope.rope_tables`` and the text connectors (docs/ltx2.md 2.7).

Positions are data: any ints or reals per token (reversed time, keyframe times, appended guiding
tokens). Every table is ``angle = position[axis] · frequency`` per channel pair (:func:`rope_angles`),
then cos / sin in one of the layouts below, stored float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import mlx.core as mx
import numpy as np

# ----------------------------------------------------------------------------- frequencies and angles


def rope_frequencies(dim: int, theta: float = 10000.0) -> np.ndarray:
    """theta^(-2j/dim) for j = 0..dim/2-1, float64 [dim/2] (the original RoPE's; Wan per axis).
    Raises ValueError for odd ``dim``."""
    if dim % 2:
        raise ValueError(f"a RoPE axis needs an even number of channels, got {dim}")
    return 1.0 / np.power(float(theta), np.arange(0, dim, 2, dtype=np.float64) / dim)


def log_spaced_frequencies(n: int, theta: float = 10000.0, float64: bool = True) -> np.ndarray:
    """``theta**linspace(0, 1, n) * pi/2``, float32 [n] (ltx-core's frequency grid for fractional
    positions). ``float64`` computes it in float64 and rounds once (ltx-core's
    ``generate_freq_grid_np``, the shipped setting); otherwise in float32 like
    ``generate_freq_grid_pytorch``."""
    if float64:
        return (np.power(float(theta), np.linspace(0.0, 1.0, n, dtype=np.float64)) * math.pi / 2).astype(np.float32)
    exps = np.linspace(0.0, 1.0, n, dtype=np.float32)
    return (np.power(np.float32(theta), exps) * np.float32(math.pi)) / np.float32(2)


def rope_angles(positions: np.ndarray, freqs: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    """Angles [..., T, K]: ``angle[..., t, k] = positions[..., t, axes[k]] · freqs[k]``.

    positions: [..., T, A] per token and axis; freqs: [K] one frequency per rotated channel pair;
    axes: [K] which axis each pair rotates by. One multiply in the inputs' dtype (float64 for Wan,
    float32 for LTX-2, as their references)."""
    return positions[..., np.asarray(axes, dtype=np.int64)] * freqs


# ----------------------------------------------------------------------------- interleaved layout (Wan)


class RopeTables(NamedTuple):
    """Interleaved-layout rotation coefficients per token and channel pair, each [L, 1, D/2, 2] float32
    (the 1 broadcasts over heads): a rotated pair is ``x[2i]·even[i] + x[2i+1]·odd[i]`` with
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


def nd_rope_tables(positions: Sequence, dims: Sequence[int], theta: float = 10000.0) -> RopeTables:
    """Interleaved n-D RoPE tables for the grid spanned by per-axis ``positions``.

    positions: one 1-D sequence per axis (lengths n_0..n_k; any ints or reals, e.g. ``arange``,
    reversed, or arbitrary frame indices). dims: rotary channels per axis (even; they sum to the
    head dim D). Token (i_0, .., i_k) of the row-major grid (L = n_0·..·n_k tokens) gets the
    angles pos_a[i_a]·theta^(-2j/dims[a]) for each axis a, concatenated over axes in order,
    computed in float64 (cos / sin too, on the host: MLX GPU backends have no float64).
    Returns :class:`RopeTables` ([L, 1, D/2, 2] float32 tables; ``.cos``/``.sin`` [L, 1, D/2]).
    """
    if len(positions) != len(dims):
        raise ValueError(f"{len(positions)} position vectors for {len(dims)} axis dims")
    pos = [np.asarray(p, dtype=np.float64).reshape(-1) for p in positions]
    grid = np.stack(np.meshgrid(*pos, indexing="ij"), axis=-1).reshape(-1, len(pos))  # [L, A]
    freqs = np.concatenate([rope_frequencies(d, theta) for d in dims])
    axes = np.concatenate([np.full(d // 2, a) for a, d in enumerate(dims)])
    ang = rope_angles(grid, freqs, axes)[:, None, :]  # [L, 1, D/2]
    cos, sin = np.cos(ang), np.sin(ang)
    return RopeTables(
        mx.array(np.stack([cos, sin], -1).astype(np.float32)), mx.array(np.stack([-sin, cos], -1).astype(np.float32))
    )


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


# ----------------------------------------------------------------------------- split layout (LTX-2)


class RopeTable(NamedTuple):
    """Split-layout cos / sin tables, each [B, T, heads, d_rot / 2] float32 (d_rot = inner_dim / heads)."""

    cos: mx.array
    sin: mx.array


def split_rope_table(angles: np.ndarray, inner_dim: int, heads: int) -> RopeTable:
    """Split-layout table for a q/k of width ``inner_dim`` cut into ``heads`` chunks, from float32
    ``angles`` [B, T, K]: padded at the front with (cos 1, sin 0) up to inner_dim / 2 angles, then split
    into ``heads`` consecutive chunks; each chunk rotates the two halves of its slice of the inner
    dimension (ltx-core ``rope_type="split"``). cos / sin of the float32 angles are taken on the
    device, as ltx-core does (float64 on the host cost ~0.8 s per stage at 6,144 tokens and moved the
    tables by about one float32 ulp). Raises ValueError when inner_dim / 2 is not divisible by
    ``heads`` or there are more angles than inner_dim / 2."""
    half = inner_dim // 2
    pad = half - angles.shape[-1]
    if pad < 0 or half % heads:
        raise ValueError(f"cannot lay {angles.shape[-1]} RoPE angles over inner_dim {inner_dim} with {heads} heads")
    b, t = angles.shape[:2]
    ang = mx.array(angles)
    cos = mx.concatenate([mx.ones((b, t, pad), mx.float32), mx.cos(ang)], axis=-1)
    sin = mx.concatenate([mx.zeros((b, t, pad), mx.float32), mx.sin(ang)], axis=-1)
    return RopeTable(cos.reshape(b, t, heads, half // heads), sin.reshape(b, t, heads, half // heads))
