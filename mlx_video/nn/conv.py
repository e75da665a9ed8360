"""3-D convolution with bounded temporary memory."""

from __future__ import annotations

import os

import mlx.core as mx

# MLX convolves by unfolding the input (kt·kh·kw copies of it) and running one GEMM. For a VAE's
# full-resolution layers that buffer dwarfs the activations: Wan2.2's last decoder stage at
# 704x1280 unfolds 4 frames x 352 x 640 x 256 channels x 27 taps = 25 GB in float32.
# $MLX_VIDEO_CONV_UNFOLD_GB trades memory for speed. H100, Wan2.2 VAE decode of 121x704x1280 in
# float32 / bf16, and LTX-2 VAE tiled decode of 121x512x768 (benchmarks/README.md):
#   no chunking  7.92 s 42.2 GiB / 3.92 s 22.1 GiB,  1.04 s 22.5 GiB
#   16 GiB       8.56 s 36.9 GiB / 4.48 s 20.2 GiB,  0.99 s 22.5 GiB
#    4 GiB       9.90 s 29.2 GiB / 5.38 s 15.8 GiB,  1.03 s 15.7 GiB   (default)
#    1 GiB      11.77 s 24.0 GiB / 7.33 s 13.5 GiB,  1.57 s  8.1 GiB
MAX_UNFOLD_BYTES = int(float(os.environ.get("MLX_VIDEO_CONV_UNFOLD_GB", "4")) * (1 << 30))


def conv3d(
    x: mx.array, weight: mx.array, stride=(1, 1, 1), padding=(0, 0, 0), max_unfold_bytes: int | None = None
) -> mx.array:
    """``mx.conv3d`` (channels-last) computed in output chunks whose unfolded input stays under
    ``max_unfold_bytes``: whole clips when small, else groups of output frames, else row bands of
    one frame. Each chunk is evaluated before the next, so only one unfold buffer exists at a time.

    x: [B, T, H, W, C_in]; weight: [C_out, kt, kh, kw, C_in]; zero ``padding`` per axis.
    Returns [B, T', H', W', C_out], the same values as ``mx.conv3d`` (the GEMM per output element
    is unchanged).
    """
    max_unfold_bytes = MAX_UNFOLD_BYTES if max_unfold_bytes is None else max_unfold_bytes
    _, kt, kh, kw, cin = weight.shape
    st, sh, sw = stride
    if any(padding):
        pt, ph, pw = padding
        x = mx.pad(x, [(0, 0), (pt, pt), (ph, ph), (pw, pw), (0, 0)])
    b, t, h, w, _ = x.shape
    t_out, h_out, w_out = (t - kt) // st + 1, (h - kh) // sh + 1, (w - kw) // sw + 1
    row = b * w_out * cin * kt * kh * kw * 4  # bytes of one unfolded output row (float32 or less)
    if row * h_out * t_out <= max_unfold_bytes:
        return mx.conv3d(x, weight, stride=stride)
    frames = max(1, max_unfold_bytes // (row * h_out))
    rows = h_out if frames > 1 or row * h_out <= max_unfold_bytes else max(1, max_unfold_bytes // row)
    out_frames = []
    for t0 in range(0, t_out, frames):
        t1 = min(t_out, t0 + frames)
        xt = x[:, t0 * st : (t1 - 1) * st + kt]
        bands = []
        for r0 in range(0, h_out, rows):
            r1 = min(h_out, r0 + rows)
            piece = mx.conv3d(xt[:, :, r0 * sh : (r1 - 1) * sh + kh], weight, stride=stride)
            mx.eval(piece)
            bands.append(piece)
        out_frames.append(bands[0] if len(bands) == 1 else mx.concatenate(bands, axis=2))
    return out_frames[0] if len(out_frames) == 1 else mx.concatenate(out_frames, axis=1)
