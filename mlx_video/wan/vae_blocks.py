"""The causal 3-D building blocks of the Wan 2.1 and Wan 2.2 video VAEs (official ``wan/modules/vae2_1.py``,
``vae2_2.py``), channels-last ``[B, T, H, W, C]``: the chunk-to-chunk :class:`CausalCache`, the causal
convolution, norms, residual, attention and resample layers, and the encoder / decoder stacks that
:class:`mlx_video.wan.vae21.Wan21VAE` (and :class:`mlx_video.wan.vae22.Wan22VAE`) drive chunk by chunk.

Every causal 3-D convolution carries the last frames of its input from one chunk to the next in the cache,
so a chunked run gives the unchunked result with memory bounded by one chunk plus the cache.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlx_video.nn.attention import attention
from mlx_video.nn.conv import conv3d

CACHE_T = 2  # frames of history a temporal-kernel-3 causal conv needs

# MLX frees a buffer only once the device has run the work that last used it, and the host runs ahead of the
# device by up to ~1000 kernels (CUDA: 10 command buffers of <= 100); an unevaluated cache slot also keeps its
# source (the conv's whole input) and the slot it replaces alive. So a chunk built as one lazy graph holds most
# of its activations at once: counted for Wan2.2 at 704x1280 in bf16, a one-frame piece's new cache slots
# (2.6 GB) and their sources (1.3 GB) on top of the old cache (3.2 GB) and the weights (1.1 GB) are about the
# 9.4 GiB the H100 measured with frames_per_chunk 1. Blocks whose output has at least this many bytes are
# therefore evaluated, with the cache, before the next one is built (the same values; one wait per block).
EVAL_BLOCK_BYTES = 16 << 20


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

    def settle(self, x: mx.array, *also: mx.array) -> mx.array:
        """Evaluate ``x``, the arrays ``also`` and the slots written so far when ``x`` has at least
        :data:`EVAL_BLOCK_BYTES` (called between blocks and between a residual block's two convolutions:
        bounds what a lazy chunk holds at once). Values are unchanged. Returns ``x``."""
        if x.nbytes >= EVAL_BLOCK_BYTES:
            mx.eval(x, *also, self.arrays())
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
        # Settling between the convolutions frees conv1's input-side intermediates before conv2 builds its
        # own (at 704x1280 a block's lazy graph otherwise holds all of them at once).
        x = cache.settle(self.conv1(nn.silu(self.norm1(x)), cache), h)
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
