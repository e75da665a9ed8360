"""Scaled dot-product attention on MLX's fused kernel."""

from __future__ import annotations

import mlx.core as mx


def attention(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    scale: float | None = None,
    mask: mx.array | None = None,
    dtype: mx.Dtype | None = None,
) -> mx.array:
    """softmax(q kᵀ · scale) v with ``mx.fast.scaled_dot_product_attention``.

    q: [B, H, Lq, D], k/v: [B, H, Lk, D]. ``scale`` defaults to 1/sqrt(D). ``dtype`` casts q/k/v
    first (bf16 in production runs; float32 in parity tests). Returns [B, H, Lq, D] in q/k/v's
    (cast) dtype. No mask is materialised unless one is given.
    """
    if scale is None:
        scale = q.shape[-1] ** -0.5
    if dtype is not None:
        q, k, v = q.astype(dtype), k.astype(dtype), v.astype(dtype)
    return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)
