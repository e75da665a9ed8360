"""Tiled Wan VAE decode and encode (mlx_video.nn.tiling) against the untiled ones.

The blending is checked exactly on a pointwise function (tiles, placement and normalised weights must
reproduce it to float rounding). On the VAEs a tile sees zero padding at its edges and only itself in
the mid block's per-frame attention, so tiled output is close to, not equal to, the untiled output;
how close depends on the overlap against the decoder's receptive field. The models here are random
(N(0, 1/fan_in)) Wan2.1 / Wan2.2 VAEs with two levels (dim_mult [1, 2] / [1, 1]: spatial stride 2 / 4,
time stride 2), so that tiles of 24x28 latent pixels overlapping by 12 are several receptive-field
radii wide while the test stays small. Measured (tiled vs untiled, latent 32x44, tiles 24x28 latent pixels
overlapping by 12; MLX 0.32.4 on CPU, 2026-12-07), max / mean abs difference on a [-1, 1] output:

    Wan2.1 decode T=1: 0.102 / 0.0106   T=2: 0.174 / 0.0138   encode F=3: 0.096 / 0.0065 (latents)
    Wan2.2 decode T=1: 0.192 / 0.0125   T=2: 0.320 / 0.0199   encode F=3: 0.383 / 0.0192 (latents)
    flat blend (no ramp), decode T=1: Wan2.1 0.582 / 0.0282, Wan2.2 0.555 / 0.0272

Random weights are a worst case for seams (trained VAEs are smoother); the real-width number is
measured by ``python -m benchmarks.wan_vae_tiling --size full``.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from benchmarks.common import mlx_random_
from mlx_video.io.images import to_uint8
from mlx_video.nn import tiling
from mlx_video.nn.tiling import Tiling, tile_spans, tiled_frames, tiled_map
from mlx_video.wan import vae21, vae22

# name -> model, latent (h, w), decode tiling (latent units), encode tiling (latent units)
CASES = {
    "2.1": dict(
        model=lambda: vae21.Wan21VAE(vae21.Wan21VAEArgs(dim=8, dim_mult=[1, 2], temperal_downsample=[True])),
        hw=(32, 44),
        dec=((24, 28), 12),
        enc=((24, 28), 12),
    ),
    "2.2": dict(
        model=lambda: vae22.Wan22VAE(vae22.Wan22VAEArgs(dim=8, dec_dim=8, dim_mult=[1, 1], temperal_downsample=[True])),
        hw=(32, 44),
        dec=((24, 28), 12),
        enc=((24, 28), 12),
    ),
}
# (max, mean) abs difference bounds: the measured numbers above with ~30% headroom, below flat blending
BOUNDS = {
    ("2.1", "decode"): (0.23, 0.018),
    ("2.1", "encode"): (0.13, 0.009),
    ("2.2", "decode"): (0.42, 0.026),
    ("2.2", "encode"): (0.50, 0.025),
}


@pytest.fixture(scope="module", params=list(CASES))
def vae(request):
    c = CASES[request.param]
    m = mlx_random_(c["model"](), mx.float32, 0)
    return request.param, m, c


def _px(tile_ov, s):
    (th, tw), ov = tile_ov
    return Tiling((th * s, tw * s), ov * s)


def _diff(a, b):
    d = np.abs(np.array(a, np.float64) - np.array(b, np.float64))
    return float(d.max()), float(d.mean())


def test_spans_cover_evenly():
    assert tile_spans(10, 16, 4) == [(0, 10)]
    spans = tile_spans(100, 32, 8)
    assert spans[0][0] == 0 and spans[-1][1] == 100 and all(b - a == 32 for a, b in spans)
    assert all(a2 <= b1 - 8 for (_, b1), (a2, _) in zip(spans, spans[1:]))


@pytest.mark.parametrize(
    "shape,tile,overlap,num,den,unit",
    [
        ((1, 3, 13, 21, 2), (5, 8), (2, 3), 4, 1, 1),  # decoder-like x4, odd sizes
        ((2, 1, 40, 24, 3), (16, 8), (8, 4), 1, 4, 4),  # encoder-like /4, spans on multiples of 4
    ],
)
def test_blend_reproduces_pointwise_fn(shape, tile, overlap, num, den, unit):
    """Normalised ramps are a partition of unity and tiles land where they belong: a pointwise map
    (channel mix, nearest resize) comes out as from one piece."""
    x = mx.random.normal(shape, key=mx.random.key(0))
    mix = mx.random.normal((shape[-1], 5), key=mx.random.key(1))

    def fn(v):
        y = v @ mix
        if num > 1:
            y = mx.repeat(mx.repeat(y, num, axis=2), num, axis=3)
        return y[:, :, ::den, ::den] if den > 1 else y

    ref, out = fn(x), tiled_map(fn, x, tile, overlap, num, den, unit)
    assert out.shape == ref.shape
    np.testing.assert_allclose(np.array(out), np.array(ref), atol=1e-5)


def test_bad_tiling_raises(vae):
    _, m, _ = vae
    s = m.stride[1]
    z = mx.zeros((1, 1, 4, 4, m.z_dim))
    with pytest.raises(ValueError, match="multiples"):
        m.decode(z, Tiling((3 * s + 1, 4 * s), s))
    with pytest.raises(ValueError, match="overlap"):
        Tiling((4 * s, 4 * s), 4 * s)


def test_one_tile_is_untiled(vae):
    _, m, _ = vae
    s = m.stride[1]
    z = mx.random.normal((1, 1, 6, 10, m.z_dim), key=mx.random.key(2))
    np.testing.assert_allclose(np.array(m.decode(z, Tiling((8 * s, 12 * s), 2 * s))), np.array(m.decode(z)), atol=1e-6)


@pytest.mark.parametrize("frames", [1, 2])
def test_tiled_decode_close(vae, frames):
    name, m, c = vae
    h, w = c["hw"]
    z = mx.random.normal((1, frames, h, w, m.z_dim), key=mx.random.key(3))
    ref = m.decode(z)
    out = m.decode(z, _px(c["dec"], m.stride[1]))
    assert out.shape == ref.shape
    mx_, mean = _diff(out, ref)
    print(f"Wan{name} decode T={frames} {h}x{w}: max {mx_:.3f} mean {mean:.4f}")
    bmax, bmean = BOUNDS[(name, "decode")]
    assert mx_ < bmax and mean < bmean


def test_tiled_encode_close(vae):
    name, m, c = vae
    (h, w), s = c["hw"], m.stride[1]
    frames = 1 + m.stride[0]
    video = mx.random.uniform(-1, 1, (1, frames, h * s, w * s, 3), key=mx.random.key(4))
    ref = m.encode(video)
    out = m.encode(video, _px(c["enc"], s))
    assert out.shape == ref.shape
    mx_, mean = _diff(out, ref)
    print(f"Wan{name} encode F={frames} {h * s}x{w * s}: max {mx_:.3f} mean {mean:.4f}")
    bmax, bmean = BOUNDS[(name, "encode")]
    assert mx_ < bmax and mean < bmean


def test_flat_blend_fails_the_bound(vae, monkeypatch):
    """The comparison can fail: tiles averaged with flat weights (no linear ramp) break the bound."""
    name, m, c = vae
    h, w = c["hw"]
    monkeypatch.setattr(tiling, "_ramp", lambda spans, size, ramp: [np.ones(b - a) for a, b in spans])
    z = mx.random.normal((1, 1, h, w, m.z_dim), key=mx.random.key(3))
    mx_, mean = _diff(m.decode(z, _px(c["dec"], m.stride[1])), m.decode(z))
    print(f"Wan{name} decode, flat blend: max {mx_:.3f} mean {mean:.4f}")
    bmax, bmean = BOUNDS[(name, "decode")]
    assert mx_ > bmax or mean > bmean


def _chunked(fn, sizes):
    """A stand-in tile decode for tiled_frames: fn over the tile, yielded in time chunks of ``sizes``."""

    def decode(xt, convert):
        y, t0 = fn(xt), 0
        for n in sizes:
            out = convert(y[:, t0 : t0 + n])
            mx.eval(out)
            yield out
            t0 += n

    return decode


@pytest.mark.parametrize("tile,overlap", [((5, 8), (2, 3)), ((13, 8), (4, 3)), ((5, 21), (2, 0)), ((13, 21), (4, 4))])
def test_tiled_frames_is_tiled_map_in_uint8(tile, overlap):
    """tiled_frames (tile by tile, uint8 at once where one tile covers a pixel, float32 sums over the
    overlap bands on the host) gives the bytes of the float32 tiled_map converted: on a 2-D grid, a row,
    a column and one tile; the frames come from the tile decode in uneven chunks."""
    x = mx.random.normal((1, 5, 13, 21, 2), key=mx.random.key(5))
    mix = mx.random.normal((2, 3), key=mx.random.key(6)) * 0.7

    def fn(v):
        return mx.clip(mx.repeat(mx.repeat(mx.tanh(v @ mix), 4, axis=2), 4, axis=3), -1, 1)

    ref = to_uint8(np.array(tiled_map(fn, x, tile, overlap, 4, 1)))
    out, finite = tiled_frames(_chunked(fn, [1, 3, 1]), x, tile, overlap, 4, 5, vae21.pixels_to_uint8)
    assert finite and out.dtype == np.uint8 and out.shape == ref.shape
    np.testing.assert_array_equal(out, ref)
    broken = tiling._layout  # the comparison can fail: a layout whose weights do not sum to one
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tiling, "_layout", lambda *a: (lambda o, t, ts: (o, t * 0.5, ts))(*broken(*a)))
        if len(tiling.tile_spans(13, tile[0], overlap[0])) * len(tiling.tile_spans(21, tile[1], overlap[1])) > 1:
            bad, _ = tiled_frames(_chunked(fn, [5]), x, tile, overlap, 4, 5, vae21.pixels_to_uint8)
            assert not np.array_equal(bad, ref)


def test_tiled_frames_reports_nonfinite_and_frame_count():
    x = mx.ones((1, 2, 8, 8, 3))
    nan = _chunked(lambda v: v * mx.array(float("nan")), [2])
    _, finite = tiled_frames(nan, x, (6, 6), (2, 2), 1, 2, vae21.pixels_to_uint8)
    assert not finite
    with pytest.raises(ValueError, match="expected 3"):
        tiled_frames(_chunked(lambda v: v, [2]), x, (6, 6), (2, 2), 1, 3, vae21.pixels_to_uint8)


@pytest.mark.parametrize("frames", [1, 2])
def test_tiled_decode_frames_bytes(vae, frames):
    """The VAE's streamed tiled decode (decode_frames with a tiling, the pipeline's path) is the uint8 of
    its float32 tiled decode, byte for byte, and its tiles differ from the untiled decode."""
    _, m, c = vae
    h, w = c["hw"]
    z = mx.random.normal((1, frames, h, w, m.z_dim), key=mx.random.key(3))
    tiles = _px(c["dec"], m.stride[1])
    chunks = list(m.decode_frames(z, tiling=tiles))
    assert len(chunks) == 1 and chunks[0][1]
    np.testing.assert_array_equal(chunks[0][0], to_uint8(np.array(m.decode(z, tiles))))
    assert not np.array_equal(chunks[0][0], np.concatenate([u for u, _ in m.decode_frames(z)], axis=1))
