"""Wan 2.1 video VAE (z 16, stride 4x8x8): the model, its chunked / tiled encode and decode, and its
checkpoint conversion; the causal building blocks it shares with Wan 2.2 are in :mod:`mlx_video.wan.vae_blocks`.

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

from mlx_video.nn.tiling import Tiling, tiled_frames, tiled_map
from mlx_video.wan.vae_blocks import (
    CACHE_T,
    AttentionBlock,
    CausalCache,
    CausalConv3d,
    Decoder3d,
    DownBlock,
    Encoder3d,
    MidBlock,
    Resample,
    ResidualBlock,
    RMSNorm,
    UpBlock,
)

# The causal blocks live in mlx_video.wan.vae_blocks (shared with vae22) and are re-exported here. Their memory
# knob EVAL_BLOCK_BYTES is not: set it on vae_blocks, where CausalCache reads it.
__all__ = [
    "CACHE_T",
    "MEAN16",
    "STD16",
    "AttentionBlock",
    "CausalCache",
    "CausalConv3d",
    "Decoder3d",
    "DownBlock",
    "Encoder3d",
    "MidBlock",
    "RMSNorm",
    "Resample",
    "ResidualBlock",
    "UpBlock",
    "Wan21VAE",
    "Wan21VAEArgs",
    "group_flat",
    "pixels_to_uint8",
    "rename_leaves",
    "sanitize",
    "to_mlx_layout",
]

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


def pixels_to_uint8(x: mx.array) -> mx.array:
    """[-1, 1] pixels (any float dtype, any shape) -> uint8 [0, 255] on the device: in float32, clamped,
    ``round((x + 1) · 127.5)`` half to even, clamped: the same bytes as :func:`mlx_video.io.images.to_uint8`
    on the host (the official save_video's conversion)."""
    x = (mx.clip(x.astype(mx.float32), -1.0, 1.0) + 1.0) * 127.5
    return mx.clip(mx.round(x), 0, 255).astype(mx.uint8)


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
        self._check_latents(z)
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

    def _check_latents(self, z: mx.array) -> None:
        if z.ndim != 5 or z.shape[-1] != self.z_dim:
            raise ValueError(f"latents must be [B, T, h, w, {self.z_dim}], got {tuple(z.shape)}")

    def decode_frames(
        self,
        z: mx.array,
        frames_per_chunk: int | None = None,
        max_unfold_bytes: int | None = None,
        tiling: Tiling | None = None,
    ) -> Iterator[tuple[np.ndarray, bool]]:
        """:meth:`decode_chunks` converted to uint8 on the device: yields per chunk its frames as a host
        uint8 array [B, t, H, W, 3] (the bytes :func:`mlx_video.io.images.to_uint8` gives for the float32
        chunk) and whether that chunk's pixels were all finite (NaN and inf do not survive the conversion).
        Only the uint8 chunk crosses to the host (a quarter of the float32 bytes), while the next chunk runs
        on the device. ``tiling`` (default :attr:`default_tiling`): the tiled :meth:`decode` tile by tile
        (:func:`mlx_video.nn.tiling.tiled_frames`; each tile through all its chunks, its caches freed before
        the next), yielded as one chunk of all frames: the bytes of ``to_uint8(decode(z, tiling))`` without
        the float32 video or tiles (device memory: one tile's decode). Same settings and errors as
        :meth:`decode_chunks`; ValueError on a wrong shape or tiling."""
        self._check_latents(z)
        tiling = tiling if tiling is not None else self.default_tiling

        def convert(x: mx.array) -> tuple[mx.array, mx.array]:
            return pixels_to_uint8(x), mx.all(mx.isfinite(x))

        if tiling is not None:
            tile, overlap = tiling.in_units(self.stride[1])

            def tile_chunks(zt: mx.array, conv) -> Iterator[tuple[mx.array, ...]]:
                return self._chunks(zt, frames_per_chunk, max_unfold_bytes, conv)

            frames = 1 + self.stride[0] * (z.shape[1] - 1)
            yield tiled_frames(tile_chunks, z, tile, overlap, self.stride[1], frames, pixels_to_uint8)
            return
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
