"""Spatial tiling with overlap and linear blending, for VAE encode and decode (Wan2.1 and Wan2.2).

A video ``[B, T, H, W, C]`` is cut into overlapping spatial tiles; each tile goes through the whole
function (for the VAEs: every temporal chunk through the causal cache, so time needs no blending),
and the tile outputs are blended with weights that ramp linearly from ~0 at a tile edge that borders
another tile to 1 over the overlap, normalised so that the weights of all tiles sum to 1 at every
output pixel. The idea is diffusers' ``AutoencoderKLWan.tiled_decode`` (tiles with overlap, linear
blend); the weights here are normalised, so any tile layout (evenly spread, equal-size tiles) blends.

Tiled results are not identical to untiled ones: zero padding at tile edges and the per-frame
attention of the VAE mid block see only the tile. The overlap hides the difference; the numbers are
in tests/test_wan_vae_tiling.py.

The LTX-2 VAE tiles as ltx-core does instead (``ltx_core.model.video_vae.tiling``): 1-D splits with symmetric
overlaps (:func:`symmetric_overlap_split`, :func:`causal_overlap_split` for causal time) blended with trapezoidal
masks (:func:`trapezoid_mask`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import mlx.core as mx
import numpy as np


def _pair(v, name: str) -> tuple[int, int]:
    t = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(t) != 2 or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in t):
        raise ValueError(f"tiling {name} must be an int or (height, width) ints, got {v!r}")
    return int(t[0]), int(t[1])


@dataclass(frozen=True)
class Tiling:
    """Spatial tiles of ``tile`` = (height, width) pixels overlapping by ``overlap`` pixels (one int or
    (height, width)). Both must be multiples of the VAE's spatial stride (8 for Wan2.1, 16 for Wan2.2:
    checked by :meth:`in_units`); ``overlap`` < ``tile``. Default tiles 256x256 with 64 overlap (the tile
    and stride diffusers' AutoencoderKLWan uses). Raises ValueError for bad values.
    """

    tile: tuple[int, int] = (256, 256)
    overlap: int | tuple[int, int] = 64

    def __post_init__(self):
        tile, ov = _pair(self.tile, "tile"), _pair(self.overlap, "overlap")
        object.__setattr__(self, "tile", tile)
        object.__setattr__(self, "overlap", ov)
        if min(tile) <= 0 or min(ov) < 0 or any(o >= t for o, t in zip(ov, tile)):
            raise ValueError(f"tiling needs tile > overlap >= 0, got tile {tile}, overlap {ov}")

    def in_units(self, unit: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(tile, overlap) divided by ``unit`` (the VAE's spatial stride); ValueError unless divisible."""
        if any(v % unit for v in (*self.tile, *self.overlap)):
            raise ValueError(
                f"tiling tile {self.tile} and overlap {self.overlap} must be multiples of "
                f"the VAE's spatial stride {unit}"
            )
        return (self.tile[0] // unit, self.tile[1] // unit), (self.overlap[0] // unit, self.overlap[1] // unit)

    def to_dict(self) -> dict:
        return {"tile": list(self.tile), "overlap": list(self.overlap)}

    @classmethod
    def square(cls, tile: int, stride: int) -> Tiling:
        """``tile`` x ``tile`` pixels overlapping by a quarter of it, rounded down to a multiple of
        ``stride`` (at least one stride). ValueError unless ``tile`` is a multiple of ``stride``."""
        if tile % stride:
            raise ValueError(f"tile {tile} must be a multiple of the VAE's spatial stride {stride}")
        return cls((tile, tile), max(stride, tile // 4 // stride * stride))


def tile_spans(size: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Spans [start, stop) covering ``range(size)`` with tiles of ``tile`` overlapping by at least
    ``overlap``: one span when ``size <= tile``, else ``ceil((size - overlap) / (tile - overlap))``
    equal tiles with starts spread evenly (integers) from 0 to ``size - tile``."""
    if size <= tile:
        return [(0, size)]
    n = math.ceil((size - overlap) / (tile - overlap))
    starts = [round(k * (size - tile) / (n - 1)) for k in range(n)]
    return [(a, a + tile) for a in starts]


def _ramp(spans: list[tuple[int, int]], size: int, ramp: int) -> list[np.ndarray]:
    """Per span, weights over its output pixels: linear from 1/(2·ramp) to 1 over ``ramp`` pixels at a
    side that has a neighbouring tile, 1 elsewhere (image borders are not faded)."""
    out = []
    for a, b in spans:
        x = np.arange(a, b, dtype=np.float64)
        w = np.ones(b - a)
        if ramp > 0 and a > 0:
            w = np.minimum(w, (x - a + 0.5) / ramp)
        if ramp > 0 and b < size:
            w = np.minimum(w, (b - x - 0.5) / ramp)
        out.append(w)
    return out


def _layout(shape, tile, overlap, num: int, den: int, unit: int):
    """((out_h, out_w), total weight per output pixel, tiles): per tile (row-major) its input span
    (a, b, c, d), output span (oa, ob, oc, od) and unnormalised weights [ob - oa, od - oc] (float64)."""
    _, _, H, W, _ = shape
    sh, sw = (
        [(unit * a, unit * b) for a, b in tile_spans(n // unit, t // unit, o // unit)]
        for n, t, o in ((H, tile[0], overlap[0]), (W, tile[1], overlap[1]))
    )

    def scale(v: int) -> int:
        return v * num // den

    out_h, out_w = scale(H), scale(W)
    osh = [(scale(a), scale(b)) for a, b in sh]
    osw = [(scale(a), scale(b)) for a, b in sw]
    wh, ww = _ramp(osh, out_h, scale(overlap[0])), _ramp(osw, out_w, scale(overlap[1]))
    total = np.zeros((out_h, out_w))
    for (a, b), u in zip(osh, wh):
        for (c, d), v in zip(osw, ww):
            total[a:b, c:d] += u[:, None] * v[None, :]
    tiles = [
        ((a, b, c, d), (oa, ob, oc, od), u[:, None] * v[None, :])
        for (a, b), (oa, ob), u in zip(sh, osh, wh)
        for (c, d), (oc, od), v in zip(sw, osw, ww)
    ]
    return (out_h, out_w), total, tiles


def tiled_map(
    fn: Callable[[mx.array], mx.array],
    x: mx.array,
    tile: tuple[int, int],
    overlap: tuple[int, int],
    num: int,
    den: int,
    unit: int = 1,
    group=None,
) -> mx.array:
    """``fn`` over overlapping spatial tiles of ``x``, blended: an approximation of ``fn(x)``.

    x: [B, T, H, W, C]; tile / overlap: (h, w) in units of x's pixels; ``fn`` maps a tile
    [B, T, h, w, C] to [B, T', h·num/den, w·num/den, C'] (the same T', C' for every tile; a decoder:
    num = stride, den = 1; an encoder: num = 1, den = stride and ``unit`` = stride, so that every
    span starts and ends on a multiple of ``unit``: H, W, tile and overlap must be multiples of it).
    Each tile's output is evaluated and accumulated into one float32 buffer [B, T', H·num/den,
    W·num/den, C'] with normalised linear-ramp weights over ``overlap·num/den`` output pixels, so
    memory is that buffer plus one tile's work. Returns the buffer.

    ``group``: an ``mx.distributed`` group (docs/distributed.md) to split the tiles over: tile i (row-major)
    runs on rank i mod n, and after each round of n tiles one ``all_gather`` hands the weighted tile
    outputs to every rank, which adds them in tile order. Every rank returns the buffer, bit-equal to
    the one-process result (same operations, same order); memory: the buffer plus n tile outputs.
    """
    (out_h, out_w), total, tiles = _layout(x.shape, tile, overlap, num, den, unit)

    def weighted(i: int) -> mx.array:
        (a, b, c, d), (oa, ob, oc, od), uv = tiles[i]
        y = fn(x[:, :, a:b, c:d]).astype(mx.float32)
        return y * mx.array((uv / total[oa:ob, oc:od]).astype(np.float32))[:, :, None]

    n, rank = (1, 0) if group is None else (group.size(), group.rank())
    out = shape = None
    for first in range(0, len(tiles), n):
        mine = first + rank
        if mine < len(tiles):
            y = weighted(mine)
        elif shape is None:  # fewer tiles than ranks: a stand-in tile, for the shape only (discarded)
            y = weighted(0)
        else:
            y = mx.zeros(shape, mx.float32)
        shape = y.shape
        ys = [y] if n == 1 else list(mx.distributed.all_gather(y[None], group=group))
        if out is None:
            out = mx.zeros((y.shape[0], y.shape[1], out_h, out_w, y.shape[-1]), mx.float32)
        for i, y in zip(range(first, min(first + n, len(tiles))), ys):
            oa, ob, oc, od = tiles[i][1]
            out[:, :, oa:ob, oc:od] += y
            mx.eval(out)
    return out


def tiled_frames(
    decode: Callable[[mx.array, Callable], Iterator[tuple[mx.array, ...]]],
    x: mx.array,
    tile: tuple[int, int],
    overlap: tuple[int, int],
    scale: int,
    frames: int,
    to_uint8: Callable[[mx.array], mx.array],
) -> tuple[np.ndarray, bool]:
    """:func:`tiled_map` of a decoder (``num`` = ``scale``, ``den`` = 1) straight to uint8 frames, one
    tile at a time, without the float32 video: the same bytes as ``to_uint8(tiled_map(...))``.

    ``decode(x_tile, convert)`` decodes a tile [B, T, h, w, C] and yields, evaluated and in time order,
    ``convert(pixels)`` for each chunk of its float32 pixels [B, t, h·scale, w·scale, C'] (``frames``
    output frames in all; e.g. :meth:`mlx_video.wan.vae21.Wan21VAE._chunks`); ``convert`` runs on the
    device: the chunk's uint8 pixels (``to_uint8``, float -> uint8 on the device, e.g.
    :func:`mlx_video.wan.vae21.pixels_to_uint8`), whether all were finite, and its weighted values at the
    output pixels that several tiles cover. Pixels one tile covers (weight 1) are final at once; the
    others are summed in float32 on the host in tile order, as :func:`tiled_map` sums them, and
    converted with ``to_uint8`` at the end, a few frames at a time. Memory: one tile's decode on the
    device; on the host the uint8 video [B, frames, H·scale, W·scale, C'] and float32 sums over the
    overlap bands only. Raises ValueError when a tile's decode does not give ``frames`` frames.
    Returns (video uint8, all pixels finite)."""
    (out_h, out_w), total, tiles = _layout(x.shape, tile, overlap, scale, 1, 1)
    count = np.zeros((out_h, out_w), np.int64)
    for _, (oa, ob, oc, od), _ in tiles:
        count[oa:ob, oc:od] += 1
    shared = count > 1
    n_shared = int(shared.sum())
    slot = np.full((out_h, out_w), -1, np.int64)
    slot[shared] = np.arange(n_shared)
    video = sums = None
    finite = True
    for (a, b, c, d), (oa, ob, oc, od), uv in tiles:
        mine = shared[oa:ob, oc:od]
        own = ~mine
        where = mx.array(np.flatnonzero(mine).astype(np.int32))
        weight = mx.array((uv / total[oa:ob, oc:od]).astype(np.float32))[:, :, None]
        slots = slot[oa:ob, oc:od][mine]

        def convert(y: mx.array, weight=weight, where=where) -> tuple[mx.array, ...]:
            n, t, h, w, ch = y.shape
            part = (y * weight).reshape(n, t, h * w, ch)[:, :, where]
            return to_uint8(y), mx.all(mx.isfinite(y)), part

        t0 = 0
        for u8, ok, part in decode(x[:, :, a:b, c:d], convert):
            u8, part = np.array(u8), np.array(part)
            if video is None:
                n, ch = u8.shape[0], u8.shape[-1]
                video = np.zeros((n, frames, out_h, out_w, ch), np.uint8)
                sums = np.zeros((n, frames, n_shared, ch), np.float32)
            t1 = t0 + u8.shape[1]
            video[:, t0:t1, oa:ob, oc:od][:, :, own] = u8[:, :, own]
            sums[:, t0:t1, slots] += part
            finite = finite and bool(ok)
            t0 = t1
        if t0 != frames:
            raise ValueError(f"the tile decode gave {t0} frames, expected {frames}")
    if n_shared:
        step = max(1, (64 << 20) // max(1, sums[:, :1].nbytes))
        video[:, :, shared] = np.concatenate(
            [np.array(to_uint8(mx.array(sums[:, i : i + step]))) for i in range(0, frames, step)], axis=1
        )
    return video, finite


# ----------------------------------------------------------------------------- ltx-core's splits and masks
def symmetric_overlap_split(length: int, size: int, overlap: int) -> tuple[list[int], list[int], list[int], list[int]]:
    """ltx-core ``split_with_symmetric_overlaps``: tiles of ``size`` over ``range(length)`` starting every
    ``size - overlap`` (the last one cut at ``length``) -> (starts, ends, left ramps, right ramps), the ramps
    ``overlap`` long where a tile has a neighbour on that side, else 0. One tile when ``length <= size``."""
    if length <= size:
        return [0], [length], [0], [0]
    n = (length + size - 2 * overlap - 1) // (size - overlap)
    starts = [i * (size - overlap) for i in range(n)]
    ends = [s + size for s in starts]
    ends[-1] = length
    return starts, ends, [0] + [overlap] * (n - 1), [overlap] * (n - 1) + [0]


def causal_overlap_split(length: int, size: int, overlap: int) -> tuple[list[int], list[int], list[int], list[int]]:
    """:func:`symmetric_overlap_split` for a causal temporal latent axis: later tiles start one latent frame
    earlier and their left ramp is one longer (ltx-core's temporal split)."""
    s, e, lr, rr = symmetric_overlap_split(length, size, overlap)
    if len(s) > 1:
        s = [s[0]] + [x - 1 for x in s[1:]]
        lr = [lr[0]] + [x + 1 for x in lr[1:]]
    return s, e, lr, rr


def trapezoid_mask(length: int, left: int, right: int, left_from_zero: bool) -> np.ndarray:
    """ltx-core's 1-D blend mask [length] float32: 1, ramping up over the first ``left`` entries (from 0 when
    ``left_from_zero``, else from the first step above 0) and down over the last ``right`` (to just above 0);
    ramps are clipped to ``length``."""
    left, right = max(0, min(left, length)), max(0, min(right, length))
    m = np.ones(length, np.float32)
    if left:
        fade = np.linspace(0.0, 1.0, left + 1 if left_from_zero else left + 2, dtype=np.float32)[:-1]
        m[:left] *= fade if left_from_zero else fade[1:]
    if right:
        m[-right:] *= np.linspace(1.0, 0.0, right + 2, dtype=np.float32)[1:-1]
    return np.clip(m, 0, 1)
