"""LTX-2 / LTX-2.3 video VAE (encoder + decoder), channels-last MLX port.

Follows ``ltx_core.model.video_vae`` (ltx-core 1.0.0: VideoEncoder, VideoDecoder, tiled_decode);
diffusers' ``AutoencoderKLLTX2Video`` is the same network under other key names.

* video ``[B, F, H, W, 3]`` in [-1, 1], ``F = 1 + 8k``, ``H, W`` multiples of 32
* latent ``[B, 1 + k, H/32, W/32, C]`` (C = 128 in both checkpoints), normalised with the
  per-channel statistics (``(mu - mean) / std``).

The block *kinds* (res_x, compress_*_res, compress_*), layer counts and flags come from the
checkpoint config (``config["vae"]`` of the single file, or a diffusers ``vae/config.json``; read by
:class:`mlx_video.ltx2.config.VideoVAEArgs`, re-exported here);
every block's *width* comes from the weights (``VideoVAE.from_weights``). LTX-2 (19B) and LTX-2.3
disagree on the last encoder downsample (2048 vs 1024 channels, docs/ltx2.md 4.4), so a
width read from a stale config would either crash or silently mis-size the following blocks.
Computation runs in the weights' dtype (:meth:`VideoVAE.from_weights` ``dtype``): float32 (the default,
parity tests) or bfloat16 (what ltx-pipelines' model ledger builds on CUDA: half the memory and time).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_video.io.weights import WeightsError, load_safetensors, load_strict
from mlx_video.ltx2.config import VideoVAEArgs
from mlx_video.nn.conv import CONV3D_MODES, conv3d_replicate_frames
from mlx_video.nn.embeddings import sinusoidal_embedding
from mlx_video.nn.tiling import causal_overlap_split, symmetric_overlap_split, trapezoid_mask

_ENC_STRIDES = {"compress_space_res": (1, 2, 2), "compress_time_res": (2, 1, 1), "compress_all_res": (2, 2, 2)}
_DEC_STRIDES = {"compress_space": (1, 2, 2), "compress_time": (2, 1, 1), "compress_all": (2, 2, 2)}
_PADDINGS = ("zeros", "reflect")
# How CausalConv3d convolves: one of :data:`mlx_video.nn.conv.CONV3D_MODES` (the same values, summed in other
# orders). The alternatives are for MLX's CUDA backend, where the same decode runs 2.3x slower than ltx-core's
# with as many convolutions and FLOPs (benchmarks/ltx2_vae_decode.py times them); read at each call, so
# ``$MLX_VIDEO_LTX_CONV3D`` or this variable switches it.
CONV3D_MODE = os.environ.get("MLX_VIDEO_LTX_CONV3D", "native")


def conv3d_mode() -> str:
    """:data:`CONV3D_MODE`, checked: raises ValueError naming ``$MLX_VIDEO_LTX_CONV3D`` unless it is one of
    :data:`CONV3D_MODES` (checked when a VAE is built, so a bad value fails before any denoising)."""
    if CONV3D_MODE not in CONV3D_MODES:
        raise ValueError(
            f"unknown conv3d mode {CONV3D_MODE!r} ($MLX_VIDEO_LTX_CONV3D or video_vae.CONV3D_MODE); "
            f"known: {', '.join(CONV3D_MODES)}"
        )
    return CONV3D_MODE


# How the tiled decode waits for each tile: "sync" = ``mx.eval`` (the next tile's graph is built while the GPU
# idles), "async" = ``mx.async_eval`` (built while the tile runs; evaluating a yielded chunk waits for its tiles).
# The same values either way.
TILE_EVALS = ("sync", "async")
TILE_EVAL = "sync"


# ----------------------------------------------------------------------------- layers
def pixel_norm(x: mx.array, eps: float = 1e-8) -> mx.array:
    """x / sqrt(mean_c x^2 + eps) over the last (channel) axis (ltx-core PixelNorm), as one fused kernel
    (``mx.fast.rms_norm`` without a weight: the same formula, accumulated in float32; no x² temporary)."""
    return mx.fast.rms_norm(x, None, eps)


def patchify(x: mx.array, p: int) -> mx.array:
    """[B, F, H, W, c] -> [B, F, H/p, W/p, c*p*p], channel index c*p*p + w_off*p + h_off (ltx-core order)."""
    b, f, h, w, c = x.shape
    x = x.reshape(b, f, h // p, p, w // p, p, c).transpose(0, 1, 2, 4, 6, 5, 3)
    return x.reshape(b, f, h // p, w // p, c * p * p)


def unpatchify(x: mx.array, p: int) -> mx.array:
    """Inverse of :func:`patchify`."""
    b, f, h, w, cpp = x.shape
    x = x.reshape(b, f, h, w, cpp // (p * p), p, p).transpose(0, 1, 2, 6, 3, 5, 4)
    return x.reshape(b, f, h * p, w * p, cpp // (p * p))


def space_to_depth(x: mx.array, s: Sequence[int]) -> mx.array:
    """[B, D*s0, H*s1, W*s2, c] -> [B, D, H, W, c*s0*s1*s2], channel order (c, s0, s1, s2)."""
    b, d, h, w, c = x.shape
    x = x.reshape(b, d // s[0], s[0], h // s[1], s[1], w // s[2], s[2], c)
    x = x.transpose(0, 1, 3, 5, 7, 2, 4, 6)
    return x.reshape(b, d // s[0], h // s[1], w // s[2], c * s[0] * s[1] * s[2])


def depth_to_space(x: mx.array, s: Sequence[int]) -> mx.array:
    """Inverse of :func:`space_to_depth`."""
    b, d, h, w, cp = x.shape
    c = cp // (s[0] * s[1] * s[2])
    x = x.reshape(b, d, h, w, c, s[0], s[1], s[2]).transpose(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(b, d * s[0], h * s[1], w * s[2], c)


class CausalConv3d(nn.Module):
    """ltx-core CausalConv3d: frames padded by replicating the first (causal: k-1 copies) or the
    first and last frame ((k-1)/2 copies each); spatial padding k//2 with ``padding`` mode
    (:func:`mlx_video.nn.conv.conv3d_replicate_frames`, formulated as :data:`CONV3D_MODE` says).

    weight [O, kt, kh, kw, I] (MLX layout), bias [O]; x [B, F, H, W, I] -> [B, F, H, W, O].
    """

    def __init__(self, cin: int, cout: int, padding: str = "zeros", k: int = 3):
        super().__init__()
        self.weight = mx.zeros((cout, k, k, k, cin))
        self.bias = mx.zeros((cout,))
        self.padding = padding

    def __call__(self, x: mx.array, causal: bool = True) -> mx.array:
        kt = self.weight.shape[1]
        lead = kt - 1 if causal else (kt - 1) // 2
        return conv3d_replicate_frames(x, self.weight, lead, self.padding, conv3d_mode()) + self.bias


class TimestepEmbedder(nn.Module):
    """PixArt-alpha timestep MLP: sinusoid(256, cos first) -> linear -> SiLU -> linear."""

    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.linear_1 = nn.Linear(freq_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def __call__(self, t: mx.array) -> mx.array:
        e = sinusoidal_embedding(t, self.linear_1.weight.shape[1], float64=False)
        return self.linear_2(nn.silu(self.linear_1(e.astype(self.linear_1.weight.dtype))))


class ResBlock(nn.Module):
    """ResnetBlock3D with equal in/out widths: x + conv2(act(norm(conv1(act(norm(x)))))),
    each norm followed by the AdaLN ``(1 + scale) * h + shift`` when timestep-conditioned."""

    def __init__(self, ch: int, padding: str, timestep_conditioning: bool = False):
        super().__init__()
        self.conv1 = CausalConv3d(ch, ch, padding)
        self.conv2 = CausalConv3d(ch, ch, padding)
        if timestep_conditioning:
            self.scale_shift_table = mx.zeros((4, ch))

    def __call__(self, x: mx.array, causal: bool, temb: mx.array | None = None) -> mx.array:
        h = pixel_norm(x)
        if temb is not None:  # temb [B, 4, C]: shift1, scale1, shift2, scale2
            ada = (self.scale_shift_table + temb)[:, :, None, None, None, :]
            h = h * (1 + ada[:, 1]) + ada[:, 0]
        h = self.conv1(nn.silu(h), causal)
        h = pixel_norm(h)
        if temb is not None:
            h = h * (1 + ada[:, 3]) + ada[:, 2]
        return x + self.conv2(nn.silu(h), causal)


class ResGroup(nn.Module):
    """``res_x`` block (ltx-core UNetMidBlock3D): ``num_layers`` ResBlocks sharing one timestep MLP."""

    def __init__(self, ch: int, num_layers: int, padding: str, timestep_conditioning: bool = False):
        super().__init__()
        if timestep_conditioning:
            self.time_embedder = TimestepEmbedder(4 * ch)
        self.res_blocks = [ResBlock(ch, padding, timestep_conditioning) for _ in range(num_layers)]

    def __call__(self, x: mx.array, causal: bool, t: mx.array | None = None) -> mx.array:
        temb = None
        if "time_embedder" in self:
            temb = self.time_embedder(t).reshape(x.shape[0], 4, -1)
        for blk in self.res_blocks:
            x = blk(x, causal, temb)
        return x


class SpaceToDepthDownsample(nn.Module):
    """Encoder ``compress_*_res``: conv(cin -> cout/prod(s)) then space-to-depth, plus the
    space-to-depth of the input averaged over groups of ``cin*prod(s)/cout`` channels.
    With a temporal stride of 2 the first frame is duplicated first."""

    def __init__(self, cin: int, cout: int, stride: tuple[int, int, int], padding: str):
        super().__init__()
        p = math.prod(stride)
        self.conv = CausalConv3d(cin, cout // p, padding)
        self.stride = stride
        self.group = cin * p // cout

    def __call__(self, x: mx.array, causal: bool = True) -> mx.array:
        if self.stride[0] == 2:
            x = mx.concatenate([x[:, :1], x], axis=1)
        skip = space_to_depth(x, self.stride)
        skip = skip.reshape(*skip.shape[:-1], -1, self.group).mean(axis=-1)
        return space_to_depth(self.conv(x, causal), self.stride) + skip


class DepthToSpaceUpsample(nn.Module):
    """Decoder ``compress_*``: conv(cin -> prod(s)*cout) then depth-to-space; optional residual =
    depth-to-space of the input tiled along channels; temporal stride 2 drops the first frame."""

    def __init__(self, cin: int, cout: int, stride: tuple[int, int, int], residual: bool, padding: str):
        super().__init__()
        self.conv = CausalConv3d(cin, cout * math.prod(stride), padding)
        self.stride = stride
        self.residual_repeats = cout * math.prod(stride) // cin if residual else 0

    def __call__(self, x: mx.array, causal: bool = True) -> mx.array:
        h = depth_to_space(self.conv(x, causal), self.stride)
        if self.residual_repeats:
            h = h + mx.tile(depth_to_space(x, self.stride), (1, 1, 1, 1, self.residual_repeats))
        return h[:, 1:] if self.stride[0] == 2 else h


# ----------------------------------------------------------------------------- builders
def _shape(w: Mapping[str, mx.array], key: str, what: str) -> tuple:
    if key not in w:
        raise WeightsError(f"{what}: missing key {key}")
    return tuple(w[key].shape)


def _res_group(w, pre: str, what: str, params: dict, cur: int, padding: str, tc: bool) -> ResGroup:
    """Check a res_x block's layer count and widths against its weights, then build it."""
    found = {int(m.group(1)) for k in w if (m := re.match(re.escape(pre) + r"res_blocks\.(\d+)\.", k))}
    n = params.get("num_layers", 1)
    if found != set(range(n)):
        raise WeightsError(f"{what}: config says {n} res layers, weights have {sorted(found)}")
    for j in range(n):
        o, *_, i = _shape(w, f"{pre}res_blocks.{j}.conv1.weight", what)
        if (o, i) != (cur, cur):
            raise WeightsError(f"{what}: res layer {j} maps {i}->{o} channels but its input has {cur}")
    return ResGroup(cur, n, padding, tc)


class VideoEncoder(nn.Module):
    """LTX-2 video encoder: patchify -> conv_in -> blocks -> PixelNorm -> SiLU -> conv_out.

    Returns the raw latent means [B, T, h, w, C] (normalisation lives in :class:`VideoVAE`).
    Build it with :meth:`from_weights`.
    """

    def __init__(self, args: VideoVAEArgs, cin: int, c0: int, blocks: list, cout: int, conv_out: int):
        super().__init__()
        self.args = args
        self.conv_in = CausalConv3d(cin, c0, args.encoder_padding)
        self.down_blocks = blocks
        self.conv_out = CausalConv3d(cout, conv_out, args.encoder_padding)

    @classmethod
    def from_weights(cls, w: Mapping[str, mx.array], args: VideoVAEArgs, latent_channels: int) -> VideoEncoder:
        """Size every block from the (sanitized, ``encoder.``-stripped) weights; does not load them.

        Raises WeightsError naming the block when a block's input width differs from the previous
        block's output, a res_x layer count differs from the config, or a SpaceToDepth width
        does not divide; ValueError for block kinds this port does not implement.
        """
        pad = args.encoder_padding
        c0, *_, cin = _shape(w, "conv_in.weight", "encoder conv_in")
        if cin != 3 * args.patch_size**2:
            raise WeightsError(
                f"encoder conv_in takes {cin} channels, patch size {args.patch_size} gives {3 * args.patch_size**2}"
            )
        cur, blocks = c0, []
        for i, (name, params) in enumerate(args.encoder_blocks):
            pre, what = f"down_blocks.{i}.", f"encoder block down_blocks.{i} ({name})"
            if name == "res_x":
                blocks.append(_res_group(w, pre, what, params, cur, pad, False))
            elif name in _ENC_STRIDES:
                o, *_, i_ = _shape(w, pre + "conv.weight", what)
                p = math.prod(_ENC_STRIDES[name])
                out = o * p  # docs/ltx2.md 4.4: out from the conv, not from the config multiplier
                if i_ != cur or (cur * p) % out:
                    raise WeightsError(
                        f"{what}: conv takes {i_} channels (previous block gives {cur}); "
                        f"{cur}*{p} is not a multiple of {out}"
                    )
                blocks.append(SpaceToDepthDownsample(cur, out, _ENC_STRIDES[name], pad))
                cur = out
            else:
                raise ValueError(
                    f"encoder block kind {name!r} is not implemented (LTX-2/2.3 use res_x, "
                    f"compress_space_res, compress_time_res, compress_all_res)"
                )
        co, *_, ci = _shape(w, "conv_out.weight", "encoder conv_out")
        want = {
            "uniform": latent_channels + 1,
            "constant": latent_channels + 1,
            "per_channel": 2 * latent_channels,
            "none": latent_channels,
        }[args.latent_log_var]
        if ci != cur or co != want:
            raise WeightsError(
                f"encoder conv_out maps {ci}->{co} channels; expected {cur}->{want} "
                f"(latent_log_var={args.latent_log_var})"
            )
        return cls(args, cin, c0, blocks, cur, co)

    @property
    def factors(self) -> tuple[int, int]:
        """(temporal, spatial) compression."""
        s = [b.stride for b in self.down_blocks if isinstance(b, SpaceToDepthDownsample)]
        return math.prod(x[0] for x in s), self.args.patch_size * math.prod(x[1] for x in s)

    def __call__(self, video: mx.array) -> mx.array:
        causal = self.args.encoder_causal
        x = self.conv_in(patchify(video, self.args.patch_size), causal)
        for blk in self.down_blocks:
            x = blk(x, causal)
        x = self.conv_out(nn.silu(pixel_norm(x)), causal)
        log_var = self.args.latent_log_var  # the means come first; log-variance channels are dropped
        return x[..., : x.shape[-1] // 2 if log_var == "per_channel" else x.shape[-1] - (log_var != "none")]


class VideoDecoder(nn.Module):
    """LTX-2 video decoder on *un-normalised* latents: conv_in -> blocks -> PixelNorm ->
    [AdaLN] -> SiLU -> conv_out -> unpatchify. Build it with :meth:`from_weights`."""

    def __init__(self, args: VideoVAEArgs, cin: int, c0: int, blocks: list, cout: int, conv_out: int):
        super().__init__()
        self.args = args
        pad = args.decoder_padding
        self.conv_in = CausalConv3d(cin, c0, pad)
        self.up_blocks = blocks
        self.conv_out = CausalConv3d(cout, conv_out, pad)
        if args.timestep_conditioning:
            self.timestep_scale_multiplier = mx.array(1000.0)
            self.last_time_embedder = TimestepEmbedder(2 * cout)
            self.last_scale_shift_table = mx.zeros((2, cout))

    @classmethod
    def from_weights(cls, w: Mapping[str, mx.array], args: VideoVAEArgs, latent_channels: int) -> VideoDecoder:
        """Size every block from the (sanitized, ``decoder.``-stripped) weights; does not load them.

        Raises WeightsError naming the block on inconsistent widths or layer counts, ValueError
        for block kinds / options this port does not implement (attn_res_x, inject_noise).
        """
        pad, tc = args.decoder_padding, args.timestep_conditioning
        c0, *_, cin = _shape(w, "conv_in.weight", "decoder conv_in")
        if cin != latent_channels:
            raise WeightsError(f"decoder conv_in takes {cin} channels, the latent has {latent_channels}")
        cur, blocks = c0, []
        for i, (name, params) in enumerate(reversed(args.decoder_blocks)):
            pre, what = f"up_blocks.{i}.", f"decoder block up_blocks.{i} ({name})"
            if params.get("inject_noise"):
                raise ValueError(f"{what}: inject_noise is not implemented")
            if name == "res_x":
                blocks.append(_res_group(w, pre, what, params, cur, pad, tc))
            elif name in _DEC_STRIDES:
                s = _DEC_STRIDES[name]
                p = math.prod(s)
                o, *_, i_ = _shape(w, pre + "conv.weight", what)
                res = bool(params.get("residual", False))
                out = o // p
                if i_ != cur or o % p or (res and (cur % p or out % (cur // p))):
                    raise WeightsError(
                        f"{what}: conv maps {i_}->{o} channels after a block giving {cur}; "
                        f"not a valid depth-to-space x{p}{' with residual' if res else ''}"
                    )
                blocks.append(DepthToSpaceUpsample(cur, out, s, res, pad))
                cur = out
            else:
                raise ValueError(
                    f"decoder block kind {name!r} is not implemented (LTX-2/2.3 use res_x, "
                    f"compress_space, compress_time, compress_all)"
                )
        co, *_, ci = _shape(w, "conv_out.weight", "decoder conv_out")
        if ci != cur or co != 3 * args.patch_size**2:
            raise WeightsError(f"decoder conv_out maps {ci}->{co} channels; expected {cur}->{3 * args.patch_size**2}")
        return cls(args, cin, c0, blocks, cur, co)

    @property
    def factors(self) -> tuple[int, int]:
        """(temporal, spatial) expansion."""
        s = [b.stride for b in self.up_blocks if isinstance(b, DepthToSpaceUpsample)]
        return math.prod(x[0] for x in s), self.args.patch_size * math.prod(x[1] for x in s)

    def __call__(self, z: mx.array, timestep: mx.array | None = None) -> mx.array:
        """z: un-normalised latent [B, T, h, w, C]; timestep scalar or [B] (used only when
        conditioned; default ``decode_timestep`` 0.05, scaled by ``timestep_scale_multiplier``)."""
        causal = self.args.causal_decoder
        x = self.conv_in(z, causal)
        t = None
        if self.args.timestep_conditioning:
            t = self.args.decode_timestep if timestep is None else timestep
            t = t if isinstance(t, mx.array) else mx.array(t)
            t = mx.broadcast_to(t.astype(mx.float32).reshape(-1), (z.shape[0],))
            t = t * self.timestep_scale_multiplier
        for blk in self.up_blocks:
            x = blk(x, causal, t) if isinstance(blk, ResGroup) else blk(x, causal)
        x = pixel_norm(x)
        if t is not None:
            ada = self.last_scale_shift_table + self.last_time_embedder(t).reshape(z.shape[0], 2, -1)
            ada = ada[:, :, None, None, None, :]
            x = x * (1 + ada[:, 1]) + ada[:, 0]
        return unpatchify(self.conv_out(nn.silu(x), causal), self.args.patch_size)


# ----------------------------------------------------------------------------- the VAE
class VideoVAE(nn.Module):
    """Encoder and/or decoder with the shared per-channel latent statistics.

    Build with :meth:`from_weights` (or :func:`load_video_vae`); either part may be absent.
    """

    def __init__(
        self,
        args: VideoVAEArgs,
        latent_channels: int,
        encoder: VideoEncoder | None = None,
        decoder: VideoDecoder | None = None,
    ):
        super().__init__()
        self.args = args
        self.latents_mean = mx.zeros((latent_channels,))
        self.latents_std = mx.ones((latent_channels,))
        if encoder is not None:
            self.encoder = encoder
        if decoder is not None:
            self.decoder = decoder

    @classmethod
    def from_weights(
        cls,
        weights: Mapping[str, mx.array],
        config: Mapping | VideoVAEArgs,
        parts: Sequence[str] = ("encoder", "decoder"),
        dtype: mx.Dtype = mx.float32,
    ) -> VideoVAE:
        """Build from sanitized weights (see :func:`sanitize`) and the checkpoint config, load strictly.

        Block kinds, layer counts and flags come from ``config``; all widths from the weights.
        ``parts`` selects which of encoder / decoder to build (the other part's keys are ignored).
        Weights are cast to ``dtype`` (float32, or bfloat16 as ltx-pipelines runs it), which the VAE then
        computes in. Raises WeightsError (missing / unused / mis-shaped keys, or an inconsistent block, named),
        ValueError for an unknown :data:`CONV3D_MODE` (:func:`conv3d_mode`).
        """
        conv3d_mode()
        args = config if isinstance(config, VideoVAEArgs) else VideoVAEArgs.from_config(config)
        if args.norm_layer != "pixel_norm":
            raise ValueError(f"norm_layer {args.norm_layer!r} is not implemented (LTX-2 uses pixel_norm)")
        for pad in (args.encoder_padding, args.decoder_padding):
            if pad not in _PADDINGS:
                raise ValueError(f"spatial padding {pad!r} is not implemented ({_PADDINGS})")
        c = _shape(weights, "latents_mean", "video VAE statistics")[0]
        sub = {p: {k[len(p) + 1 :]: v for k, v in weights.items() if k.startswith(p + ".")} for p in parts}
        enc = VideoEncoder.from_weights(sub["encoder"], args, c) if "encoder" in parts else None
        dec = VideoDecoder.from_weights(sub["decoder"], args, c) if "decoder" in parts else None
        model = cls(args, c, enc, dec)
        keep = {
            k: v
            for k, v in weights.items()
            if k.startswith(tuple(p + "." for p in parts)) or not k.startswith(("encoder.", "decoder."))
        }
        load_strict(model, keep, "LTX-2 video VAE", dtype=dtype)
        return model

    @property
    def dtype(self) -> mx.Dtype:
        """The dtype the VAE computes in (its weights')."""
        return self.latents_mean.dtype

    def encode(self, video: mx.array) -> mx.array:
        """video [B, F, H, W, 3] in [-1, 1] -> normalised float32 latent [B, 1+(F-1)/8, H/32, W/32, C]
        (computed in :attr:`dtype`).

        Raises ValueError unless F = 1 + 8k and H, W are multiples of 32 (ltx-core crops frames
        with a warning instead).
        """
        ft, fs = self.encoder.factors
        _, f, h, w, _ = video.shape
        if (f - 1) % ft or h % fs or w % fs:
            raise ValueError(f"video of {f} frames {h}x{w}: need {ft}k+1 frames and sides multiple of {fs}")
        mu = self.encoder(video.astype(self.dtype))
        return ((mu - self.latents_mean) / self.latents_std).astype(mx.float32)

    def decode(
        self, latent: mx.array, timestep: float | mx.array | None = None, noise: mx.array | None = None
    ) -> mx.array:
        """Normalised latent [B, T, h, w, C] -> video [B, 1+8(T-1), 32h, 32w, 3] (about [-1, 1]) in :attr:`dtype`.

        Only for a timestep-conditioned decoder (neither shipped checkpoint is): the latent is first
        blended ``0.025*noise + 0.975*latent`` (``noise`` default: mx.random.normal) and the decoder
        is conditioned on ``timestep`` (default 0.05, per batch item). Otherwise both are ignored,
        as in ltx-core.
        """
        z = latent.astype(mx.float32)
        if self.args.timestep_conditioning:
            s = self.args.decode_noise_scale
            z = s * (mx.random.normal(z.shape) if noise is None else noise) + (1 - s) * z
        z = z.astype(self.dtype)
        return self.decoder(z * self.latents_std + self.latents_mean, timestep)

    def iter_decode_tiled(
        self,
        latent: mx.array,
        tile_pixels: int | None = 512,
        overlap_pixels: int = 64,
        tile_frames: int | None = 64,
        overlap_frames: int = 24,
        timestep: float | mx.array | None = None,
        group=None,
    ) -> Iterator[mx.array]:
        """Decode in overlapping tiles and yield the video in temporal chunks [B, f, H, W, 3].

        Same tiles, trapezoidal blend masks and causal temporal shift as ltx-core's
        ``VideoDecoder.tiled_decode`` with ``TilingConfig(SpatialTilingConfig(tile_pixels,
        overlap_pixels), TemporalTilingConfig(tile_frames, overlap_frames))``; ``None`` disables
        tiling on that axis. Peak memory is one tile's decode plus one temporal chunk. With a
        timestep-conditioned decoder each tile draws its own noise (as ltx-core does).
        ``group``: an ``mx.distributed`` group to split each temporal chunk's spatial tiles over (tile i
        on rank i mod n; one ``all_gather`` per round of n tiles, padded to the largest tile, added in
        tile order: every rank yields the one-process result bit for bit; docs/distributed.md). Raises
        ValueError for sizes ltx-core's TilingConfig rejects, or a group with a timestep-conditioned
        decoder (each rank would draw other noise).
        """
        n_ranks, rank = (1, 0) if group is None else (group.size(), group.rank())
        if n_ranks > 1 and self.args.timestep_conditioning:
            raise ValueError("a timestep-conditioned decoder draws noise per tile: decode it on one rank")
        if tile_pixels is not None and (
            tile_pixels < 64 or tile_pixels % 32 or overlap_pixels % 32 or overlap_pixels >= tile_pixels
        ):
            raise ValueError("tile_pixels must be >= 64 and a multiple of 32, overlap a smaller multiple of 32")
        if tile_frames is not None and (
            tile_frames < 16 or tile_frames % 8 or overlap_frames % 8 or overlap_frames >= tile_frames
        ):
            raise ValueError("tile_frames must be >= 16 and a multiple of 8, overlap a smaller multiple of 8")
        ft, fs = self.decoder.factors
        b, t, h, w, _ = latent.shape
        axes = []  # per axis (T, H, W): list of (in slice, out slice, 1-D mask)
        for n, f in ((h, fs), (w, fs)):
            if tile_pixels is None:
                axes.append([(slice(0, n), slice(0, n * f), np.ones(n * f, np.float32))])
                continue
            ov = overlap_pixels // fs
            size = max(max(2, ov + 1), round(tile_pixels // fs * n / max(h, w)))
            axes.append(
                [
                    (slice(s, e), slice(s * f, e * f), trapezoid_mask((e - s) * f, lr * f, rr * f, False))
                    for s, e, lr, rr in zip(*symmetric_overlap_split(n, size, ov))
                ]
            )
        spl = (
            causal_overlap_split(t, tile_frames // ft, overlap_frames // ft)
            if tile_frames
            else symmetric_overlap_split(t, t, 0)
        )
        temporal = [
            (
                slice(s, e),
                slice(s * ft, 1 + (e - 1) * ft),
                trapezoid_mask(1 + (e - 1 - s) * ft, 0 if lr == 0 else 1 + (lr - 1) * ft, rr * ft, True),
            )
            for s, e, lr, rr in zip(*spl)
        ]
        H, W = h * fs, w * fs
        prev = None  # (sum, weight, start frame)
        for tin, tout, tmask in temporal:
            n = tout.stop - tout.start
            acc = mx.zeros((b, n, H, W, 3))
            wts = mx.zeros((1, n, H, W, 1))
            tiles = [
                (hin, hout, hmask, win, wout, wmask) for hin, hout, hmask in axes[0] for win, wout, wmask in axes[1]
            ]
            big = (max(t[1].stop - t[1].start for t in tiles), max(t[4].stop - t[4].start for t in tiles))
            for first in range(0, len(tiles), n_ranks):
                mine = first + rank
                if n_ranks == 1:
                    hin, hout, hmask, win, wout, wmask = tiles[mine]
                    got = [self.decode(latent[:, tin, hin, win], timestep)[:, :n]]
                else:  # this rank's tile (zeros past the last), padded to the largest tile, gathered
                    y = mx.zeros((b, n, *big, 3))
                    if mine < len(tiles):
                        hin, _, _, win, _, _ = tiles[mine]
                        t = self.decode(latent[:, tin, hin, win], timestep)[:, :n]
                        y[:, :, : t.shape[2], : t.shape[3]] = t
                    got = list(mx.distributed.all_gather(y[None], group=group))
                for i, tile in zip(range(first, min(first + n_ranks, len(tiles))), got):
                    hin, hout, hmask, win, wout, wmask = tiles[i]
                    tile = tile[:, :, : hout.stop - hout.start, : wout.stop - wout.start]
                    m = mx.array(tmask[:, None, None] * hmask[None, :, None] * wmask[None, None, :])[None, ..., None]
                    acc[:, :, hout, wout] += tile * m
                    wts[:, :, hout, wout] += m
                    (mx.async_eval if TILE_EVAL == "async" else mx.eval)(acc, wts)
            if prev is not None:
                psum, pw, pstart = prev
                ov = pstart + psum.shape[1] - tout.start
                if ov > 0:
                    o = tout.start - pstart
                    psum[:, o:] += acc[:, :ov]
                    pw[:, o:] += wts[:, :ov]
                    acc[:, :ov] = psum[:, o:]
                    wts[:, :ov] = pw[:, o:]
                if tout.start > pstart:
                    yield (psum / mx.maximum(pw, 1e-8))[:, : tout.start - pstart]
            prev = (acc, wts, tout.start)
        yield prev[0] / mx.maximum(prev[1], 1e-8)

    def decode_tiled(
        self,
        latent: mx.array,
        tile_pixels: int | None = 512,
        overlap_pixels: int = 64,
        tile_frames: int | None = 64,
        overlap_frames: int = 24,
        timestep: float | mx.array | None = None,
        group=None,
    ) -> mx.array:
        """:meth:`iter_decode_tiled` concatenated along frames -> [B, F, H, W, 3]."""
        chunks = self.iter_decode_tiled(
            latent, tile_pixels, overlap_pixels, tile_frames, overlap_frames, timestep, group=group
        )
        return mx.concatenate(list(chunks), axis=1)


# ----------------------------------------------------------------------------- checkpoint keys
# ltx-core's PerChannelStatistics never reads these (it loads non-strictly); diffusers drops them too.
_UNUSED_STATS = (
    "per_channel_statistics.channel",
    "per_channel_statistics.mean-of-stds",
    "per_channel_statistics.mean-of-stds_over_std-of-means",
)


def _diffusers_to_ltx(k: str, n_down: int) -> str:
    """diffusers AutoencoderKLLTX2Video names -> ltx-core names (inverse of diffusers' converter)."""
    subs = [
        (r"^encoder\.down_blocks\.(\d+)\.resnets\.", lambda m: f"encoder.down_blocks.{2 * int(m[1])}.res_blocks."),
        (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", lambda m: f"encoder.down_blocks.{2 * int(m[1]) + 1}."),
        (r"^encoder\.mid_block\.resnets\.", lambda m: f"encoder.down_blocks.{2 * n_down}.res_blocks."),
        (r"^decoder\.mid_block\.resnets\.", lambda m: "decoder.up_blocks.0.res_blocks."),
        (r"^decoder\.mid_block\.time_embedder\.", lambda m: "decoder.up_blocks.0.time_embedder."),
        (r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"decoder.up_blocks.{2 * int(m[1]) + 1}."),
        (r"^decoder\.up_blocks\.(\d+)\.resnets\.", lambda m: f"decoder.up_blocks.{2 * int(m[1]) + 2}.res_blocks."),
        (
            r"^decoder\.up_blocks\.(\d+)\.time_embedder\.",
            lambda m: f"decoder.up_blocks.{2 * int(m[1]) + 2}.time_embedder.",
        ),
        (r"^decoder\.time_embedder\.", lambda m: "decoder.last_time_embedder."),
        (r"^decoder\.scale_shift_table$", lambda m: "decoder.last_scale_shift_table"),
    ]
    for pat, rep in subs:
        new, n = re.subn(pat, rep, k)
        if n:
            return new
    return k


def sanitize(weights: Mapping[str, mx.array], layout: str = "lightricks") -> dict[str, mx.array]:
    """Checkpoint keys -> this module's names; torch Conv3d weights -> MLX [O, kt, kh, kw, I].

    layout "lightricks": ltx-core names (``encoder.*``, ``decoder.*``, ``per_channel_statistics.*``),
    with or without the single file's ``vae.`` prefix; when any key has that prefix, keys without it
    (transformer, audio VAE, vocoder of the single file) are not VAE keys and are left out.
    layout "diffusers": ``AutoencoderKLLTX2Video`` state dict (``latents_mean``/``latents_std``).
    The only VAE keys dropped are ``_UNUSED_STATS``. Raises ValueError for an unknown layout.
    """
    if layout not in ("lightricks", "diffusers"):
        raise ValueError(f"unknown layout {layout!r} (lightricks, diffusers)")
    if any(k.startswith("vae.") for k in weights):
        weights = {k[4:]: v for k, v in weights.items() if k.startswith("vae.")}
    n_down = 1 + max([int(m[1]) for k in weights if (m := re.match(r"encoder\.down_blocks\.(\d+)\.", k))], default=-1)
    out = {}
    for k, v in weights.items():
        if layout == "lightricks":
            if k in _UNUSED_STATS:
                continue
            k = {
                "per_channel_statistics.mean-of-means": "latents_mean",
                "per_channel_statistics.std-of-means": "latents_std",
            }.get(k, k)
        else:
            k = _diffusers_to_ltx(k, n_down)
        k = re.sub(r"\.conv\.(weight|bias)$", r".\1", k)  # CausalConv3d's inner nn.Conv3d
        k = k.replace("time_embedder.timestep_embedder.", "time_embedder.")
        out[k] = v.transpose(0, 2, 3, 4, 1) if v.ndim == 5 else v
    return out


def load_video_vae(
    path: str, layout: str = "lightricks", config: Mapping | None = None, parts: Sequence[str] = ("encoder", "decoder")
) -> VideoVAE:
    """Load from a safetensors file: the LTX-2 single file (config from its ``config`` metadata)
    or a diffusers ``vae/diffusion_pytorch_model.safetensors`` (pass its config.json as ``config``).
    Raises WeightsError for unreadable files or mismatching weights, ValueError without a config."""
    weights, meta = load_safetensors(path, with_metadata=True)
    if config is None:
        if "config" not in meta:
            raise ValueError(f"{path}: no config metadata; pass config=")
        config = json.loads(meta["config"])
    return VideoVAE.from_weights(sanitize(weights, layout), config, parts)
