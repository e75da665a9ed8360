"""3-D convolution with bounded temporary memory."""
from __future__ import annotations

import mlx.core as mx

# MLX convolves by unfolding the input (kt·kh·kw copies of it) and running one GEMM. For a VAE's
# full-resolution layers that buffer dwarfs the activations: Wan2.2's last decoder stage at
# 704x1280 unfolds 4 frames x 352 x 640 x 256 channels x 27 taps = 25 GB in float32.
MAX_UNFOLD_BYTES = 1 << 30


def conv3d(x: mx.array, weight: mx.array, stride=(1, 1, 1), padding=(0, 0, 0),
           max_unfold_bytes: int = MAX_UNFOLD_BYTES) -> mx.array:
    """``mx.conv3d`` (channels-last) computed in output chunks whose unfolded input stays under
    ``max_unfold_bytes``: whole clips when small, else groups of output frames, else row bands of
    one frame. Each chunk is evaluated before the next, so only one unfold buffer exists at a time.

    x: [B, T, H, W, C_in]; weight: [C_out, kt, kh, kw, C_in]; zero ``padding`` per axis.
    Returns [B, T', H', W', C_out], the same values as ``mx.conv3d`` (the GEMM per output element
    is unchanged).
    """
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
        xt = x[:, t0 * st:(t1 - 1) * st + kt]
        bands = []
        for r0 in range(0, h_out, rows):
            r1 = min(h_out, r0 + rows)
            piece = mx.conv3d(xt[:, :, r0 * sh:(r1 - 1) * sh + kh], weight, stride=stride)
            mx.eval(piece)
            bands.append(piece)
        out_frames.append(bands[0] if len(bands) == 1 else mx.concatenate(bands, axis=2))
    return out_frames[0] if len(out_frames) == 1 else mx.concatenate(out_frames, axis=1)
