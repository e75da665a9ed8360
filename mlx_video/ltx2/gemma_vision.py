"""Gemma 3's image path, for the i2v prompt enhancer: SigLIP vision tower + multi-modal projector, and the image
preprocessing the official enhancer applies (docs/ltx2.md §18).

Follows transformers 5.25 ``models/siglip/modeling_siglip.py`` (``SiglipVisionModel``, ``vision_use_head=False``)
and ``models/gemma3/modeling_gemma3.py`` (``Gemma3MultiModalProjector``, ``Gemma3Model.get_image_features``), and
the preprocessing of ltx-pipelines 1.0.0 ``generate_enhanced_prompt`` + transformers' ``Gemma3ImageProcessorPil``:

    image uint8 [H, W, 3] --long side to 896 (torch bilinear, uint8)--> --PIL bilinear squash to S x S-->
      --x/255, (x - mean)/std--> [1, S, S, 3] --patch conv (p x p, stride p) + position embedding-->
      [1, (S/p)^2, Dv] --N pre-LN encoder layers (full attention, gelu-tanh MLP), post LayerNorm-->
      --avg pool k x k on the (S/p)^2 grid--> [1, T, Dv] --Gemma RMSNorm (1 + w), @ W [Dv, Dt]--> [1, T, Dt]

Gemma 3 (google/gemma-3-12b-it, as ltx-core 1.0.0 pins it): S 896, p 14, Dv 1152, 27 layers, 16 heads, MLP 4304,
T = mm_tokens_per_image 256 (k 4), Dt 3840, mean = std = 0.5, no pan-and-scan (``Gemma3Processor``'s default).
The features replace the 256 ``<image_soft_token>`` embeddings of the prompt (unscaled, unlike text embeddings).

Weights: the Gemma 3 checkpoint's ``vision_tower.vision_model.*`` and ``multi_modal_projector.*`` (transformers 4.x
layout; 5.x adds ``model.``), loaded by :func:`sanitize`. Nothing here prints or writes files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_lm.models.gemma3_text import RMSNorm

ENHANCER_LONG_SIDE = 896  # ltx-pipelines generate_enhanced_prompt(image_long_side=896)


@dataclass(frozen=True)
class VisionArgs:
    """Vision tower, projector and image-processor settings (HF ``Gemma3Config.vision_config`` names, plus the
    multimodal keys and ``preprocessor_config.json``). Defaults: Gemma 3 12B as ltx-core 1.0.0 pins it
    (``GEMMA3_CONFIG_FOR_LTX``) and its processor config."""

    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_hidden_layers: int = 27
    num_attention_heads: int = 16
    num_channels: int = 3
    image_size: int = 896
    patch_size: int = 14
    layer_norm_eps: float = 1e-6
    mm_tokens_per_image: int = 256
    text_hidden_size: int = 3840
    image_token_id: int = 262144
    image_mean: tuple = (0.5, 0.5, 0.5)
    image_std: tuple = (0.5, 0.5, 0.5)
    rescale_factor: float = 1 / 255

    @classmethod
    def from_config(cls, config: dict, preprocessor: dict | None = None) -> VisionArgs:
        """From a Gemma 3 multimodal ``config.json`` dict and its ``preprocessor_config.json`` dict (or None: the
        Gemma 3 values; the square size is then ``image_size``). Raises ValueError for settings this port does not
        implement (pan-and-scan, a resize other than bilinear, a non-square size, a patch grid the token count
        does not tile)."""
        v = dict(config.get("vision_config") or {})  # vision_use_head: ignored, Gemma 3 reads the patch features
        names = {f for f in cls.__dataclass_fields__}
        kw = {k: v[k] for k in names & v.keys() if v[k] is not None}
        text = config.get("text_config") or {}
        if text.get("hidden_size"):
            kw["text_hidden_size"] = text["hidden_size"]
        for ours, theirs in (("mm_tokens_per_image", "mm_tokens_per_image"), ("image_token_id", "image_token_index")):
            if config.get(theirs) is not None:
                kw[ours] = config[theirs]
        p = dict(preprocessor or {})
        if p.get("do_pan_and_scan"):
            raise ValueError("preprocessor_config.json do_pan_and_scan=true: not implemented (Gemma3Processor: off)")
        if p.get("resample", 2) != 2:
            raise ValueError(f"preprocessor_config.json resample={p['resample']}: only bilinear (2) is implemented")
        size = p.get("size") or {}
        if size and size.get("height") != size.get("width"):
            raise ValueError(f"preprocessor_config.json size {size}: only square sizes are implemented")
        for k in ("image_mean", "image_std"):
            if p.get(k) is not None:
                kw[k] = tuple(float(x) for x in p[k])
        if p.get("rescale_factor") is not None:
            kw["rescale_factor"] = float(p["rescale_factor"])
        args = cls(**kw)
        if size and size.get("height") != args.image_size:
            raise ValueError(f"preprocessor size {size} does not match vision_config.image_size {args.image_size}")
        if args.mm_tokens_per_image < 1:
            raise ValueError(f"config mm_tokens_per_image={args.mm_tokens_per_image}: must be >= 1 (Gemma 3: 256)")
        side = math.isqrt(args.mm_tokens_per_image)
        grid = args.image_size // args.patch_size
        if side * side != args.mm_tokens_per_image or grid % side:
            raise ValueError(f"{args.mm_tokens_per_image} image tokens do not tile the {grid}x{grid} patch grid")
        return args


class SiglipAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def __call__(self, x: mx.array) -> mx.array:
        B, L, D = x.shape

        def split(t):
            return t.reshape(B, L, self.heads, -1).transpose(0, 2, 1, 3)

        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        o = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.out_proj(o.transpose(0, 2, 1, 3).reshape(B, L, D))


class SiglipMLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def __call__(self, x: mx.array) -> mx.array:
        return self.fc2(nn.gelu_approx(self.fc1(x)))  # gelu_pytorch_tanh


class SiglipLayer(nn.Module):
    def __init__(self, a: VisionArgs):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(a.hidden_size, eps=a.layer_norm_eps)
        self.self_attn = SiglipAttention(a.hidden_size, a.num_attention_heads)
        self.layer_norm2 = nn.LayerNorm(a.hidden_size, eps=a.layer_norm_eps)
        self.mlp = SiglipMLP(a.hidden_size, a.intermediate_size)

    def __call__(self, x: mx.array) -> mx.array:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class SiglipEmbeddings(nn.Module):
    def __init__(self, a: VisionArgs):
        super().__init__()
        self.patch_embedding = nn.Conv2d(a.num_channels, a.hidden_size, a.patch_size, stride=a.patch_size)
        self.position_embedding = nn.Embedding((a.image_size // a.patch_size) ** 2, a.hidden_size)

    def __call__(self, pixels: mx.array) -> mx.array:
        x = self.patch_embedding(pixels.astype(self.patch_embedding.weight.dtype))  # [B, g, g, D]
        B, g, _, D = x.shape
        return x.reshape(B, g * g, D) + self.position_embedding.weight  # patches row-major, as torch flatten(2)


class SiglipEncoder(nn.Module):
    def __init__(self, a: VisionArgs):
        super().__init__()
        self.layers = [SiglipLayer(a) for _ in range(a.num_hidden_layers)]


class SiglipVisionModel(nn.Module):
    """``vision_tower.vision_model``: pixels [B, S, S, 3] -> last hidden state [B, (S/p)^2, Dv]."""

    def __init__(self, a: VisionArgs):
        super().__init__()
        self.embeddings = SiglipEmbeddings(a)
        self.encoder = SiglipEncoder(a)
        self.post_layernorm = nn.LayerNorm(a.hidden_size, eps=a.layer_norm_eps)

    def __call__(self, pixels: mx.array) -> mx.array:
        x = self.embeddings(pixels)
        for layer in self.encoder.layers:
            x = layer(x)
        return self.post_layernorm(x)


class MultiModalProjector(nn.Module):
    """``Gemma3MultiModalProjector``: [B, g*g, Dv] -> avg pool to [B, T, Dv] -> RMSNorm -> [B, T, Dt]."""

    def __init__(self, a: VisionArgs):
        super().__init__()
        self.mm_input_projection_weight = mx.zeros((a.hidden_size, a.text_hidden_size))
        self.mm_soft_emb_norm = RMSNorm(a.hidden_size, eps=a.layer_norm_eps)
        self.grid = a.image_size // a.patch_size
        self.side = math.isqrt(a.mm_tokens_per_image)

    def __call__(self, x: mx.array) -> mx.array:
        B, _, D = x.shape
        g, t = self.grid, self.side
        k = g // t
        pooled = x.reshape(B, t, k, t, k, D).mean(axis=(2, 4)).reshape(B, t * t, D)
        n = self.mm_soft_emb_norm  # Gemma3RMSNorm: in float32, (1 + w) included
        normed = mx.fast.rms_norm(pooled.astype(mx.float32), 1.0 + n.weight.astype(mx.float32), n.eps).astype(x.dtype)
        return (normed @ self.mm_input_projection_weight).astype(x.dtype)


class GemmaVision(nn.Module):
    """Gemma 3's image encoder: :meth:`features` maps preprocessed pixels to the soft-token embeddings."""

    def __init__(self, args: VisionArgs):
        super().__init__()
        self.args = args
        self.vision_model = SiglipVisionModel(args)
        self.multi_modal_projector = MultiModalProjector(args)

    def tower(self, pixels: mx.array) -> mx.array:
        """pixels [B, S, S, 3] (normalised, :func:`preprocess`) -> SigLIP last hidden state [B, (S/p)^2, Dv]."""
        return self.vision_model(pixels)

    def features(self, pixels: mx.array) -> mx.array:
        """pixels [B, S, S, 3] -> image soft-token embeddings [B, mm_tokens_per_image, Dt] (weights' dtype)."""
        return self.multi_modal_projector(self.tower(pixels))


def sanitize(weights: dict[str, mx.array]) -> dict[str, mx.array]:
    """The vision part of a Gemma 3 checkpoint -> :class:`GemmaVision` names: ``vision_tower.vision_model.*`` ->
    ``vision_model.*``, ``multi_modal_projector.*`` kept (either with the 5.x ``model.`` prefix), the patch conv
    from torch's [out, in, p, p] to MLX's [out, p, p, in]. Every other key (the language model, the LM head, a
    SigLIP pooling head Gemma 3 never runs) is dropped; a missing vision key is left for load_strict."""
    out = {}
    for k, v in weights.items():
        k = k[len("model.") :] if k.startswith(("model.vision_tower.", "model.multi_modal_projector.")) else k
        if k.startswith("vision_tower.vision_model."):
            k = "vision_model." + k[len("vision_tower.vision_model.") :]
            if k.startswith("vision_model.head."):
                continue
            if k == "vision_model.embeddings.patch_embedding.weight" and v.ndim == 4:
                v = v.transpose(0, 2, 3, 1)
        elif not k.startswith("multi_modal_projector."):
            continue
        out[k] = v
    return out


def has_vision(keys) -> bool:
    """Whether a Gemma 3 checkpoint's key names include the vision tower (a text-only Gemma has none)."""
    return any(k.startswith(("vision_tower.", "model.vision_tower.")) for k in keys)


def _torch_bilinear_uint8(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [H, W, C] -> uint8 [height, width, C] as torch ``interpolate(mode="bilinear", align_corners=False)`` on
    a uint8 CPU tensor: two separable passes (width, then height), each with its weights in fixed point (int16,
    the most fractional bits that keep the largest weight below 2^15) and the result rounded and clamped to uint8
    (torch ``UpSampleKernel.cpp``, ``_separable_upsample_generic_Nd_kernel_impl_single_dim`` / the uint8 AVX
    kernel). float32 bilinear + rounding differs from it by one level on ~20% of the pixels."""
    x = np.asarray(image, dtype=np.uint8)

    def one_axis(a: np.ndarray, axis: int, n_out: int) -> np.ndarray:
        n_in = a.shape[axis]
        if n_in == n_out:
            return a
        scale = n_in / n_out  # area_pixel_compute_scale, align_corners=False (double)
        centers = scale * (np.arange(n_out, dtype=np.float64) + 0.5)
        lo = np.maximum((centers - 1.0 + 0.5).astype(np.int64), 0)  # support 1 (no antialias)
        hi = np.minimum((centers + 1.0 + 0.5).astype(np.int64), n_in)
        taps = int((hi - lo).max())
        j = lo[:, None] + np.arange(taps)[None]
        w = np.clip(1.0 - np.abs(j - centers[:, None] + 0.5), 0.0, None) * (j < hi[:, None])
        w = w / w.sum(1, keepdims=True)
        precision = 0
        for precision in range(22):
            if int(0.5 + w.max() * (1 << (precision + 1))) >= (1 << 15):
                break
        wi = np.trunc(w * (1 << precision) + np.where(w >= 0, 0.5, -0.5)).astype(np.int64)
        src = np.moveaxis(a, axis, 0).astype(np.int64)  # [n_in, ...]
        acc = np.full((n_out,) + src.shape[1:], 1 << (precision - 1), dtype=np.int64)
        for t in range(taps):
            acc += wi[:, t].reshape((-1,) + (1,) * (src.ndim - 1)) * src[np.minimum(j[:, t], n_in - 1)]
        return np.moveaxis(np.clip(acc >> precision, 0, 255).astype(np.uint8), 0, axis)

    return one_axis(one_axis(x, 1, width), 0, height)


def enhancer_image(image: np.ndarray, long_side: int = ENHANCER_LONG_SIDE) -> np.ndarray:
    """ltx-pipelines ``generate_enhanced_prompt``'s image: uint8 RGB [H, W, 3] resized (aspect kept) so that its
    long side is ``long_side`` (``resize_aspect_ratio_preserving``: target sides ``int(side * scale)``, bilinear
    to cover with sides rounded up, center crop), uint8. Raises ValueError for an array that is not [H, W, 3]."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"enhancer image must be RGB [H, W, 3], got shape {img.shape}")
    h, w = img.shape[:2]
    scale = long_side / float(max(h, w))
    th, tw = int(h * scale), int(w * scale)
    cover = max(th / h, tw / w)
    nh, nw = math.ceil(h * cover), math.ceil(w * cover)
    out = _torch_bilinear_uint8(img.astype(np.uint8), nh, nw)
    top, left = (nh - th) // 2, (nw - tw) // 2
    return out[top : top + th, left : left + tw]


def preprocess(image: np.ndarray, args: VisionArgs) -> mx.array:
    """uint8 RGB [H, W, 3] (the run's first conditioning image, as decoded) -> float32 pixels [1, S, S, 3]:
    :func:`enhancer_image`, then ``Gemma3ImageProcessorPil``: PIL bilinear resize to S x S (aspect not kept),
    ``x * rescale_factor`` (in float64, then float32), ``(x - mean) / std``."""
    from PIL import Image

    img = Image.fromarray(enhancer_image(image)).resize((args.image_size, args.image_size), Image.Resampling.BILINEAR)
    x = (np.asarray(img).astype(np.float64) * args.rescale_factor).astype(np.float32)
    x = (x - np.asarray(args.image_mean, np.float32)) / np.asarray(args.image_std, np.float32)
    return mx.array(x[None])
