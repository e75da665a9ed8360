"""3-D convolution: with bounded temporary memory, and as sums of 2-D convolutions.

:func:`conv3d` runs ``mx.conv3d`` in output chunks (the Wan VAEs). :func:`conv3d_replicate_frames` is a
stride-1 "same" 3-D convolution over edge-replicated frames (ltx-core's ``CausalConv3d``) in one of
:data:`CONV3D_MODES` formulations, built from :func:`conv3d`, :func:`conv3d_summed_taps`,
:func:`conv3d_replicate_taps` and :func:`conv3d_stacked_taps`.
"""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_video.checks import env_number

# MLX convolves by unfolding the input (kt·kh·kw copies of it) and running one GEMM. For a VAE's
# full-resolution layers that buffer dwarfs the activations: Wan2.2's last decoder stage at
# 704x1280 unfolds 4 frames x 352 x 640 x 256 channels x 27 taps = 25 GB in float32.
# $MLX_VIDEO_CONV_UNFOLD_GB trades memory for speed. H100, Wan2.2 VAE decode of 121x704x1280 in
# float32 / bf16, and LTX-2 VAE tiled decode of 121x512x768 (benchmarks/README.md):
#   no chunking  7.92 s 42.2 GiB / 3.92 s 22.1 GiB,  1.04 s 22.5 GiB
#   16 GiB       8.56 s 36.9 GiB / 4.48 s 20.2 GiB,  0.99 s 22.5 GiB
#    4 GiB       9.90 s 29.2 GiB / 5.38 s 15.8 GiB,  1.03 s 15.7 GiB   (default)
#    1 GiB      11.77 s 24.0 GiB / 7.33 s 13.5 GiB,  1.57 s  8.1 GiB
# The budget counts 4 bytes an element whatever the dtype (MLX's CPU backend unfolds in float32; on the
# GPU a bf16 unfold takes half the budget). Callers with their own memory plan pass ``max_unfold_bytes``
# (the Wan VAEs: ``decode(..., max_unfold_bytes=...)``); the environment variable is the default.
MAX_UNFOLD_BYTES = int(env_number("MLX_VIDEO_CONV_UNFOLD_GB", 4.0) * (1 << 30))


def _pads(padding) -> list[tuple[int, int]]:
    out = [(p, p) if isinstance(p, int) else (int(p[0]), int(p[1])) for p in padding]
    if len(out) != 3 or min(min(p) for p in out) < 0:
        raise ValueError(f"conv3d padding must be 3 ints or (lo, hi) pairs >= 0, got {padding!r}")
    return out


def _window(parts: list[mx.array], pads, t0: int, t1: int, r0: int, r1: int) -> mx.array:
    """Frames [t0, t1) and rows [r0, r1) of the zero-padded time concatenation of ``parts`` (indices in
    padded coordinates), all columns padded: a copy of just that window."""
    (tl, _), (hl, _), (wl, wr) = pads
    h = parts[0].shape[2]
    a, b = r0 - hl, r1 - hl
    top, bottom, a, b = max(0, -a), max(0, b - h), max(a, 0), min(b, h)
    lo, hi = t0 - tl, t1 - tl
    pieces, start = [], 0
    for p in parts:
        n = p.shape[1]
        s, e = max(lo, start), min(hi, start + n)
        if s < e:
            pieces.append(p[:, s - start : e - start, a:b])
        start += n
    front, back = max(0, -lo), max(0, hi - max(lo, start))
    if not pieces:  # the window lies in the padding
        p = parts[0]
        return mx.zeros((p.shape[0], t1 - t0, r1 - r0, p.shape[3] + wl + wr, p.shape[4]), p.dtype)
    x = pieces[0] if len(pieces) == 1 else mx.concatenate(pieces, axis=1)
    if front or back or top or bottom or wl or wr:
        x = mx.pad(x, [(0, 0), (front, back), (top, bottom), (wl, wr), (0, 0)])
    return x


def conv3d(
    x: mx.array | Sequence[mx.array],
    weight: mx.array,
    stride=(1, 1, 1),
    padding=(0, 0, 0),
    max_unfold_bytes: int | None = None,
) -> mx.array:
    """``mx.conv3d`` (channels-last) computed in output chunks whose unfolded input stays under
    ``max_unfold_bytes`` (default ``$MLX_VIDEO_CONV_UNFOLD_GB``, counted at 4 bytes an element): whole
    clips when small, else groups of output frames, else row bands of one frame. Each chunk is evaluated
    before the next, so only one unfold buffer exists at a time.

    x: [B, T, H, W, C_in], or a sequence of such arrays (same B, H, W, C_in) that are joined along time
    (e.g. a causal cache's frames and the new ones): each chunk copies only its own window of them, so the
    joined and padded input never exists whole. weight: [C_out, kt, kh, kw, C_in]; ``padding``: zeros per
    axis (time, height, width), an int (both sides) or a (before, after) pair each.
    Returns [B, T', H', W', C_out], the same values as ``mx.conv3d`` on the joined, padded input (the
    GEMM per output element is unchanged). Raises ValueError for a bad padding.
    """
    max_unfold_bytes = MAX_UNFOLD_BYTES if max_unfold_bytes is None else max_unfold_bytes
    parts = [x] if isinstance(x, mx.array) else list(x)
    pads = _pads(padding)
    _, kt, kh, kw, cin = weight.shape
    st, sh, sw = stride
    b, _, h, w, _ = parts[0].shape
    t = sum(p.shape[1] for p in parts) + sum(pads[0])
    h, w = h + sum(pads[1]), w + sum(pads[2])
    t_out, h_out, w_out = (t - kt) // st + 1, (h - kh) // sh + 1, (w - kw) // sw + 1
    row = b * w_out * cin * kt * kh * kw * 4  # bytes of one unfolded output row (float32 or less)
    if row * h_out * t_out <= max_unfold_bytes:
        (ph, ph2), (pw, pw2) = pads[1], pads[2]
        if ph == ph2 and pw == pw2:  # symmetric spatial padding: let the convolution pad
            xt = _window(parts, [pads[0], (0, 0), (0, 0)], 0, t, 0, parts[0].shape[2])
            return mx.conv3d(xt, weight, stride=stride, padding=(0, ph, pw))
        return mx.conv3d(_window(parts, pads, 0, t, 0, h), weight, stride=stride)
    frames = max(1, max_unfold_bytes // (row * h_out))
    rows = h_out if frames > 1 or row * h_out <= max_unfold_bytes else max(1, max_unfold_bytes // row)
    out_frames = []
    for t0 in range(0, t_out, frames):
        t1 = min(t_out, t0 + frames)
        bands = []
        for r0 in range(0, h_out, rows):
            r1 = min(h_out, r0 + rows)
            xw = _window(parts, pads, t0 * st, (t1 - 1) * st + kt, r0 * sh, (r1 - 1) * sh + kh)
            piece = mx.conv3d(xw, weight, stride=stride)
            mx.eval(piece)
            bands.append(piece)
        out_frames.append(bands[0] if len(bands) == 1 else mx.concatenate(bands, axis=2))
    return out_frames[0] if len(out_frames) == 1 else mx.concatenate(out_frames, axis=1)


def conv3d_replicate_taps(x: mx.array, weight: mx.array, lead: int, padding: tuple[int, int] = (0, 0)) -> mx.array:
    """A stride-1 3-D convolution over frames padded by replicating the edge frames, as one 2-D convolution per
    temporal tap over the *unpadded* frames (folded into the batch), each shifted in time and summed.

    x: [B, T, H, W, C_in] (spatially padded by the caller, or zero-padded by the 2-D convolutions:
    ``padding`` = (rows, columns) each side); weight [C_out, kt, kh, kw, C_in]; ``lead``: copies of the first frame
    before the clip (the other kt - 1 - lead are copies of the last after it). Returns [B, T, H', W', C_out]: the
    values of a valid ``mx.conv3d`` over ``concat([x[:, :1]] * lead + [x] + [x[:, -1:]] * (kt - 1 - lead))``
    (summed in another order; the partial sums are in x's dtype). No padded copy of x is made; each shifted tap
    costs one gather of its output along time. ltx-core ``CausalConv3d`` pads frames this way. Raises ValueError
    unless 0 <= lead < kt.
    """
    b, t, h, w, c = x.shape
    kt = weight.shape[1]
    if not 0 <= lead < kt:
        raise ValueError(f"lead must be in 0..{kt - 1}, got {lead}")
    xb = x.reshape(b * t, h, w, c)
    y = None
    for dt in range(kt):
        part = mx.conv2d(xb, weight[:, dt], padding=padding)
        part = part.reshape(b, t, *part.shape[1:])
        if dt != lead:  # output frame i takes this tap from input frame clip(i + dt - lead)
            part = mx.take(part, mx.clip(mx.arange(t) + (dt - lead), 0, t - 1), axis=1)
        y = part if y is None else y + part
    return y


def conv3d_stacked_taps(x: mx.array, weight: mx.array, padding: tuple[int, int] = (0, 0)) -> mx.array:
    """A valid stride-1 3-D convolution as one 2-D convolution with the kt temporal taps stacked along channels:
    x [B, T, H, W, C_in] (time already padded) -> input [B*T', H, W, kt*C_in] (a kt-fold copy of x), weight
    [C_out, kt, kh, kw, C_in] -> [C_out, kh, kw, kt*C_in]; ``padding`` = zero (rows, columns) each side done by
    the 2-D convolution. Returns [B, T', H', W', C_out] with T' = T - kt + 1: the values of ``mx.conv3d`` (the
    same products, one reduction of kt*kh*kw*C_in terms, in another order)."""
    b, t, h, w, c = x.shape
    o, kt, kh, kw, _ = weight.shape
    n = t - kt + 1
    xs = x if kt == 1 else mx.concatenate([x[:, dt : dt + n] for dt in range(kt)], axis=-1)
    wt = weight.transpose(0, 2, 3, 1, 4).reshape(o, kh, kw, kt * c)
    y = mx.conv2d(xs.reshape(b * n, h, w, kt * c), wt, padding=padding)
    return y.reshape(b, n, *y.shape[1:])


def conv3d_summed_taps(x: mx.array, weight: mx.array, max_out_bytes: int = 1 << 30) -> mx.array:
    """Valid (unpadded, stride 1) 3-D convolution as a sum over the kt temporal taps of 2-D convolutions with the
    frames folded into the batch: x [B, T, H, W, C_in], weight [C_out, kt, kh, kw, C_in] -> [B, T-kt+1, H', W',
    C_out], the values of ``mx.conv3d`` (summed in another order). Output frames go in groups of at most
    ``max_out_bytes`` of output, each evaluated before the next."""
    b, t, h, w, c = x.shape
    o, kt, kh, kw, _ = weight.shape
    t_out, h_out, w_out = t - kt + 1, h - kh + 1, w - kw + 1
    step = max(1, max_out_bytes // max(1, b * h_out * w_out * o * x.dtype.size))
    pieces = []
    for t0 in range(0, t_out, step):
        n = min(step, t_out - t0)
        y = None
        for dt in range(kt):
            frames = x[:, t0 + dt : t0 + dt + n].reshape(b * n, h, w, c)
            part = mx.conv2d(frames, weight[:, dt])
            y = part if y is None else y + part
        y = y.reshape(b, n, h_out, w_out, o)
        if t_out > step:
            mx.eval(y)
        pieces.append(y)
    return pieces[0] if len(pieces) == 1 else mx.concatenate(pieces, axis=1)


def pad_height_width(x: mx.array, ph: int, pw: int, mode: str) -> mx.array:
    """x [B, T, H, W, C] padded by ``ph`` rows and ``pw`` columns each side: "zeros", or "reflect" (torch
    ``padding_mode="reflect"``: mirrored without repeating the edge; needs ph < H and pw < W)."""
    if mode == "zeros":
        return mx.pad(x, [(0, 0), (0, 0), (ph, ph), (pw, pw), (0, 0)])
    if ph:
        x = mx.concatenate([x[:, :, ph:0:-1], x, x[:, :, -2 : -ph - 2 : -1]], axis=2)
    if pw:
        x = mx.concatenate([x[:, :, :, pw:0:-1], x, x[:, :, :, -2 : -pw - 2 : -1]], axis=3)
    return x


CONV3D_MODES = ("native", "frames", "taps", "stacked")
"""How :func:`conv3d_replicate_frames` convolves (the same values, summed in other orders; docs/ltx2.md §4.5):

* native: ``mx.conv3d`` on the padded frames, in output chunks (:func:`conv3d`)
* frames: one ``mx.conv2d`` per temporal tap over the padded frames as a batch, summed (:func:`conv3d_summed_taps`)
* taps: one ``mx.conv2d`` per tap over the unpadded frames, shifted in time and summed (no padded copy; zero
  spatial padding inside the convolution) (:func:`conv3d_replicate_taps`)
* stacked: one ``mx.conv2d`` with the taps stacked along channels (:func:`conv3d_stacked_taps`)
"""


def conv3d_replicate_frames(
    x: mx.array, weight: mx.array, lead: int, padding: str = "zeros", mode: str = "native"
) -> mx.array:
    """A stride-1 3-D convolution of x [B, T, H, W, C_in] with weight [C_out, kt, kh, kw, C_in] over its frames
    padded by replicating the edge frames, ``lead`` copies of the first before the clip and kt - 1 - lead of the
    last after it, and kh // 2 rows, kw // 2 columns each side padded with ``padding`` ("zeros" or "reflect",
    :func:`pad_height_width`); ltx-core's ``CausalConv3d`` (causal: lead = kt - 1, else (kt - 1) // 2).
    ``mode``: the formulation, one of :data:`CONV3D_MODES`. Returns [B, T, H, W, C_out] (odd kh, kw) in x's
    dtype, without bias. Raises ValueError for an unknown mode, or unless 0 <= lead < kt.
    """
    _, kt, kh, kw, _ = weight.shape
    if mode not in CONV3D_MODES:
        raise ValueError(f"unknown conv3d mode {mode!r}; known: {', '.join(CONV3D_MODES)}")
    if not 0 <= lead < kt:
        raise ValueError(f"lead must be in 0..{kt - 1}, got {lead}")
    pad = (kh // 2, kw // 2) if padding == "zeros" and mode in ("taps", "stacked") else (0, 0)
    if mode == "taps":
        x = x if pad != (0, 0) else pad_height_width(x, kh // 2, kw // 2, padding)
        return conv3d_replicate_taps(x, weight, lead, pad)
    trail = kt - 1 - lead
    if lead or trail:
        parts = [mx.repeat(x[:, :1], lead, axis=1)] if lead else []
        parts.append(x)
        if trail:
            parts.append(mx.repeat(x[:, -1:], trail, axis=1))
        x = mx.concatenate(parts, axis=1)
    if pad == (0, 0):
        x = pad_height_width(x, kh // 2, kw // 2, padding)
    if mode == "frames":
        return conv3d_summed_taps(x, weight)
    if mode == "stacked":
        return conv3d_stacked_taps(x, weight, pad)
    return conv3d(x, weight)
