"""Conditioning types shared by the Wan and LTX-2 families.

- ``LatentAnchor``: clean latent frames that replace the noisy ones at a latent index, get per-token
  timestep ``t·(1 − strength)`` and are re-applied after every solver step (Wan TI2V i2v / mi2v,
  LTX first-frame replacement).

Anchors become two arrays over the latent grid: ``mask`` [1, T, 1, 1, 1] (1 where the latent is
free to denoise, ``1 − strength`` where anchored) and ``clean`` [1, T, h, w, C] (the anchor latents,
zeros elsewhere). Blending (:func:`blend_clean`) ``mask·x + (1 − mask)·clean`` is exactly Wan TI2V's
``(1 − mask2)·z + mask2·latent`` for strength 1; :func:`add_noise` is the same blend of noise into a
clean latent.

- ``ChannelCondition``: extra input channels concatenated to the noisy latent at every step, never
  denoised themselves (Wan I2V/FLF2V ``y`` = 4 mask + 16 VAE-latent channels; one-frame control slots).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mlx.core as mx


@dataclass
class LatentAnchor:
    """Clean latent frames ``latent`` [1, n, h, w, C] placed at latent indices frame..frame+n-1."""

    latent: mx.array
    frame: int = 0
    strength: float = 1.0


def anchor_arrays(anchors: Sequence[LatentAnchor], shape: tuple[int, ...]) -> tuple[mx.array, mx.array]:
    """Build (mask [1, T, 1, 1, 1], clean [1, T, h, w, C]) float32 for a latent of ``shape``
    [1, T, h, w, C]. Raises ValueError when an anchor does not fit the grid or anchors overlap.
    """
    _, T, h, w, C = shape
    mask = [1.0] * T
    pieces: list[mx.array | None] = [None] * T
    for a in anchors:
        n = a.latent.shape[1]
        if a.latent.shape[2:] != (h, w, C):
            raise ValueError(f"anchor latent {tuple(a.latent.shape)} does not match latent grid {(h, w, C)}")
        if not (0 <= a.frame and a.frame + n <= T):
            raise ValueError(f"anchor at latent frame {a.frame} with {n} frames does not fit {T} latent frames")
        if not 0.0 <= a.strength <= 1.0:
            raise ValueError(f"anchor strength must be in [0, 1], got {a.strength}")
        for j in range(n):
            if pieces[a.frame + j] is not None:
                raise ValueError(f"two anchors on latent frame {a.frame + j}")
            pieces[a.frame + j] = a.latent[:, j : j + 1].astype(mx.float32)
            mask[a.frame + j] = 1.0 - a.strength
    zero = mx.zeros((1, 1, h, w, C), mx.float32)
    clean = mx.concatenate([p if p is not None else zero for p in pieces], axis=1)
    return mx.array(mask, mx.float32).reshape(1, T, 1, 1, 1), clean


def blend_clean(x: mx.array, mask: mx.array | float | None, clean: mx.array | None) -> mx.array:
    """``mask·x + (1 − mask)·clean``: ``x`` where mask is 1, ``clean`` where it is 0; ``x`` when mask is None.

    The one blend of both families: re-anchoring after a solver step and the initial latent (Wan
    TI2V ``(1 − mask2)·z + mask2·latent``), LTX-2's denoised-token blend (ltx-core
    ``post_process_latent``, mask = per-token denoise mask) and noising (:func:`add_noise`). Shapes
    broadcast (mask [1, T, 1, 1, 1] or [B, T, 1]); dtype follows the inputs.
    """
    if mask is None:
        return x
    return mask * x + (1.0 - mask) * clean


def add_noise(latent: mx.array, noise: mx.array, mask: mx.array | None = None, noise_scale: float = 1.0) -> mx.array:
    """Noise a clean latent: ``blend_clean(noise, m, latent)`` = ``noise·m + latent·(1 − m)`` with
    ``m = mask · noise_scale`` (``noise_scale`` without a mask). ltx-core's GaussianNoiser: ``noise``
    standard normal with ``latent``'s shape (drawn by the caller); stage 2 re-noises with
    ``noise_scale`` = its first sigma; conditioning tokens have mask 1 − strength."""
    m = float(noise_scale) if mask is None else mask * float(noise_scale)
    return blend_clean(noise, m, latent)


@dataclass
class ChannelCondition:
    """Conditioning channels for every latent frame: ``mask`` [1, T, 1 or h, 1 or w, M] (which pixel
    frames are given, packed per latent frame) and ``latent`` [1, T, h, w, C] (the VAE latent of the
    given frames with zeros elsewhere). Wan I2V/FLF2V: M = 4, C = 16 (docs/wan.md 8.1, 8.2)."""

    mask: mx.array
    latent: mx.array

    def y(self) -> mx.array:
        """[1, T, h, w, M + C] float32: mask channels first, then the latent (the reference's order)."""
        lat = self.latent.astype(mx.float32)
        m = mx.broadcast_to(self.mask.astype(mx.float32), (*lat.shape[:-1], self.mask.shape[-1]))
        return mx.concatenate([m, lat], axis=-1)

    def flip_time(self) -> ChannelCondition:
        """Both parts reversed along latent time (channel order inside the mask kept), as WanFM's
        ``flip_temporal_dimension_y``."""
        return ChannelCondition(self.mask[:, ::-1], self.latent[:, ::-1])
