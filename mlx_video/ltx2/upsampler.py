"""LTX-2 / LTX-2.3 latent upsamplers (spatial x2, x1.5, temporal x2), channels-last.

Follows ltx-core 1.0.0 ``ltx_core.model.upsampler`` (LatentUpsampler, ResBlock, PixelShuffleND,
SpatialRationalResampler, BlurDownsample, upsample_video); second opinion: diffusers
``LTX2LatentUpsamplerModel`` (same parameter names).

    conv3 -> GroupNorm(32) -> SiLU -> N ResBlocks -> upsampler -> N ResBlocks -> conv3

Upsampler variants: plain spatial (per-frame Conv2d to 4·mid + pixel shuffle x2), rational spatial
(per-frame Conv2d to num²·mid, pixel shuffle x num, 5x5 binomial blur with stride den: 3/2 for
x1.5, 2/1 for x2 where the blur is a no-op), temporal (Conv3d to 2·mid, shuffle over time, first
frame dropped) and spatio-temporal (Conv3d to 8·mid, shuffle x2 on all axes, first frame dropped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_video.io.weights import WeightsError
from mlx_video.nn.conv import conv3d_summed_taps

_RATIONAL = {0.75: (3, 4), 1.5: (3, 2), 2.0: (2, 1), 4.0: (4, 1)}  # scale -> (num, den)
_BLUR_TAPS = 5


@dataclass
class UpsamplerArgs:
    """Upsampler shape. Defaults are ltx-core's for keys absent from the upsampler file's ``config``
    metadata; ``from_config`` also reads a diffusers ``LTX2LatentUpsamplerModel`` config."""

    in_channels: int = 128
    mid_channels: int = 512
    num_blocks_per_stage: int = 4
    dims: int = 3
    spatial_upsample: bool = True
    temporal_upsample: bool = False
    spatial_scale: float = 2.0
    rational_resampler: bool = False

    @classmethod
    def from_config(cls, config: dict) -> UpsamplerArgs:
        """The diffusers layout is told by its own key names (``use_rational_resampler``,
        ``rational_spatial_scale``), never by ``_class_name``. Raises ValueError for an unsupported scale
        or combination (see ``LatentUpsampler``)."""
        diffusers = "use_rational_resampler" in config or "rational_spatial_scale" in config
        args = cls(
            in_channels=config.get("in_channels", 128),
            mid_channels=config.get("mid_channels", 1024 if diffusers else 512),
            num_blocks_per_stage=config.get("num_blocks_per_stage", 4),
            dims=config.get("dims", 3),
            spatial_upsample=config.get("spatial_upsample", True),
            temporal_upsample=config.get("temporal_upsample", False),
            spatial_scale=float(config.get("rational_spatial_scale" if diffusers else "spatial_scale", 2.0)),
            rational_resampler=config.get("use_rational_resampler" if diffusers else "rational_resampler", diffusers),
        )
        args.check()
        return args

    def check(self) -> None:
        if not (self.spatial_upsample or self.temporal_upsample):
            raise ValueError("an upsampler must upsample space, time or both")
        if self.dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {self.dims}")
        if self.dims == 2 and self.temporal_upsample:
            raise ValueError("temporal upsampling needs dims=3")
        if (
            self.rational_resampler
            and self.spatial_upsample
            and not self.temporal_upsample
            and float(self.spatial_scale) not in _RATIONAL
        ):
            raise ValueError(f"unsupported rational scale {self.spatial_scale}; choose from {sorted(_RATIONAL)}")


def pixel_shuffle(x: mx.array, factors: tuple[int, ...]) -> mx.array:
    """[N, s1..sn, C·f1·…·fn] -> [N, s1·f1, …, sn·fn, C], channel index (c, f1, …, fn) with fn
    fastest, as the reference's ``b (c p1 p2 p3) d h w -> b c (d p1) (h p2) (w p3)``."""
    N, *sizes, c = x.shape
    n = len(factors)
    C = c // math.prod(factors)
    x = x.reshape(N, *sizes, C, *factors)
    perm = [0] + [a for i in range(n) for a in (1 + i, n + 2 + i)] + [n + 1]
    return x.transpose(perm).reshape(N, *(s * f for s, f in zip(sizes, factors)), C)


def blur_downsample(x: mx.array, stride: int) -> mx.array:
    """Anti-aliased downsampling of [N, H, W, C] by ``stride``: 5x5 binomial kernel (1 4 6 4 1)²/256,
    zero padding 2, stride on H and W (the reference's depthwise conv2d), applied separably."""
    if stride == 1:
        return x
    taps = [math.comb(_BLUR_TAPS - 1, i) / 2 ** (_BLUR_TAPS - 1) for i in range(_BLUR_TAPS)]
    p = _BLUR_TAPS // 2
    for axis in (1, 2):
        n_out = (x.shape[axis] + 2 * p - _BLUR_TAPS) // stride + 1
        pad = [(0, 0)] * x.ndim
        pad[axis] = (p, p)
        xp = mx.pad(x, pad)
        pick = lambda i: xp[(slice(None),) * axis + (slice(i, i + stride * (n_out - 1) + 1, stride),)]  # noqa: E731, B023
        x = sum(w * pick(i) for i, w in enumerate(taps))
    return x


def _conv(layer: nn.Module, x: mx.array) -> mx.array:
    """``layer(x)``; a 3x3x3 ``nn.Conv3d`` (padding 1) goes through
    :func:`mlx_video.nn.conv.conv3d_summed_taps` when ``video_vae.CONV3D_MODE`` is "frames" (same values)."""
    from mlx_video.ltx2 import video_vae

    if not isinstance(layer, nn.Conv3d) or video_vae.CONV3D_MODE != "frames":
        return layer(x)
    xp = mx.pad(x, [(0, 0), (1, 1), (1, 1), (1, 1), (0, 0)])
    return conv3d_summed_taps(xp, layer.weight) + layer.bias


def _group_norm(norm: nn.GroupNorm, x: mx.array) -> mx.array:
    """GroupNorm in float32, result in x's dtype."""
    return norm(x.astype(mx.float32)).astype(x.dtype)


class ResBlock(nn.Module):
    """``silu(x + GN(conv(silu(GN(conv(x))))))`` with 3x3(x3) convolutions, GroupNorm(32)."""

    def __init__(self, channels: int, dims: int):
        super().__init__()
        Conv = nn.Conv3d if dims == 3 else nn.Conv2d
        self.conv1 = Conv(channels, channels, 3, padding=1)
        self.norm1 = nn.GroupNorm(32, channels, pytorch_compatible=True)
        self.conv2 = Conv(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(32, channels, pytorch_compatible=True)

    def __call__(self, x: mx.array) -> mx.array:
        h = nn.silu(_group_norm(self.norm1, _conv(self.conv1, x)))
        h = _group_norm(self.norm2, _conv(self.conv2, h))
        return nn.silu(h + x)


class Resampler(nn.Module):
    """The upsampling stage: one convolution, then pixel shuffle (and the rational blur)."""

    def __init__(self, args: UpsamplerArgs):
        super().__init__()
        mid = args.mid_channels
        if args.temporal_upsample:
            self.factors = (2, 2, 2) if args.spatial_upsample else (2, 1, 1)
            self.conv = nn.Conv3d(mid, math.prod(self.factors) * mid, 3, padding=1)
            self.den = 1
        else:
            num, self.den = _RATIONAL[float(args.spatial_scale)] if args.rational_resampler else (2, 1)
            self.factors = (num, num)
            self.conv = nn.Conv2d(mid, num * num * mid, 3, padding=1)

    def __call__(self, x: mx.array) -> mx.array:
        """x: [B, F, H, W, C] (dims=3) or [B·F, H, W, C] (dims=2)."""
        if len(self.factors) == 3:
            return pixel_shuffle(_conv(self.conv, x), self.factors)[:, 1:]  # the first latent frame is one pixel frame
        lead = x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:])
        x = blur_downsample(pixel_shuffle(self.conv(x), self.factors), self.den)
        return x.reshape(*lead, *x.shape[1:])


class LatentUpsampler(nn.Module):
    """ltx-core ``LatentUpsampler`` on channels-last latents.

    ``__call__``: un-normalised latent [B, F, h, w, in_channels] -> [B, F', h', w', in_channels]
    with h' = 2h (x2) or ceil(3h/2) (x1.5), likewise w; F' = 2F - 1 for temporal upsamplers. Activations follow the weights' dtype, GroupNorm runs in float32.
    Use ``upsample_video`` for normalised (diffusion-space) latents.
    """

    def __init__(self, args: UpsamplerArgs):
        super().__init__()
        args.check()
        self.args = args
        Conv = nn.Conv3d if args.dims == 3 else nn.Conv2d
        mid, n = args.mid_channels, args.num_blocks_per_stage
        self.initial_conv = Conv(args.in_channels, mid, 3, padding=1)
        self.initial_norm = nn.GroupNorm(32, mid, pytorch_compatible=True)
        self.res_blocks = [ResBlock(mid, args.dims) for _ in range(n)]
        self.upsampler = Resampler(args)
        self.post_upsample_res_blocks = [ResBlock(mid, args.dims) for _ in range(n)]
        self.final_conv = Conv(mid, args.in_channels, 3, padding=1)

    def __call__(self, latent: mx.array) -> mx.array:
        B, F = latent.shape[:2]
        x = latent.astype(self.initial_conv.weight.dtype)
        if self.args.dims == 2:  # every layer per frame
            x = x.reshape(B * F, *x.shape[2:])
        x = nn.silu(_group_norm(self.initial_norm, _conv(self.initial_conv, x)))
        for block in self.res_blocks:
            x = block(x)
        x = self.upsampler(x)
        for block in self.post_upsample_res_blocks:
            x = block(x)
        x = _conv(self.final_conv, x)
        return x.reshape(B, F, *x.shape[1:]) if self.args.dims == 2 else x


def upsample_video(latent: mx.array, upsampler: LatentUpsampler, mean: mx.array, std: mx.array) -> mx.array:
    """Upsample a normalised video latent [B, F, h, w, C] as the pipelines do (ltx-core
    ``upsample_video``): un-normalise with the video VAE's per-channel statistics (``mean`` =
    ``mean-of-means``, ``std`` = ``std-of-means``, shape [C]), run the upsampler, re-normalise.
    Returns float32."""
    mean, std = mean.astype(mx.float32), std.astype(mx.float32)
    x = upsampler(latent.astype(mx.float32) * std + mean)
    return (x.astype(mx.float32) - mean) / std


def sanitize(weights: dict[str, mx.array], layout: str = "official") -> dict[str, mx.array]:
    """Upsampler file (Lightricks ``ltx-2*-upscaler-*.safetensors``, layout "official") or diffusers
    ``latent_upsampler/`` (layout "diffusers"; same names) -> ``LatentUpsampler`` names, convolutions
    to MLX layout ([O, I, k..] -> [O, k.., I]).

    ``upsampler.blur_down.kernel`` is a constant buffer of the reference (the binomial kernel it
    rebuilds in its constructor): it is checked and dropped; any other kernel raises WeightsError.
    """
    if layout not in ("official", "diffusers"):
        raise ValueError(f"layout must be 'official' or 'diffusers', got {layout!r}")
    out = {}
    for k, v in weights.items():
        if k == "upsampler.blur_down.kernel":
            taps = np.array([math.comb(_BLUR_TAPS - 1, i) for i in range(_BLUR_TAPS)], dtype=np.float64)
            want = np.outer(taps, taps) / np.outer(taps, taps).sum()
            got = np.array(v.astype(mx.float32)).reshape(-1)
            if got.shape != want.reshape(-1).shape or not np.allclose(got, want.reshape(-1), atol=1e-6):
                raise WeightsError(f"{k}: not the 5x5 binomial kernel the reference uses")
            continue
        if k.startswith("upsampler.0."):  # plain upsamplers: Sequential(conv, shuffle)
            k = "upsampler.conv." + k[len("upsampler.0.") :]
        if k.endswith(".weight") and v.ndim in (4, 5):
            v = v.transpose(0, *range(2, v.ndim), 1)
        out[k] = v
    return out
