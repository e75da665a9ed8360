"""LTX-2 RoPE from fractional positions (ltx_core.model.transformer.rope, rope_type="split", docs/ltx2.md 2.7).

Token positions ([start, end) per axis, seconds and pixels) -> angles -> split-layout tables
(:mod:`mlx_video.nn.rope`), for the transformer's four tables per call (:func:`rope_tables`,
:meth:`mlx_video.ltx2.transformer.LTXModel.rope_tables`) and the text connectors' 1-D tables
(:func:`fractional_angles`). :mod:`mlx_video.ltx2.transformer` re-exports these names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from mlx_video.nn.rope import RopeTable, log_spaced_frequencies, rope_angles, split_rope_table


def fractional_angles(
    positions,
    max_pos: Sequence[float],
    theta: float = 10000.0,
    use_middle: bool = True,
    float64: bool = True,
    inner_dim: int | None = None,
) -> np.ndarray:
    """LTX-2's RoPE angles [B, T, N · n_axes] float32, frequency-major and axis-minor:
    ``g_j · (2 · p / max_pos[axis] − 1)`` with the N = inner_dim // (2 n_axes) frequencies
    ``g = theta**linspace(0, 1, N) · pi/2`` (:func:`~mlx_video.nn.rope.log_spaced_frequencies`).

    positions: [B, n_axes, T, 2] holding [start, end) per axis (p = the midpoint with ``use_middle``,
    else start), or [B, n_axes, T] plain positions, in the units ``max_pos`` is given in (seconds for
    time, pixels for space). The arithmetic is float32 as in ltx-core, whose positions are float32
    when states are built in float32 (see docs/ltx2.md 2.7 about the bf16 trap).
    """
    pos = np.asarray(positions, dtype=np.float32)
    if pos.ndim == 4:
        pos = (pos[..., 0] + pos[..., 1]) / np.float32(2.0) if use_middle else pos[..., 0]
    if pos.ndim != 3 or pos.shape[1] != len(max_pos):
        raise ValueError(f"positions must be [B, {len(max_pos)}, T(, 2)], got {np.shape(positions)}")
    frac = np.stack([pos[:, i] / np.float32(m) for i, m in enumerate(max_pos)], axis=-1)  # [B, T, A]
    n_axes = len(max_pos)
    g = log_spaced_frequencies(inner_dim // (2 * n_axes), theta, float64)
    return rope_angles(frac * np.float32(2) - np.float32(1), np.repeat(g, n_axes), np.tile(np.arange(n_axes), len(g)))


def rope_table(
    positions,
    inner_dim: int,
    heads: int,
    max_pos: Sequence[float],
    theta: float = 10000.0,
    use_middle: bool = True,
    float64: bool = True,
) -> RopeTable:
    """Split-layout RoPE table (:func:`~mlx_video.nn.rope.split_rope_table`) of :func:`fractional_angles`
    for a q/k of width ``inner_dim`` cut into ``heads`` chunks: cos/sin [B, T, heads, inner_dim / (2 heads)]
    float32. Any tokens (latent grid, appended guiding tokens, audio frames) are rows of ``positions``."""
    ang = fractional_angles(positions, max_pos, theta, use_middle, float64, inner_dim)
    return split_rope_table(ang, inner_dim, heads)


class LTXRope(NamedTuple):
    """All RoPE tables of one LTX transformer call (built once per run or stage).

    video / audio: self-attention tables; video_cross / audio_cross: the audio<->video
    cross-attention tables (temporal axis only). Audio entries are None for a video-only run.
    """

    video: RopeTable
    audio: RopeTable | None = None
    video_cross: RopeTable | None = None
    audio_cross: RopeTable | None = None


def rope_tables(
    video_positions,
    audio_positions=None,
    *,
    video_dim: int,
    video_heads: int,
    video_max_pos: Sequence[float],
    audio_dim: int | None = None,
    audio_heads: int | None = None,
    audio_max_pos: Sequence[float] | None = None,
    cross_dim: int | None = None,
    theta: float = 10000.0,
    use_middle: bool = True,
    float64: bool = True,
) -> LTXRope:
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
