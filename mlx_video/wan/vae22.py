"""Wan 2.2 video VAE (z 48, stride 4x16x16), official ``wan/modules/vae2_2.py``.

Same causal blocks (:mod:`mlx_video.wan.vae_blocks`), chunking and cache as Wan 2.1
(:mod:`mlx_video.wan.vae21`), plus: a 2x2 pixel patchify around the network (3 <-> 12 channels), a wider
decoder (``dec_dim`` 256), upsamplers that keep their width, and parameter-free shortcuts around every
down/up stage: ``AvgDown3D`` (space/time-to-channel fold then group average) and ``DupUp3D`` (channel
repeat then unfold).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import mlx.core as mx

from mlx_video.wan.vae21 import Wan21VAE, Wan21VAEArgs, rename_leaves, to_mlx_layout
from mlx_video.wan.vae_blocks import CausalCache, DownBlock, UpBlock

MEAN48 = [
    -0.2289,
    -0.0052,
    -0.1323,
    -0.2339,
    -0.2799,
    0.0174,
    0.1838,
    0.1557,
    -0.1382,
    0.0542,
    0.2813,
    0.0891,
    0.1570,
    -0.0098,
    0.0375,
    -0.1825,
    -0.2246,
    -0.1207,
    -0.0698,
    0.5109,
    0.2665,
    -0.2108,
    -0.2158,
    0.2502,
    -0.2055,
    -0.0322,
    0.1109,
    0.1567,
    -0.0729,
    0.0899,
    -0.2799,
    -0.1230,
    -0.0313,
    -0.1649,
    0.0117,
    0.0723,
    -0.2839,
    -0.2083,
    -0.0520,
    0.3748,
    0.0152,
    0.1957,
    0.1433,
    -0.2944,
    0.3573,
    -0.0548,
    -0.1681,
    -0.0667,
]
STD48 = [
    0.4765,
    1.0364,
    0.4514,
    1.1677,
    0.5313,
    0.4990,
    0.4818,
    0.5013,
    0.8158,
    1.0344,
    0.5894,
    1.0901,
    0.6885,
    0.6165,
    0.8454,
    0.4978,
    0.5759,
    0.3523,
    0.7135,
    0.6804,
    0.5833,
    1.4146,
    0.8986,
    0.5659,
    0.7069,
    0.5338,
    0.4889,
    0.4917,
    0.4069,
    0.4999,
    0.6866,
    0.4093,
    0.5709,
    0.6065,
    0.6415,
    0.4944,
    0.5726,
    1.2042,
    0.5458,
    1.6887,
    0.3971,
    1.0600,
    0.3943,
    0.5537,
    0.5444,
    0.4089,
    0.7468,
    0.7744,
]


def _factors(mode: str | None) -> tuple[int, int]:
    """(time, space) factors of a resample mode: 3d -> (2, 2), 2d -> (1, 2), none -> (1, 1)."""
    if mode is None:
        return 1, 1
    return (2 if mode.endswith("3d") else 1), 2


def avg_down_3d(x: mx.array, out_dim: int, ft: int, fs: int) -> mx.array:
    """AvgDown3D: [B, T, H, W, C] -> [B, ceil(T/ft), H/fs, W/fs, out_dim].

    Zero-pads time in front to a multiple of ``ft``, folds (ft, fs, fs) into channels with index
    ``c·f + (t·fs + h)·fs + w`` and averages consecutive groups of ``C·f/out_dim`` channels.
    """
    pad = (-x.shape[1]) % ft
    if pad:
        x = mx.pad(x, [(0, 0), (pad, 0), (0, 0), (0, 0), (0, 0)])
    b, t, h, w, c = x.shape
    x = x.reshape(b, t // ft, ft, h // fs, fs, w // fs, fs, c).transpose(0, 1, 3, 5, 7, 2, 4, 6)
    group = c * ft * fs * fs // out_dim
    return x.reshape(b, t // ft, h // fs, w // fs, out_dim, group).mean(axis=-1)


def dup_up_3d(x: mx.array, out_dim: int, ft: int, fs: int, first_chunk: bool) -> mx.array:
    """DupUp3D: [B, T, H, W, C] -> [B, T·ft (- (ft-1) on the first chunk), H·fs, W·fs, out_dim].

    Repeats each channel ``out_dim·f/C`` times, unfolds channel index ``o·f + (t·fs + h)·fs + w``
    into (time, height, width) and, on the first chunk, drops the first ``ft - 1`` frames (the
    first latent frame is not doubled in time). The repeat is a broadcast, so the one copy made is the output's.
    """
    b, t, h, w, c = x.shape
    x = mx.broadcast_to(x[..., None], (b, t, h, w, c, out_dim * ft * fs * fs // c))
    x = x.reshape(b, t, h, w, out_dim, ft, fs, fs).transpose(0, 1, 5, 2, 6, 3, 7, 4)
    x = x.reshape(b, t * ft, h * fs, w * fs, out_dim)
    return x[:, ft - 1 :] if first_chunk else x


class ResidualDownBlock(DownBlock):
    """Encoder stage with the AvgDown3D shortcut: ``main(x) + avg_down_3d(x)``."""

    def __init__(self, in_dim: int, out_dim: int, num_res: int, mode: str | None):
        super().__init__(in_dim, out_dim, num_res, mode)
        self._out_dim, (self._ft, self._fs) = out_dim, _factors(mode)

    def __call__(self, x: mx.array, cache: CausalCache) -> mx.array:
        return cache.settle(super().__call__(x, cache) + avg_down_3d(x, self._out_dim, self._ft, self._fs))


class ResidualUpBlock(UpBlock):
    """Decoder stage with the DupUp3D shortcut (when it resamples): ``main(x) + dup_up_3d(x)``."""

    def __init__(self, in_dim: int, out_dim: int, num_res: int, mode: str | None, up_dim: int):
        super().__init__(in_dim, out_dim, num_res, mode, up_dim)
        self._out_dim, (self._ft, self._fs) = out_dim, _factors(mode)
        self._shortcut = mode is not None

    def __call__(self, x: mx.array, cache: CausalCache) -> mx.array:
        first = cache.first
        y = super().__call__(x, cache)
        if not self._shortcut:
            return y
        return cache.settle(y + dup_up_3d(x, self._out_dim, self._ft, self._fs, first))


@dataclass
class Wan22VAEArgs(Wan21VAEArgs):
    """Build parameters (official defaults of ``Wan2_2_VAE``: dim 160, dec_dim 256, z 48)."""

    dim: int = 160
    dec_dim: int | None = 256
    z_dim: int = 48
    latents_mean: list[float] = field(default_factory=lambda: list(MEAN48))
    latents_std: list[float] = field(default_factory=lambda: list(STD48))

    residual: bool = field(default=True, init=False, repr=False)
    patch_size: int = field(default=2, init=False, repr=False)


class Wan22VAE(Wan21VAE):
    """Wan 2.2 VAE: ``encode`` [B, 1+4k, H, W, 3] -> normalised [B, 1+k, H/16, W/16, 48],
    ``decode`` back, clamped to [-1, 1]. API and chunking as :class:`Wan21VAE`."""

    args_class = Wan22VAEArgs
    down_block = ResidualDownBlock
    up_block = ResidualUpBlock


def _nested(weights: dict[str, mx.array], pattern: str, grouped: str, resampler: str) -> dict[str, mx.array]:
    """``{pattern}`` keys like ``encoder.downsamples.{i}.downsamples.{j}.rest`` ->
    ``{grouped}.{i}.resnets.{j}.rest``, or ``{grouped}.{i}.{resampler}.rest`` when entry j is the
    stage's Resample (it owns ``resample.1`` weights)."""
    rx = re.compile(pattern)
    resamplers = {m.group(1, 2) for k in weights if (m := rx.match(k)) and m.group(3).startswith("resample.1.")}
    out = {}
    for k, v in weights.items():
        m = rx.match(k)
        if m:
            i, j, rest = m.groups()
            part = resampler if (i, j) in resamplers else f"resnets.{j}"
            k = f"{grouped}.{i}.{part}.{rest}"
        out[k] = v
    return out


def sanitize(weights: dict[str, mx.array], layout: str = "official") -> dict[str, mx.array]:
    """Wan 2.2 VAE checkpoint -> this module's names and MLX layouts.

    layout "official": ``Wan2.2_VAE.pth`` names (encoder.downsamples.{i}.downsamples.{j},
    decoder.upsamples.{i}.upsamples.{j}, residual.{0,2,3,6}, shortcut, resample.1, time_conv,
    middle.{0,1,2}, head.{0,2}, conv1/conv2); "diffusers": ``AutoencoderKLWan(is_residual=True)``
    names (down_blocks.{i}.resnets.{j}, downsampler, up_blocks.{i}.upsampler, quant_conv, ...).
    The shortcuts have no parameters. No key is dropped: unknown keys pass through and
    ``load_strict`` reports them.
    """
    if layout not in ("official", "diffusers"):
        raise ValueError(f"unknown layout {layout!r} (official | diffusers)")
    if layout == "official":
        weights = _nested(
            weights, r"encoder\.downsamples\.(\d+)\.downsamples\.(\d+)\.(.*)", "encoder.down_blocks", "downsampler"
        )
        weights = _nested(
            weights, r"decoder\.upsamples\.(\d+)\.upsamples\.(\d+)\.(.*)", "decoder.up_blocks", "upsampler"
        )
    return {rename_leaves(k, layout): to_mlx_layout(k, v) for k, v in weights.items()}
