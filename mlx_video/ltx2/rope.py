"""LTX-2 rotary position embeddings, "split" layout, from explicit positions.

Follows ``ltx_core.model.transformer.rope`` (ltx-core 1.0.0, ``rope_type="split"``), the layout the
LTX-2 and LTX-2.3 checkpoints ship with. Tables are built once per run or stage on the host (NumPy)
from explicit positions and stored float32; the transformer only multiplies by them.

Construction (docs/ltx2.md §2.7): frequency grid ``g_j = theta**(j/(N-1)) * pi/2`` for j = 0..N-1 with
``N = inner_dim // (2 * n_axes)``; position p per axis (the midpoint of [start, end) with
``use_middle``); angle ``g_j * (2 * p / max_pos[axis] - 1)`` laid out frequency-major, axis-minor;
padded at the front with (cos 1, sin 0) up to ``inner_dim / 2`` angles; then split into ``heads``
consecutive chunks. Each chunk rotates the two halves of its slice of the inner dimension.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import mlx.core as mx
import numpy as np


class RopeTable(NamedTuple):
    """cos / sin tables, each [B, T, heads, d_rot / 2] float32 (d_rot = inner_dim / heads)."""

    cos: mx.array
    sin: mx.array


def freq_grid(theta: float, n_axes: int, inner_dim: int, float64: bool = True) -> np.ndarray:
    """The N = inner_dim // (2 n_axes) angular frequencies ``theta**linspace(0, 1, N) * pi/2``, float32.

    ``float64`` computes the grid in float64 and rounds once (``frequencies_precision="float64"``,
    the shipped setting); otherwise it is computed in float32 like ltx-core's torch path.
    """
    n = inner_dim // (2 * n_axes)
    if float64:
        return (np.power(float(theta), np.linspace(0.0, 1.0, n, dtype=np.float64)) * math.pi / 2).astype(np.float32)
    exps = np.linspace(0.0, 1.0, n, dtype=np.float32)
    return (np.power(np.float32(theta), exps) * np.float32(math.pi)) / np.float32(2)


def rope_angles(positions, inner_dim: int, max_pos: Sequence[float], theta: float = 10000.0,
                use_middle: bool = True, float64: bool = True) -> np.ndarray:
    """RoPE angles [B, T, N * n_axes] float32, frequency-major and axis-minor.

    positions: [B, n_axes, T, 2] holding [start, end) per axis (or [B, n_axes, T] plain positions;
    with ``use_middle=False`` only ``start`` is used), in the units ``max_pos`` is given in (seconds
    for time, pixels for space in LTX-2). The arithmetic is float32 as in ltx-core, whose positions
    are float32 when states are built in float32 (see docs/ltx2.md §2.7 about the bf16 trap).
    """
    pos = np.asarray(positions, dtype=np.float32)
    if pos.ndim == 4:
        pos = (pos[..., 0] + pos[..., 1]) / np.float32(2.0) if use_middle else pos[..., 0]
    if pos.ndim != 3 or pos.shape[1] != len(max_pos):
        raise ValueError(f"positions must be [B, {len(max_pos)}, T(, 2)], got {np.shape(positions)}")
    frac = np.stack([pos[:, i] / np.float32(m) for i, m in enumerate(max_pos)], axis=-1)  # [B, T, A]
    g = freq_grid(theta, len(max_pos), inner_dim, float64)
    ang = g[None, None, :, None] * (frac[:, :, None, :] * np.float32(2) - np.float32(1))  # [B, T, N, A]
    return ang.reshape(ang.shape[0], ang.shape[1], -1)


def rope_table(positions, inner_dim: int, heads: int, max_pos: Sequence[float], theta: float = 10000.0,
               use_middle: bool = True, float64: bool = True) -> RopeTable:
    """Split-layout RoPE table for a q/k of width ``inner_dim`` cut into ``heads`` chunks.

    positions: [B, n_axes, T, 2] [start, end) (see :func:`rope_angles`); any tokens (latent grid,
    appended guiding tokens, audio frames) are just rows of it. Returns :class:`RopeTable` with
    cos/sin [B, T, heads, inner_dim / (2 heads)] float32. Raises ValueError when inner_dim / 2 is not
    divisible by ``heads`` or there are more angles than inner_dim / 2.
    """
    ang = rope_angles(positions, inner_dim, max_pos, theta, use_middle, float64)
    half = inner_dim // 2
    pad = half - ang.shape[-1]
    if pad < 0 or half % heads:
        raise ValueError(f"cannot lay {ang.shape[-1]} RoPE angles over inner_dim {inner_dim} with {heads} heads")
    b, t = ang.shape[:2]
    # cos/sin of the float32 angles on the device, as ltx-core takes them (float64 on the host cost
    # ~0.8 s per stage at 6,144 tokens and moved the tables by about one float32 ulp)
    ang = mx.array(ang)
    cos = mx.concatenate([mx.ones((b, t, pad), mx.float32), mx.cos(ang)], axis=-1)
    sin = mx.concatenate([mx.zeros((b, t, pad), mx.float32), mx.sin(ang)], axis=-1)
    return RopeTable(cos.reshape(b, t, heads, half // heads), sin.reshape(b, t, heads, half // heads))


def apply_rope(x: mx.array, table: RopeTable) -> mx.array:
    """Rotate x [B, T, inner_dim] by ``table`` (cos/sin [B or 1, T, heads, d/2]); returns x's shape, float32.

    Within each of the table's ``heads`` chunks the first half is rotated against the second:
    ``(a, b) -> (a cos - b sin, b cos + a sin)``.
    """
    b, t, d = x.shape
    h, half = table.cos.shape[2], table.cos.shape[3]
    x = x.astype(mx.float32).reshape(b, t, h, 2, half)
    a, c = x[..., 0, :], x[..., 1, :]
    out = mx.stack([a * table.cos - c * table.sin, c * table.cos + a * table.sin], axis=3)
    return out.reshape(b, t, d)


class LTXRope(NamedTuple):
    """All RoPE tables of one LTX transformer call (built once per run or stage).

    video / audio: self-attention tables; video_cross / audio_cross: the audio<->video
    cross-attention tables (temporal axis only). Audio entries are None for a video-only run.
    """

    video: RopeTable
    audio: RopeTable | None = None
    video_cross: RopeTable | None = None
    audio_cross: RopeTable | None = None


def rope_tables(video_positions, audio_positions=None, *, video_dim: int, video_heads: int,
                video_max_pos: Sequence[float], audio_dim: int | None = None, audio_heads: int | None = None,
                audio_max_pos: Sequence[float] | None = None, cross_dim: int | None = None,
                theta: float = 10000.0, use_middle: bool = True, float64: bool = True) -> LTXRope:
    """The four RoPE tables of an LTX-2 audio+video transformer call.

    video_positions: [B, 3, T_v, 2] (t in seconds, h, w in pixels, [start, end)), every video token
    including appended guiding tokens; audio_positions: [B, 1, T_a, 2] seconds, or None (video only).
    The cross-modal tables use only the time axis, width ``cross_dim`` (the audio inner dim), each
    modality's own head count, max_pos ``max(video_max_pos[0], audio_max_pos[0])`` and always the
    midpoint of [start, end), as ltx-core's MultiModalTransformerArgsPreprocessor does.
    """
    video = rope_table(video_positions, video_dim, video_heads, video_max_pos, theta, use_middle, float64)
    if audio_positions is None:
        return LTXRope(video)
    audio = rope_table(audio_positions, audio_dim, audio_heads, audio_max_pos, theta, use_middle, float64)
    cross_max = [max(video_max_pos[0], audio_max_pos[0])]
    vpos, apos = np.asarray(video_positions)[:, :1], np.asarray(audio_positions)[:, :1]
    video_cross = rope_table(vpos, cross_dim, video_heads, cross_max, theta, True, float64)
    audio_cross = rope_table(apos, cross_dim, audio_heads, cross_max, theta, True, float64)
    return LTXRope(video, audio, video_cross, audio_cross)
