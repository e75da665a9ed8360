"""LTX-2 latent state and image conditioning: token positions, latent anchors, guiding tokens.

Follows ltx-core 1.0.0 (``tools.VideoLatentTools`` / ``AudioLatentTools``, ``components.patchifiers``,
``conditioning.types.latent_cond.VideoConditionByLatentIndex`` and
``conditioning.types.keyframe_cond.VideoConditionByKeyframeIndex``; docs/ltx2.md §7, §10).

A stage's state is a :class:`TokenState`: patchified tokens ``[B, T, C]`` (latent grid tokens in
(frame, row, column) order, which is the channels-last latent ``[B, F, h, w, C]`` reshaped, then any
appended guiding tokens), the clean tokens, the per-token denoise mask and the token positions.

- :class:`~mlx_video.conditioning.LatentAnchor` (an image at pixel frame 0): its tokens replace the
  grid tokens of its latent frame in both ``latent`` and ``clean``; mask ``1 - strength``.
- :class:`GuidingTokens` (an image at a later pixel frame f): its tokens are appended at the end of
  the sequence (``latent`` = ``clean`` = the image tokens, mask ``1 - strength``) with their own
  positions: the image's one-latent-frame grid in pixels, time ``[f, f + 8)`` (no causal fix unless
  f = 0), divided by fps. They stay in the state for the whole stage: noised once by the noiser,
  seen by every guidance pass and by the audio<->video cross-attention, post-processed with their
  mask and stepped like any token; :meth:`TokenState.grid_latent` drops them afterwards.

Departure recorded (docs/ltx2.md §7, §10.1): newer LTX-2 code (after 1.0.0) uses time bounds
``[f, f + 1)`` for single-image keyframes; we keep 1.0.0's ``[f, f + 8)`` because 1.0.0 is the
released code the checkpoints ship with and the oracle we test against. Positions are float32
(ltx-core 1.0.0 casts them to the latent dtype, bf16 in its pipelines, which scrambles the high
RoPE bands; §2.7); this changes RoPE angles, not the semantics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Union

import mlx.core as mx
import numpy as np

from mlx_video.conditioning import LatentAnchor, add_noise

TIME_SCALE, SPACE_SCALE = 8, 32  # pixel frames / pixels per latent cell (VAE compression)
AUDIO_SAMPLE_RATE, AUDIO_HOP, AUDIO_DOWNSAMPLE = 16000, 160, 4  # audio latent = 25 per second

__all__ = [
    "GuidingTokens",
    "ReferenceTokens",
    "LatentAnchor",
    "TokenState",
    "audio_latent_frames",
    "audio_positions",
    "audio_state",
    "keyframe_positions",
    "latent_grid",
    "noise_state",
    "patchify",
    "time_region_mask",
    "unpatchify",
    "video_positions",
    "video_state",
]


@dataclass
class GuidingTokens:
    """An encoded image appended as clean tokens at pixel frame ``pixel_frame``.

    latent: [1, n, h, w, C] normalised VAE latent (n = 1 for an image), h, w = the stage's grid;
    strength: 1 keeps the tokens clean (per-token timestep ``sigma * (1 - strength)``).
    """

    latent: mx.array
    pixel_frame: int
    strength: float = 1.0


@dataclass
class ReferenceTokens:
    """An encoded control video appended as in-context tokens (IC-LoRA; ltx-core 1.0.0
    ``VideoConditionByReferenceLatent``, optionally wrapped in ``ConditioningItemAttentionStrengthWrapper``).

    latent: [1, n, h', w', C] normalised VAE latent of the control video (h', w' = the grid's rows and
    columns / ``downscale_factor``); strength: 1 keeps the tokens clean (denoise mask ``1 - strength``);
    downscale_factor: the IC-LoRA's ``reference_downscale_factor`` (its spatial positions are multiplied by
    it); attention: None (full attention), a number in [0, 1], or float [n*h'*w'] per token in [0, 1]: the
    weight of attention between these tokens and the grid tokens (both ways), as an additive log bias.
    Positions: the control latent's own grid, causal fix, time / fps (no frame offset).
    """

    latent: mx.array
    strength: float = 1.0
    downscale_factor: int = 1
    attention: Union[float, np.ndarray, None] = None


Conditioning = Union[LatentAnchor, GuidingTokens, ReferenceTokens]


def grow_attention_mask(
    mask: np.ndarray | None, num_grid: int, num_existing: int, cross: np.ndarray | None
) -> np.ndarray | None:
    """ltx-core ``update_attention_mask`` / ``build_attention_mask`` for M tokens appended after ``num_existing``:
    None stays None when ``cross`` is None; else a [B, N+M, N+M] float32 mask: the old mask (ones when there
    was none) top left, ones among the new tokens, ``cross`` [B, M] between the new tokens and the first
    ``num_grid`` (grid) tokens both ways, zeros between the new tokens and earlier appended ones."""
    if cross is None and mask is None:
        return None
    b, m = cross.shape
    total = num_existing + m
    out = np.zeros((b, total, total), np.float32)
    out[:, :num_existing, :num_existing] = 1.0 if mask is None else mask
    out[:, num_existing:, num_existing:] = 1.0
    out[:, :num_grid, num_existing:] = cross[:, None, :]
    out[:, num_existing:, :num_grid] = cross[:, :, None]
    return out


def latent_grid(num_frames: int, height: int, width: int) -> tuple[int, int, int]:
    """Pixel video size -> latent grid (frames, rows, columns): ``(1 + (F - 1) // 8, H // 32, W // 32)``.

    Raises ValueError unless F = 8k + 1 and H, W are multiples of 32.
    """
    if num_frames < 1 or (num_frames - 1) % TIME_SCALE:
        raise ValueError(f"num_frames must be 8k+1 (1, 9, 17, ..., 121), got {num_frames}")
    if height % SPACE_SCALE or width % SPACE_SCALE or height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive multiples of 32, got {height}x{width}")
    return 1 + (num_frames - 1) // TIME_SCALE, height // SPACE_SCALE, width // SPACE_SCALE


def _pixel_bounds(frames: int, h: int, w: int, causal_fix: bool) -> np.ndarray:
    """[3, F*h*w, 2] int64 [start, end) in pixel units (time in pixel frames), (f, h, w) order."""
    f_i, h_i, w_i = np.meshgrid(np.arange(frames), np.arange(h), np.arange(w), indexing="ij")
    starts = np.stack([f_i.ravel() * TIME_SCALE, h_i.ravel() * SPACE_SCALE, w_i.ravel() * SPACE_SCALE])
    ends = starts + np.array([TIME_SCALE, SPACE_SCALE, SPACE_SCALE])[:, None]
    b = np.stack([starts, ends], axis=-1).astype(np.int64)
    if causal_fix:  # the causal VAE's first latent frame covers one pixel frame
        b[0] = np.clip(b[0] + 1 - TIME_SCALE, 0, None)
    return b


def video_positions(frames: int, h: int, w: int, fps: float, batch: int = 1, causal_fix: bool = True) -> np.ndarray:
    """Positions of a latent grid's tokens, [B, 3, F*h*w, 2] float32: [start, end) per axis with time
    in seconds (causal fix: the first latent frame is [0, 1) pixel frames) and space in pixels
    (VideoLatentTools.create_initial_state)."""
    pos = _pixel_bounds(frames, h, w, causal_fix).astype(np.float32)
    pos[0] = pos[0] / np.float32(fps)
    return np.broadcast_to(pos[None], (batch, *pos.shape)).copy()


def keyframe_positions(
    frames: int, h: int, w: int, pixel_frame: int, fps: float, batch: int = 1, causal_fix: bool = True
) -> np.ndarray:
    """Positions of guiding tokens for an ``frames`` x h x w latent placed at pixel frame ``pixel_frame``
    (VideoConditionByKeyframeIndex, ltx-core 1.0.0): the latent's own grid in pixels, causal fix only
    when ``pixel_frame == 0``, time shifted by ``pixel_frame`` then divided by fps. [B, 3, T, 2] float32.
    One image at frame f: time [f, f + 8) / fps (midpoint f + 4); at frame 0: [0, 1) / fps.
    """
    pos = _pixel_bounds(frames, h, w, causal_fix and pixel_frame == 0)
    pos[0] += int(pixel_frame)
    pos = pos.astype(np.float32)
    pos[0] = pos[0] / np.float32(fps)
    return np.broadcast_to(pos[None], (batch, *pos.shape)).copy()


def audio_latent_frames(num_frames: int, fps: float) -> int:
    """Audio latent length for a clip: ``round(num_frames / fps * 25)`` (AudioLatentShape.from_video_pixel_shape)."""
    per_second = AUDIO_SAMPLE_RATE / AUDIO_HOP / AUDIO_DOWNSAMPLE
    return round(float(num_frames) / float(fps) * per_second)


def audio_positions(frames: int, batch: int = 1, causal: bool = True) -> np.ndarray:
    """Audio token times [B, 1, T, 2] float32 in seconds (AudioPatchifier): latent i covers mel frames
    [4i, 4i + 4), shifted by 1 - 4 and clamped at 0 when causal, times hop / sample_rate."""

    def t(idx):
        mel = idx.astype(np.float32) * np.float32(AUDIO_DOWNSAMPLE)
        if causal:
            mel = np.clip(mel + np.float32(1 - AUDIO_DOWNSAMPLE), 0, None)
        return mel * np.float32(AUDIO_HOP) / np.float32(AUDIO_SAMPLE_RATE)

    i = np.arange(frames)
    pos = np.stack([t(i), t(i + 1)], axis=-1)[None].astype(np.float32)  # [1, T, 2]
    return np.broadcast_to(pos[None], (batch, 1, frames, 2)).copy()


def patchify(latent: mx.array) -> mx.array:
    """Channels-last video latent [B, F, h, w, C] -> tokens [B, F*h*w, C] (ltx-core's patch size 1 order)."""
    b, *_, c = latent.shape
    return latent.reshape(b, -1, c)


def unpatchify(tokens: mx.array, grid: tuple[int, int, int]) -> mx.array:
    """Tokens [B, F*h*w, C] -> channels-last latent [B, F, h, w, C]."""
    return tokens.reshape(tokens.shape[0], *grid, tokens.shape[-1])


@dataclass
class TokenState:
    """One modality's latent state for a stage (ltx-core ``LatentState``), float32.

    latent / clean: [B, T, C]; mask: [B, T, 1] (1 = generate, 0 = keep clean); positions:
    NumPy [B, n_axes, T, 2] (video: seconds, pixels, pixels; audio: seconds); ``num_grid``: the
    leading tokens that form the latent grid ``grid`` (video (F, h, w); audio None); the rest are
    appended guiding tokens.
    """

    latent: mx.array
    clean: mx.array
    mask: mx.array
    positions: np.ndarray
    num_grid: int
    grid: tuple[int, int, int] | None = None
    attention_mask: np.ndarray | None = None  # [B, T, T] float32 in [0, 1] (None: full attention)

    def grid_latent(self) -> mx.array:
        """The grid tokens without guiding tokens: video [B, F, h, w, C], audio [B, T, C]."""
        x = self.latent[:, : self.num_grid]
        return unpatchify(x, self.grid) if self.grid is not None else x


def video_state(
    grid: tuple[int, int, int],
    channels: int,
    fps: float,
    conditionings: Sequence[Conditioning] = (),
    initial_latent: mx.array | None = None,
    batch: int = 1,
) -> TokenState:
    """Build a video state as ltx-core's ``create_initial_state`` + ``state_with_conditionings``
    (before noising): latent = ``initial_latent`` [B, F, h, w, C] (or zeros), clean = latent, mask 1;
    then each item in order: a :class:`LatentAnchor` overwrites the tokens of its latent frames in
    latent and clean and sets their mask to 1 - strength; a :class:`GuidingTokens` appends its tokens,
    mask and :func:`keyframe_positions`.

    Raises ValueError when a conditioning latent does not match the grid's rows, columns and channels,
    an anchor does not fit the frames, a strength is outside [0, 1], or a guide's pixel frame is past
    the clip's last frame.
    """
    f, h, w = grid
    n = f * h * w
    if initial_latent is None:
        latent = mx.zeros((batch, n, channels), mx.float32)
    else:
        if tuple(initial_latent.shape) != (batch, f, h, w, channels):
            raise ValueError(f"initial latent {tuple(initial_latent.shape)} != {(batch, f, h, w, channels)}")
        latent = patchify(initial_latent.astype(mx.float32))
    mask = np.ones((batch, n, 1), np.float32)
    pieces, clean_pieces = [latent], [latent]
    positions = [video_positions(f, h, w, fps, batch)]
    attn = None
    last_frame = (f - 1) * TIME_SCALE
    for item in conditionings:
        if not 0.0 <= item.strength <= 1.0:
            raise ValueError(f"conditioning strength must be in [0, 1], got {item.strength}")
        lat = item.latent.astype(mx.float32)
        if isinstance(item, ReferenceTokens):
            attn = _append_reference(item, lat, (f, h, w, channels), fps, batch, pieces, clean_pieces, positions, attn)
            mask = np.concatenate([mask, np.full((batch, pieces[-1].shape[1], 1), 1.0 - item.strength, np.float32)], 1)
            continue
        if lat.ndim != 5 or tuple(lat.shape[2:]) != (h, w, channels) or lat.shape[0] not in (1, batch):
            raise ValueError(
                f"conditioning latent {tuple(lat.shape)} does not fit the latent grid {(f, h, w, channels)}"
            )
        tokens = mx.broadcast_to(patchify(lat), (batch, lat.shape[1] * h * w, channels))
        if isinstance(item, LatentAnchor):
            start = item.frame * h * w
            stop = start + tokens.shape[1]
            if item.frame < 0 or stop > n:
                raise ValueError(f"latent anchor at latent frame {item.frame} does not fit {f} latent frames")
            splice = lambda x: mx.concatenate([x[:, :start], tokens, x[:, stop:]], axis=1)  # noqa: E731, B023
            pieces[0], clean_pieces[0] = splice(pieces[0]), splice(clean_pieces[0])
            mask[:, start:stop] = 1.0 - item.strength
        elif isinstance(item, GuidingTokens):
            if not 0 <= item.pixel_frame <= last_frame:
                raise ValueError(
                    f"guiding image at pixel frame {item.pixel_frame} is outside the clip (frames 0..{last_frame})"
                )
            if attn is not None:  # a later item keeps full attention (update_attention_mask without a mask)
                attn = grow_attention_mask(attn, n, attn.shape[1], np.ones((batch, tokens.shape[1]), np.float32))
            pieces.append(tokens)
            clean_pieces.append(tokens)
            mask = np.concatenate([mask, np.full((batch, tokens.shape[1], 1), 1.0 - item.strength, np.float32)], 1)
            positions.append(keyframe_positions(lat.shape[1], h, w, item.pixel_frame, fps, batch))
        else:
            raise TypeError(f"unknown conditioning {type(item).__name__}")
    return TokenState(
        mx.concatenate(pieces, 1),
        mx.concatenate(clean_pieces, 1),
        mx.array(mask),
        np.concatenate(positions, axis=2),
        n,
        grid,
        attn,
    )


def _append_reference(item, lat, fhwc, fps, batch, pieces, clean_pieces, positions, attn):
    """Append a :class:`ReferenceTokens` item's tokens and positions; returns the grown attention mask."""
    f, h, w, channels = fhwc
    k = item.downscale_factor
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"reference downscale factor must be a whole number >= 1, got {k!r}")
    if lat.ndim != 5 or lat.shape[-1] != channels or lat.shape[0] not in (1, batch) or lat.shape[1] > f:
        raise ValueError(f"reference latent {tuple(lat.shape)} does not fit the latent grid {(f, h, w, channels)}")
    n_ref, rh, rw = lat.shape[1:4]
    tokens = mx.broadcast_to(patchify(lat), (batch, n_ref * rh * rw, channels))
    pos = video_positions(n_ref, rh, rw, fps, batch)
    pos[:, 1:] *= np.float32(k)
    existing = sum(p.shape[1] for p in pieces)
    cross = item.attention
    if cross is not None:
        cross = np.asarray(cross, np.float32)
        cross = np.full((batch, tokens.shape[1]), float(cross), np.float32) if cross.ndim == 0 else cross
        cross = np.broadcast_to(
            cross.reshape(-1 if cross.ndim == 1 else cross.shape[0], tokens.shape[1]), (batch, tokens.shape[1])
        )
        if not ((cross >= 0) & (cross <= 1)).all():
            raise ValueError("reference attention weights must be in [0, 1]")
    elif attn is not None:
        cross = np.ones((batch, tokens.shape[1]), np.float32)
    pieces.append(tokens)
    clean_pieces.append(tokens)
    positions.append(pos)
    return grow_attention_mask(attn, f * h * w, existing, cross)


def audio_state(frames: int, channels: int, initial_latent: mx.array | None = None, batch: int = 1) -> TokenState:
    """Audio state (AudioLatentTools.create_initial_state): tokens [B, T, C] = ``initial_latent`` or
    zeros, clean = latent, mask 1, :func:`audio_positions`. No conditioning (joint generation)."""
    if initial_latent is None:
        latent = mx.zeros((batch, frames, channels), mx.float32)
    else:
        if tuple(initial_latent.shape) != (batch, frames, channels):
            raise ValueError(f"initial audio latent {tuple(initial_latent.shape)} != {(batch, frames, channels)}")
        latent = initial_latent.astype(mx.float32)
    return TokenState(latent, latent, mx.ones((batch, frames, 1), mx.float32), audio_positions(frames, batch), frames)


def noise_state(state: TokenState, noise: mx.array, noise_scale: float = 1.0) -> TokenState:
    """GaussianNoiser on a state (:func:`mlx_video.conditioning.add_noise` with the state's denoise mask):
    ``m = mask * noise_scale``, ``latent = noise * m + latent * (1 - m)``.

    ``noise``: standard normal, the state's full token shape [B, T, C] (guiding tokens included).
    """
    if tuple(noise.shape) != tuple(state.latent.shape):
        raise ValueError(f"noise shape {tuple(noise.shape)} != state tokens {tuple(state.latent.shape)}")
    return replace(state, latent=add_noise(state.latent, noise.astype(mx.float32), state.mask, noise_scale))


def time_region_mask(positions: np.ndarray, start: float, end: float) -> mx.array:
    """Retake's denoise mask (ltx-pipelines 1.0.0 ``retake.TemporalRegionMask``): 1 for every token whose time
    span ``[t0, t1)`` (axis 0 of ``positions`` [B, n_axes, T, 2], seconds: video tokens with the causal fix, audio
    tokens as :func:`audio_positions`) overlaps ``(start, end)`` (``t1 > start and t0 < end``), else 0.
    Returns float32 [B, T, 1]; ``start == end`` gives all zeros (nothing regenerated)."""
    t = np.asarray(positions)[:, 0]
    inside = (t[..., 1] > np.float32(start)) & (t[..., 0] < np.float32(end))
    return mx.array(inside[..., None].astype(np.float32))
