"""Wan 2.1 video VAE (z 16, stride 4x8x8) and the causal building blocks Wan 2.2 shares.

Follows the official ``wan/modules/vae2_1.py`` (and diffusers' ``AutoencoderKLWan``), channels-last:
video ``[B, F, H, W, 3]`` in [-1, 1], latents ``[B, T, h, w, z]``. Runs in float32 by default (the weights' dtype: ``set_dtype(mx.bfloat16)`` halves the memory).

Inference is chunked in time exactly as the reference does it: the encoder sees frames
``[0], [1..4], [5..8], ...`` and the decoder one latent frame at a time; every causal 3-D convolution
carries the last frames of its input from one chunk to the next in a :class:`CausalCache`. Each chunk
is evaluated before the next, so memory is bounded by one chunk plus the cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_video.nn.attention import attention
from mlx_video.nn.conv import conv3d
from mlx_video.nn.tiling import Tiling, tiled_map

CACHE_T = 2  # frames of history a temporal-kernel-3 causal conv needs

# MLX frees a buffer only once the device has run the work that last used it, and the host runs ahead of the
# device by up to ~1000 kernels (CUDA: 10 command buffers of <= 100); an unevaluated cache slot also keeps its
# source (the conv's whole input) and the slot it replaces alive. So a chunk built as one lazy graph holds most
# of its activations at once: counted for Wan2.2 at 704x1280 in bf16, a one-frame piece's new cache slots
# (2.6 GB) and their sources (1.3 GB) on top of the old cache (3.2 GB) and the weights (1.1 GB) are about the
# 9.4 GiB the H100 measured with frames_per_chunk 1. Blocks whose output has at least this many bytes are
# therefore evaluated, with the cache, before the next one is built (the same values; one wait per block).
EVAL_BLOCK_BYTES = 16 << 20

MEAN16 = [
    -0.7571,
    -0.7089,
    -0.9113,
    0.1075,
    -0.1745,
    0.9653,
    -0.1517,
    1.5508,
    0.4134,
    -0.0715,
    0.5517,
    -0.3632,
    -0.1922,
    -0.9497,
    0.2503,
    -0.2921,
]
STD16 = [
    2.8184,
    1.4541,
    2.3275,
    2.6558,
    1.2196,
    1.7708,
    2.6052,
    2.0743,
    3.2687,
    2.1526,
    2.8652,
    1.5579,
    1.6382,
    1.1253,
    2.8251,
    1.9160,
]


# ----------------------------------------------------------------------------------------------
# Causal building blocks (shared with vae22)
# ----------------------------------------------------------------------------------------------


class CausalCache:
    """Temporal state carried between chunks: one slot per cached layer, filled in call order.

    The reference keeps a list indexed by a running counter (``feat_cache``/``feat_idx``); the
    same order of calls in every chunk maps each slot to the same layer. Call :meth:`next_chunk`
    before each chunk; :attr:`first` is True during the first one.
    ``max_unfold_bytes``: the unfold budget the cached convolutions of this run pass to
    :func:`mlx_video.nn.conv.conv3d` (None: its default, ``$MLX_VIDEO_CONV_UNFOLD_GB``).
    """

    def __init__(self, max_unfold_bytes: int | None = None):
        self.slots: list[mx.array | None] = []
        self.index = 0
        self.chunks = 0
        self.max_unfold_bytes = max_unfold_bytes

    def next_chunk(self) -> None:
        self.index = 0
        self.chunks += 1

    @property
    def first(self) -> bool:
        return self.chunks <= 1

    def read(self) -> mx.array | None:
        """The current slot's value from the previous chunk (None on the first chunk)."""
        return self.slots[self.index] if self.index < len(self.slots) else None

    def write(self, value: mx.array | None) -> None:
        """Store the current slot's value for the next chunk and move to the next slot.

        The value is copied out of its source: a slice would keep the whole chunk's buffer alive; a copy of
        at least a quarter of :data:`EVAL_BLOCK_BYTES` is started at once (``mx.async_eval``), so that the
        source is freed as soon as its convolution has run rather than when the block is evaluated.
        """
        if value is not None:
            value = mx.contiguous(value)
            if 4 * value.nbytes >= EVAL_BLOCK_BYTES:
                mx.async_eval(value)
        if self.index == len(self.slots):
            self.slots.append(value)
        else:
            self.slots[self.index] = value
        self.index += 1

    def arrays(self) -> list[mx.array]:
        return [s for s in self.slots if s is not None]

    def settle(self, x: mx.array) -> mx.array:
        """Evaluate ``x`` and the slots written so far when ``x`` has at least :data:`EVAL_BLOCK_BYTES`
        (called between blocks: bounds what a lazy chunk holds at once). Returns ``x``."""
        if x.nbytes >= EVAL_BLOCK_BYTES:
            mx.eval(x, self.arrays())
        return x


def _triple(v) -> tuple[int, int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v, v)


class CausalConv3d(nn.Module):
    """3-D convolution, causal in time: spatial zero padding both sides, ``2·pad_t`` zeros in front.

    x: [B, T, H, W, C_in] float32 -> [B, T', H', W', C_out]. Weight is MLX layout
    ``[O, kt, kh, kw, I]``. With a ``cache`` and a temporal padding, the cached frames of the
    previous chunk replace that many front zeros, and the last ``CACHE_T`` input frames (padded
    with the previous last frame when the chunk has one frame) are stored for the next chunk.
    Reference: ``CausalConv3d`` plus the ``feat_cache`` logic around every call in vae2_1.py.
    """

    def __init__(self, in_dim: int, out_dim: int, kernel, stride=1, padding=0):
        super().__init__()
        kt, kh, kw = _triple(kernel)
        pt, ph, pw = _triple(padding)
        self.weight = mx.zeros((out_dim, kt, kh, kw, in_dim))
        self.bias = mx.zeros((out_dim,))
        self.stride = _triple(stride)
        self.front = 2 * pt
        self.spatial = (ph, pw)

    def __call__(self, x: mx.array, cache: CausalCache | None = None) -> mx.array:
        front, parts = self.front, [x]
        if cache is not None and front > 0:
            old = cache.read()
            new = x[:, -CACHE_T:]
            if new.shape[1] < CACHE_T and old is not None:
                new = mx.concatenate([old[:, -1:], new], axis=1)
            cache.write(new)
            if old is not None:  # [old; x], joined window by window inside conv3d
                parts = [old, x]
                front -= old.shape[1]
        y = conv3d(
            parts,
            self.weight,
            stride=self.stride,
            padding=((front, 0), *self.spatial),
            max_unfold_bytes=None if cache is None else cache.max_unfold_bytes,
        )
        return y + self.bias


class RMSNorm(nn.Module):
    """``F.normalize(x, channel) · sqrt(C) · gamma`` over the last (channel) axis, float32.

    Equal to ``x / sqrt(mean(x²))·gamma``; the reference clamps ``||x||`` at 1e-12, which is the
    ``eps = 1e-24 / C`` given to the fused rms_norm (only all-but-zero vectors notice).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = mx.ones((dim,))
        self._eps = 1e-24 / dim

    def __call__(self, x: mx.array) -> mx.array:
        return mx.fast.rms_norm(x, self.gamma, self._eps)


class ResidualBlock(nn.Module):
    """``conv2(silu(norm2(conv1(silu(norm1(x)))))) + shortcut(x)``; shortcut is a 1x1x1 conv when
    the width changes. x: [B, T, H, W, in_dim] -> [B, T, H, W, out_dim]."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.norm1 = RMSNorm(in_dim)
        self.conv1 = CausalConv3d(in_dim, out_dim, 3, padding=1)
        self.norm2 = RMSNorm(out_dim)
        self.conv2 = CausalConv3d(out_dim, out_dim, 3, padding=1)
        if in_dim != out_dim:
            self.conv_shortcut = CausalConv3d(in_dim, out_dim, 1)

    def __call__(self, x: mx.array, cache: CausalCache) -> mx.array:
        h = self.conv_shortcut(x) if "conv_shortcut" in self else x
        x = self.conv1(nn.silu(self.norm1(x)), cache)
        x = self.conv2(nn.silu(self.norm2(x)), cache)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head spatial self-attention within each frame (no cache), scale 1/sqrt(C), residual.
    The reference's 1x1 Conv2d q/k/v and output projections are Linear layers here."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def __call__(self, x: mx.array) -> mx.array:
        b, t, h, w, c = x.shape
        qkv = self.to_qkv(self.norm(x)).reshape(b * t, 1, h * w, 3 * c)
        q, k, v = mx.split(qkv, 3, axis=-1)
        y = attention(q, k, v)
        return x + self.proj(y).reshape(b, t, h, w, c)


def pixels_to_uint8(x: mx.array) -> mx.array:
    """[-1, 1] pixels (any float dtype, any shape) -> uint8 [0, 255] on the device: in float32, clamped,
    ``round((x + 1) · 127.5)`` half to even, clamped: the same bytes as :func:`mlx_video.io.images.to_uint8`
    on the host (the official save_video's conversion)."""
    x = (mx.clip(x.astype(mx.float32), -1.0, 1.0) + 1.0) * 127.5
    return mx.clip(mx.round(x), 0, 255).astype(mx.uint8)


def _upsample_nearest2x(x: mx.array) -> mx.array:
    """[N, H, W, C] -> [N, 2H, 2W, C]; 'nearest-exact' at scale 2 repeats every pixel."""
    n, h, w, c = x.shape
    x = mx.broadcast_to(x[:, :, None, :, None, :], (n, h, 2, w, 2, c))
    return x.reshape(n, 2 * h, 2 * w, c)


class Resample(nn.Module):
    """Spatial x2 down/up-sampling per frame, with the temporal x2 conv for the 3-D modes.

    modes: ``downsample2d`` (pad right/bottom by 1, 3x3 conv stride 2), ``downsample3d`` (that,
    then a causal time conv k=3 stride 2 over [last cached frame; x]), ``upsample2d`` (nearest x2,
    3x3 conv to ``out_dim``), ``upsample3d`` (first a time conv to 2C whose halves interleave in
    time, doubling the frames; skipped on the first chunk, then the 2-D upsample).
    x: [B, T, H, W, C]. Reference: ``Resample`` in vae2_1.py / vae2_2.py.
    """

    def __init__(self, dim: int, mode: str, out_dim: int | None = None):
        super().__init__()
        if mode not in ("downsample2d", "downsample3d", "upsample2d", "upsample3d"):
            raise ValueError(f"unknown resample mode {mode!r}")
        self.mode = mode
        if mode.startswith("up"):
            self.conv = nn.Conv2d(dim, out_dim or dim, 3, padding=1)
        else:
            self.conv = nn.Conv2d(dim, dim, 3, stride=2)
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, 2 * dim, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))

    def __call__(self, x: mx.array, cache: CausalCache) -> mx.array:
        if self.mode == "upsample3d":
            x = self._time_up(x, cache)
        b, t, h, w, c = x.shape
        x = x.reshape(b * t, h, w, c)
        if self.mode.startswith("up"):
            x = _upsample_nearest2x(x)
        else:
            x = mx.pad(x, [(0, 0), (0, 1), (0, 1), (0, 0)])
        x = self.conv(x)
        x = x.reshape(b, t, *x.shape[1:])
        if self.mode == "downsample3d":
            x = self._time_down(x, cache)
        return x

    def _time_up(self, x: mx.array, cache: CausalCache) -> mx.array:
        if cache.first:
            # The reference marks the slot 'Rep' and does not double the first frame. In the next
            # chunk its 'Rep' means zero history, which is what an empty slot gives the conv.
            cache.write(None)
            return x
        b, t, h, w, c = x.shape
        y = self.time_conv(x, cache).reshape(b, t, h, w, 2, c)  # channel = half·C + c
        return y.transpose(0, 1, 4, 2, 3, 5).reshape(b, 2 * t, h, w, c)  # frame 2t + half

    def _time_down(self, x: mx.array, cache: CausalCache) -> mx.array:
        old = cache.read()
        cache.write(x[:, -1:])
        if cache.first:  # the reference stores the first chunk and passes it through
            return x
        return self.time_conv(mx.concatenate([old[:, -1:], x], axis=1))


class DownBlock(nn.Module):
    """``num_res`` residual blocks then an optional downsampler (Wan 2.1 encoder stage)."""

    def __init__(self, in_dim: int, out_dim: int, num_res: int, mode: str | None):
        super().__init__()
        self.resnets = [ResidualBlock(in_dim if i == 0 else out_dim, out_dim) for i in range(num_res)]
        if mode is not None:
            self.downsampler = Resample(out_dim, mode)

    def __call__(self, x: mx.array, cache: CausalCache) -> mx.array:
        for resnet in self.resnets:
            x = cache.settle(resnet(x, cache))
        return cache.settle(self.downsampler(x, cache)) if "downsampler" in self else x


class UpBlock(nn.Module):
    """``num_res + 1`` residual blocks then an optional upsampler to ``up_dim`` channels."""

    def __init__(self, in_dim: int, out_dim: int, num_res: int, mode: str | None, up_dim: int):
        super().__init__()
        self.resnets = [ResidualBlock(in_dim if i == 0 else out_dim, out_dim) for i in range(num_res + 1)]
        if mode is not None:
            self.upsampler = Resample(out_dim, mode, up_dim)

    def __call__(self, x: mx.array, cache: CausalCache) -> mx.array:
        for resnet in self.resnets:
            x = cache.settle(resnet(x, cache))
        return cache.settle(self.upsampler(x, cache)) if "upsampler" in self else x


class MidBlock(nn.Module):
    """Residual block, per-frame attention, residual block."""

    def __init__(self, dim: int):
        super().__init__()
        self.resnets = [ResidualBlock(dim, dim), ResidualBlock(dim, dim)]
        self.attentions = [AttentionBlock(dim)]

    def __call__(self, x: mx.array, cache: CausalCache) -> mx.array:
        x = cache.settle(self.resnets[0](x, cache))
        return cache.settle(self.resnets[1](cache.settle(self.attentions[0](x)), cache))


class Encoder3d(nn.Module):
    """conv_in -> down blocks (x2 spatial each but the last; x2 time where ``temporal[i]``) ->
    mid block -> RMSNorm, SiLU, conv_out to ``out_dim`` (2·z: mean and log-variance)."""

    def __init__(self, in_dim: int, dim: int, out_dim: int, dim_mult, num_res: int, temporal, block=DownBlock):
        super().__init__()
        dims = [dim * m for m in [1, *dim_mult]]
        self.conv_in = CausalConv3d(in_dim, dims[0], 3, padding=1)
        last = len(dim_mult) - 1
        self.down_blocks = [
            block(
                dims[i],
                dims[i + 1],
                num_res,
                None if i == last else ("downsample3d" if temporal[i] else "downsample2d"),
            )
            for i in range(len(dim_mult))
        ]
        self.mid_block = MidBlock(dims[-1])
        self.norm_out = RMSNorm(dims[-1])
        self.conv_out = CausalConv3d(dims[-1], out_dim, 3, padding=1)

    def __call__(self, x: mx.array, cache: CausalCache) -> mx.array:
        x = self.conv_in(x, cache)
        for block in self.down_blocks:
            x = block(x, cache)
        x = self.mid_block(x, cache)
        return self.conv_out(nn.silu(self.norm_out(x)), cache)


class Decoder3d(nn.Module):
    """conv_in -> mid block -> up blocks (x2 spatial each but the last; x2 time where
    ``temporal[i]``) -> RMSNorm, SiLU, conv_out. With ``halve_up`` (Wan 2.1) each upsampler
    outputs half its width and the next block starts from that; Wan 2.2 keeps the width."""

    def __init__(
        self, z_dim: int, dim: int, out_dim: int, dim_mult, num_res: int, temporal, halve_up: bool, block=UpBlock
    ):
        super().__init__()
        dims = [dim * m for m in [dim_mult[-1], *dim_mult[::-1]]]
        self.conv_in = CausalConv3d(z_dim, dims[0], 3, padding=1)
        self.mid_block = MidBlock(dims[0])
        last = len(dim_mult) - 1
        blocks = []
        for i in range(len(dim_mult)):
            in_dim = dims[i] // 2 if (halve_up and i > 0) else dims[i]
            mode = None if i == last else ("upsample3d" if temporal[i] else "upsample2d")
            up_dim = dims[i + 1] // 2 if halve_up else dims[i + 1]
            blocks.append(block(in_dim, dims[i + 1], num_res, mode, up_dim))
        self.up_blocks = blocks
        self.norm_out = RMSNorm(dims[-1])
        self.conv_out = CausalConv3d(dims[-1], out_dim, 3, padding=1)

    def __call__(self, x: mx.array, cache: CausalCache, frames: int | None = None) -> mx.array:
        """x: one chunk [B, T, h, w, z] -> [B, T', H, W, out_dim]. ``frames``: the most frames any up
        stage takes at once; a stage input with more is split in time and each piece runs through the
        rest of the decoder (evaluated) before the next. Every cached convolution of a stage sees the
        same frames in the same order, its cache carrying the last frames from piece to piece as it
        does from chunk to chunk, and every other layer works frame by frame: the output is the
        unsplit one. None: the whole chunk at once (the reference)."""
        x = self.conv_in(x, cache)
        x = self.mid_block(x, cache)
        outs = self._up(x, cache, 0, frames)
        return outs[0] if len(outs) == 1 else mx.concatenate(outs, axis=1)

    def _up(self, x: mx.array, cache: CausalCache, i: int, frames: int | None) -> list[mx.array]:
        """Up stages i.. and the head over x, split in time as ``frames`` says; the output pieces."""
        if i == len(self.up_blocks):
            return [self.conv_out(nn.silu(self.norm_out(x)), cache)]
        if frames is None or x.shape[1] <= frames:
            return self._up(self.up_blocks[i](x, cache), cache, i + 1, frames)
        mx.eval(x)
        start, outs = cache.index, []
        for t0 in range(0, x.shape[1], frames):
            cache.index = start  # the same slots for every piece
            piece = self._up(self.up_blocks[i](x[:, t0 : t0 + frames], cache), cache, i + 1, frames)
            mx.eval(piece, cache.arrays())
            outs += piece
        return outs


# ----------------------------------------------------------------------------------------------
# The VAE
# ----------------------------------------------------------------------------------------------


@dataclass
class Wan21VAEArgs:
    """Build parameters (official defaults of ``Wan2_1_VAE``) and latent statistics.

    ``dec_dim`` None means the decoder uses ``dim`` (Wan 2.1); latents_mean/std have z_dim entries.
    """

    dim: int = 96
    dec_dim: int | None = None
    z_dim: int = 16
    dim_mult: list[int] = field(default_factory=lambda: [1, 2, 4, 4])
    num_res_blocks: int = 2
    temperal_downsample: list[bool] = field(default_factory=lambda: [False, True, True])
    latents_mean: list[float] = field(default_factory=lambda: list(MEAN16))
    latents_std: list[float] = field(default_factory=lambda: list(STD16))

    residual: bool = field(default=False, init=False, repr=False)  # Wan 2.2 shortcuts
    patch_size: int = field(default=1, init=False, repr=False)  # Wan 2.2 pixel patchify

    def __post_init__(self):
        if len(self.latents_mean) != self.z_dim or len(self.latents_std) != self.z_dim:
            raise ValueError(
                f"latents_mean/std need {self.z_dim} entries (z_dim), got "
                f"{len(self.latents_mean)}/{len(self.latents_std)}"
            )
        if len(self.temperal_downsample) != len(self.dim_mult) - 1:
            raise ValueError("temperal_downsample needs len(dim_mult) - 1 entries")

    @classmethod
    def from_config(cls, d: dict) -> Wan21VAEArgs:
        """From a diffusers ``AutoencoderKLWan`` config (base_dim, decoder_base_dim, is_residual,
        patch_size, latents_mean, ...) or the official keyword names (dim / c_dim, dec_dim).
        Raises ValueError for a config of the other Wan VAE or with attention scales."""
        if bool(d.get("is_residual", cls.residual)) != cls.residual or (d.get("patch_size") or 1) != cls.patch_size:
            raise ValueError(
                f"config is_residual={d.get('is_residual')}, patch_size="
                f"{d.get('patch_size')} does not describe {cls.__name__}"
            )
        if d.get("attn_scales"):
            raise ValueError("attn_scales are not used by any Wan VAE and are not supported")
        names = {
            "dim": ("base_dim", "dim", "c_dim"),
            "dec_dim": ("decoder_base_dim", "dec_dim"),
            "latents_mean": ("latents_mean", "mean"),
            "latents_std": ("latents_std", "std"),
        }
        kw = {}
        for f in fields(cls):
            if not f.init:
                continue
            for key in names.get(f.name, (f.name,)):
                if d.get(key) is not None:
                    kw[f.name] = list(d[key]) if isinstance(d[key], (list, tuple)) else d[key]
                    break
        if "base_dim" in d and d.get("decoder_base_dim") is None:
            kw["dec_dim"] = None  # diffusers: the decoder then uses base_dim
        return cls(**kw)


class Wan21VAE(nn.Module):
    """Wan 2.1 VAE: ``encode`` video -> normalised latents, ``decode`` back (official vae2_1.py).

    Also the base of :class:`mlx_video.wan.vae22.Wan22VAE`, which changes only the class-level
    choices below (pixel patchify, residual shortcut blocks, upsampler width, latent statistics).
    Parameters follow diffusers-like names; :func:`sanitize` converts checkpoints.
    ``default_tiling``: the :class:`Tiling` ``encode`` / ``decode`` use when called without one (None:
    untiled; ``WanPipeline`` sets it from its memory plan); ``default_frames_per_chunk`` and
    ``default_max_unfold_bytes``: the same for :meth:`decode_chunks`' memory settings.
    """

    args_class = Wan21VAEArgs
    default_tiling: Tiling | None = None
    default_frames_per_chunk: int | None = None
    default_max_unfold_bytes: int | None = None
    down_block = DownBlock
    up_block = UpBlock

    def __init__(self, args: Wan21VAEArgs | None = None):
        super().__init__()
        args = args or self.args_class()
        if type(args) is not self.args_class:
            raise ValueError(f"{type(self).__name__} needs {self.args_class.__name__}, got {type(args).__name__}")
        self.args = args
        z, p2 = args.z_dim, args.patch_size**2
        temporal_up = args.temperal_downsample[::-1]
        self.encoder = Encoder3d(
            3 * p2, args.dim, 2 * z, args.dim_mult, args.num_res_blocks, args.temperal_downsample, block=self.down_block
        )
        self.quant_conv = CausalConv3d(2 * z, 2 * z, 1)
        self.post_quant_conv = CausalConv3d(z, z, 1)
        self.decoder = Decoder3d(
            z,
            args.dec_dim or args.dim,
            3 * p2,
            args.dim_mult,
            args.num_res_blocks,
            temporal_up,
            halve_up=not args.residual,
            block=self.up_block,
        )
        # float32 like the reference: it multiplies by a float32 1/std and divides by it again.
        self._mean = mx.array(np.asarray(args.latents_mean, np.float32))
        self._inv_std = mx.array(1.0 / np.asarray(args.latents_std, np.float32))

    @property
    def dtype(self) -> mx.Dtype:
        """Compute dtype: the weights' (float32 as converted; ``set_dtype(mx.bfloat16)`` halves the
        activation memory, as the official pipelines' bf16 autocast does). Latents in and out, and the
        normalisation, stay float32."""
        return self.post_quant_conv.weight.dtype

    @property
    def z_dim(self) -> int:
        return self.args.z_dim

    @property
    def stride(self) -> tuple[int, int, int]:
        """(time, height, width) compression: (4, 8, 8) for Wan 2.1, (4, 16, 16) for Wan 2.2."""
        s = 2 ** (len(self.args.dim_mult) - 1) * self.args.patch_size
        return 2 ** sum(map(bool, self.args.temperal_downsample)), s, s

    # -- pixel patchify (identity for Wan 2.1) -------------------------------------------------
    def _patchify(self, x: mx.array) -> mx.array:
        """[B, F, H, W, 3] -> [B, F, H/p, W/p, 3p²], channel = c·p² + r·p + q (r: w-, q: h-offset)."""
        p = self.args.patch_size
        if p == 1:
            return x
        b, f, h, w, c = x.shape
        x = x.reshape(b, f, h // p, p, w // p, p, c).transpose(0, 1, 2, 4, 6, 5, 3)
        return x.reshape(b, f, h // p, w // p, c * p * p)

    def _unpatchify(self, x: mx.array) -> mx.array:
        p = self.args.patch_size
        if p == 1:
            return x
        b, f, h, w, cpp = x.shape
        x = x.reshape(b, f, h, w, cpp // (p * p), p, p).transpose(0, 1, 2, 6, 3, 5, 4)
        return x.reshape(b, f, h * p, w * p, cpp // (p * p))

    # -- public API ----------------------------------------------------------------------------
    def encode(self, video: mx.array, tiling: Tiling | None = None) -> mx.array:
        """Video [B, F, H, W, 3] in [-1, 1] (F = 1 + 4k, H and W multiples of the spatial stride)
        -> normalised mean latent (mu - mean) / std, [B, 1 + k, H/s, W/s, z_dim] float32.

        Chunks of 1, 4, 4, ... frames through the encoder with the causal cache, as the reference.
        ``tiling``: encode overlapping spatial tiles of the pixels (each through all its temporal
        chunks) and blend the latents linearly over overlap/s latent pixels (:mod:`mlx_video.nn.tiling`;
        memory: one tile's activations; values close to, not equal to, the untiled encode).
        Raises ValueError on a wrong shape, frame count or tiling.
        """
        st, s, _ = self.stride
        if video.ndim != 5 or video.shape[-1] != 3:
            raise ValueError(f"video must be [B, F, H, W, 3], got {tuple(video.shape)}")
        _, f, h, w, _ = video.shape
        if f % st != 1:
            raise ValueError(f"frame count must be 1 + {st}k, got {f}")
        if h % s or w % s:
            raise ValueError(f"height and width must be multiples of {s}, got {h}x{w}")
        tiling = tiling if tiling is not None else self.default_tiling
        if tiling is not None:
            tiling.in_units(s)  # checks the stride multiples
            return tiled_map(self._encode, video, tiling.tile, tiling.overlap, 1, s, unit=s)
        return self._encode(video)

    def _encode(self, video: mx.array) -> mx.array:
        st = self.stride[0]
        f = video.shape[1]
        x = self._patchify(video.astype(self.dtype))
        cache, outs = CausalCache(), []
        for start, stop in [(0, 1)] + [(i, i + st) for i in range(1, f, st)]:
            cache.next_chunk()
            mu = self.quant_conv(self.encoder(x[:, start:stop], cache))[..., : self.z_dim]
            mu = (mu.astype(mx.float32) - self._mean) * self._inv_std
            mx.eval(mu, cache.arrays())
            outs.append(mu)
        return mx.concatenate(outs, axis=1)

    def decode(
        self,
        z: mx.array,
        tiling: Tiling | None = None,
        group=None,
        frames_per_chunk: int | None = None,
        max_unfold_bytes: int | None = None,
    ) -> mx.array:
        """Normalised latents [B, T, h, w, z_dim] -> video [B, 1 + 4(T-1), H, W, 3] float32 in
        [-1, 1] (clamped). One latent frame per chunk with the causal cache, each evaluated before
        the next (bounded memory); see :meth:`decode_chunks` for ``frames_per_chunk`` and
        ``max_unfold_bytes`` (defaults: :attr:`default_frames_per_chunk`,
        :attr:`default_max_unfold_bytes`), which lower the memory of a chunk without changing the
        result. ``tiling``: decode overlapping spatial tiles of the latents (tile and overlap in
        pixels, multiples of the stride s; each tile through all its latent frames) and blend the
        pixels linearly over the overlap (:mod:`mlx_video.nn.tiling`; memory: the output plus one
        tile's activations). ``group``: an ``mx.distributed`` group over which the tiles are split
        (rank i mod n decodes tile i; every rank returns the blended video, bit-equal to the one-process
        tiled decode; docs/distributed.md); ignored without ``tiling``. Raises ValueError on a wrong shape
        or tiling."""
        if z.ndim != 5 or z.shape[-1] != self.z_dim:
            raise ValueError(f"latents must be [B, T, h, w, {self.z_dim}], got {tuple(z.shape)}")
        tiling = tiling if tiling is not None else self.default_tiling

        def whole(zz: mx.array) -> mx.array:
            return self._decode(zz, frames_per_chunk, max_unfold_bytes)

        if tiling is not None:
            tile, overlap = tiling.in_units(self.stride[1])
            return tiled_map(whole, z, tile, overlap, self.stride[1], 1, group=group)
        return whole(z)

    def _decode(self, z: mx.array, frames_per_chunk: int | None = None, max_unfold_bytes: int | None = None):
        """The untiled decode: :meth:`decode_chunks` joined (after its cache is gone)."""
        return mx.concatenate(list(self.decode_chunks(z, frames_per_chunk, max_unfold_bytes)), axis=1)

    def decode_chunks(
        self, z: mx.array, frames_per_chunk: int | None = None, max_unfold_bytes: int | None = None
    ) -> Iterator[mx.array]:
        """The untiled :meth:`decode`, one latent frame at a time: yields each chunk's pixels, evaluated,
        [B, 1, H, W, 3] then [B, 4, H, W, 3] per further latent frame (float32, clamped to [-1, 1]), so a
        caller can convert or store them chunk by chunk instead of holding the float32 video.

        ``frames_per_chunk``: the most frames any decoder up stage takes at once (None: the whole chunk,
        up to 4 frames at full resolution, as the reference); 1 or 2 split each chunk in time at the
        high-resolution stages, through the same causal cache (:meth:`Decoder3d.__call__`): the same
        values, with a quarter or half of the chunk's activations. ``max_unfold_bytes``: the convolutions'
        unfold budget (:func:`mlx_video.nn.conv.conv3d`; None: ``$MLX_VIDEO_CONV_UNFOLD_GB``).
        While the caller holds chunk t, chunk t + 1 is already running on the device (started only after
        chunk t has finished, so no two chunks' activations are alive together).
        Raises ValueError for a frames_per_chunk below 1."""
        yield from (x for (x,) in self._chunks(z, frames_per_chunk, max_unfold_bytes, lambda x: (x,)))

    def decode_frames(
        self, z: mx.array, frames_per_chunk: int | None = None, max_unfold_bytes: int | None = None
    ) -> Iterator[tuple[np.ndarray, bool]]:
        """:meth:`decode_chunks` converted to uint8 on the device: yields per chunk its frames as a host
        uint8 array [B, f, H, W, 3] (:func:`pixels_to_uint8`: the bytes :func:`mlx_video.io.images.to_uint8`
        gives for the float32 chunk) and whether that chunk's pixels were all finite (NaN and inf do not
        survive the conversion). Only the uint8 chunk crosses to the host (a quarter of the float32
        bytes), while the next chunk runs on the device. Same settings and errors as
        :meth:`decode_chunks`."""

        def convert(x: mx.array) -> tuple[mx.array, mx.array]:
            return pixels_to_uint8(x), mx.all(mx.isfinite(x))

        for u8, finite in self._chunks(z, frames_per_chunk, max_unfold_bytes, convert):
            yield np.array(u8), bool(finite.item())

    def _chunks(self, z: mx.array, frames_per_chunk, max_unfold_bytes, convert) -> Iterator[tuple[mx.array, ...]]:
        """Decode chunk by chunk; yields ``convert(pixels)`` of chunk t, evaluated, once chunk t + 1 has been
        started (``mx.async_eval``; its blocks are evaluated as it is built, see :meth:`CausalCache.settle`).
        Chunk t + 1 starts only once chunk t is done, so the peak is one chunk's, and the device does not wait
        for the caller's work on chunk t."""
        frames = self.default_frames_per_chunk if frames_per_chunk is None else frames_per_chunk
        unfold = self.default_max_unfold_bytes if max_unfold_bytes is None else max_unfold_bytes
        if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 1):
            raise ValueError(f"frames_per_chunk must be an int >= 1 or None, got {frames!r}")
        z = z.astype(mx.float32) / self._inv_std + self._mean
        cache, prev = CausalCache(unfold), None
        for t in range(z.shape[1]):
            if prev is not None:
                mx.eval(prev)  # chunk t is evaluated block by block as it is built: let chunk t - 1 finish first
            cache.next_chunk()
            x = self.decoder(self.post_quant_conv(z[:, t : t + 1].astype(self.dtype)), cache, frames)
            out = convert(mx.clip(self._unpatchify(x).astype(mx.float32), -1.0, 1.0))
            del x
            mx.async_eval(out, cache.arrays())
            if prev is not None:
                yield prev
            prev = out
        if prev is not None:
            mx.eval(prev)
            yield prev


# ----------------------------------------------------------------------------------------------
# Checkpoint conversion
# ----------------------------------------------------------------------------------------------

_OFFICIAL_LEAVES = [  # official name piece -> ours (diffusers uses ours already)
    (".residual.0.", ".norm1."),
    (".residual.2.", ".conv1."),
    (".residual.3.", ".norm2."),
    (".residual.6.", ".conv2."),
    (".shortcut.", ".conv_shortcut."),
    (".middle.0.", ".mid_block.resnets.0."),
    (".middle.1.", ".mid_block.attentions.0."),
    (".middle.2.", ".mid_block.resnets.1."),
    (".head.0.", ".norm_out."),
    (".head.2.", ".conv_out."),
    ("encoder.conv1.", "encoder.conv_in."),
    ("decoder.conv1.", "decoder.conv_in."),
]


def _rename_top(k: str) -> str:
    for a, b in (("conv1.", "quant_conv."), ("conv2.", "post_quant_conv.")):
        if k.startswith(a):
            return b + k[len(a) :]
    return k


def rename_leaves(k: str, layout: str) -> str:
    """Leaf renames common to both Wan VAEs (official -> ours; diffusers needs only the Resample
    conv rename). Structural renames of the block lists are done by each version's sanitize."""
    if layout == "official":
        k = _rename_top(k)
        for a, b in _OFFICIAL_LEAVES:
            k = k.replace(a, b)
    return k.replace(".resample.1.", ".conv.").replace(".upsamplers.0.", ".upsampler.")


def to_mlx_layout(k: str, v: mx.array) -> mx.array:
    """torch layouts -> ours: Conv3d [O,I,kt,kh,kw] -> [O,kt,kh,kw,I]; Conv2d [O,I,kh,kw] ->
    [O,kh,kw,I]; attention 1x1 convs -> Linear [O,I]; RMS gamma [C,1,(1,)1] -> [C]."""
    if k.endswith(".gamma"):
        return v.reshape(-1)
    if (".to_qkv." in k or ".proj." in k) and v.ndim == 4:
        return v.reshape(v.shape[0], v.shape[1])
    if v.ndim == 5:
        return v.transpose(0, 2, 3, 4, 1)
    if v.ndim == 4:
        return v.transpose(0, 2, 3, 1)
    return v


def group_flat(weights: dict[str, mx.array], flat: str, grouped: str, resampler: str) -> dict[str, mx.array]:
    """Regroup a flat block list (``flat.{k}.*``, residual blocks with a Resample closing each
    stage) into ``grouped.{i}.resnets.{j}.*`` / ``grouped.{i}.{resampler}.*``. Stage ends are
    found from the keys (a Resample owns ``resample.1`` weights), so no config is needed."""
    idx = sorted({int(k[len(flat) :].split(".")[0]) for k in weights if k.startswith(flat)})
    is_resample = {i for i in idx if any(k.startswith(f"{flat}{i}.resample.1.") for k in weights)}
    where, stage, j = {}, 0, 0
    for i in idx:
        if i in is_resample:
            where[i] = f"{grouped}{stage}.{resampler}."
            stage, j = stage + 1, 0
        else:
            where[i] = f"{grouped}{stage}.resnets.{j}."
            j += 1
    out = {}
    for k, v in weights.items():
        if k.startswith(flat):
            i, rest = k[len(flat) :].split(".", 1)
            k = where[int(i)] + rest
        out[k] = v
    return out


def sanitize(weights: dict[str, mx.array], layout: str = "official") -> dict[str, mx.array]:
    """Wan 2.1 VAE checkpoint -> this module's names and MLX layouts.

    layout "official": ``Wan2.1_VAE.pth`` names (encoder.downsamples.{k} flat, residual.{0,2,3,6},
    shortcut, resample.1, time_conv, middle.{0,1,2}, head.{0,2}, conv1/conv2);
    "diffusers": ``AutoencoderKLWan`` names (down_blocks.{k} flat, up_blocks.{i}.resnets.{j},
    upsamplers.0, quant_conv, ...). No key is dropped: unknown keys pass through and
    ``load_strict`` reports them. The latent mean/std are constants, not checkpoint entries.
    """
    if layout not in ("official", "diffusers"):
        raise ValueError(f"unknown layout {layout!r} (official | diffusers)")
    if layout == "official":
        weights = group_flat(weights, "encoder.downsamples.", "encoder.down_blocks.", "downsampler")
        weights = group_flat(weights, "decoder.upsamples.", "decoder.up_blocks.", "upsampler")
    else:
        weights = group_flat(weights, "encoder.down_blocks.", "encoder.down_blocks.", "downsampler")
    return {rename_leaves(k, layout): to_mlx_layout(k, v) for k, v in weights.items()}
