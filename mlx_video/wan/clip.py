"""Wan2.1's CLIP image encoder: the ViT-H/14 visual tower of open-clip xlm-roberta-large-vit-huge-14.

Follows ``wan/modules/clip.py`` of the official Wan2.1 code (``CLIPModel.visual``): images in [-1, 1]
are squashed to 224x224 with torch-style bicubic interpolation (``align_corners=False``, no
antialias, no crop), mapped to [0, 1] and normalised with the OpenAI CLIP mean/std; the tower is
conv patch embedding (no bias) -> prepend class token -> add positions -> pre-LayerNorm -> pre-LN
blocks (fused qkv, 1/sqrt(d) attention, exact-GELU MLP). Wan takes the hidden states **after the
first 31 of the 32 blocks**, with no post-norm and no head: ``[N, 257, 1280]``.
``transformers.CLIPVisionModel`` computes the same tower (``hidden_states[-2]``); diffusers' Wan2.1
I2V/FLF2V repos ship it as ``image_encoder/`` (see docs/wan.md §6, §12).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from mlx_video.io.images import bicubic_resize
from mlx_video.nn.attention import attention

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class CLIPVisionArgs:
    """Visual tower hyper-parameters; defaults are Wan2.1's ``clip_xlm_roberta_vit_h_14``."""

    image_size: int = 224
    patch_size: int = 14
    dim: int = 1280
    mlp_dim: int = 5120
    num_heads: int = 16
    num_layers: int = 32  # blocks in the checkpoint; the output is taken after num_layers - 1
    eps: float = 1e-5

    @classmethod
    def from_config(cls, config: dict) -> CLIPVisionArgs:
        """Read the official ``clip_xlm_roberta_vit_h_14`` kwargs (``vision_dim``, ``vision_heads``,
        ``vision_layers``, ``vision_mlp_ratio``, ...) or a transformers ``CLIPVisionConfig`` dict
        (``hidden_size``, ...; a full ``CLIPConfig`` dict is read through its ``vision_config``).

        Raises ValueError for an activation other than exact GELU (the only one Wan's tower uses).
        """
        config = config.get("vision_config", config)
        if "hidden_size" in config:
            act = config.get("hidden_act", "quick_gelu")  # transformers' default
            if act != "gelu":
                raise ValueError(f"CLIP hidden_act {act!r} is not supported (Wan's ViT-H uses exact 'gelu')")
            return cls(
                image_size=config["image_size"],
                patch_size=config["patch_size"],
                dim=config["hidden_size"],
                mlp_dim=config["intermediate_size"],
                num_heads=config["num_attention_heads"],
                num_layers=config["num_hidden_layers"],
                eps=config.get("layer_norm_eps", 1e-5),
            )
        if config.get("activation", "gelu") != "gelu":
            raise ValueError(f"CLIP activation {config['activation']!r} is not supported (expected 'gelu')")
        d = cls()
        dim = config.get("vision_dim", d.dim)
        return cls(
            image_size=config.get("image_size", d.image_size),
            patch_size=config.get("patch_size", d.patch_size),
            dim=dim,
            mlp_dim=int(dim * config.get("vision_mlp_ratio", 4)),
            num_heads=config.get("vision_heads", d.num_heads),
            num_layers=config.get("vision_layers", d.num_layers),
            eps=config.get("norm_eps", d.eps),
        )


# ---------------------------------------------------------------- preprocessing


def preprocess(images: mx.array, image_size: int = 224) -> mx.array:
    """Wan's CLIP preprocessing: images ``[N, H, W, 3]`` in [-1, 1] -> ``[N, S, S, 3]`` float32
    (bicubic squash to ``image_size``, no crop; ``·0.5 + 0.5``; (x - CLIP_MEAN) / CLIP_STD)."""
    x = bicubic_resize(images, image_size, image_size) * 0.5 + 0.5
    return (x - mx.array(CLIP_MEAN)) / mx.array(CLIP_STD)


# ---------------------------------------------------------------- model


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.to_qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def __call__(self, x: mx.array) -> mx.array:
        b, n, c = x.shape
        qkv = self.to_qkv(x).reshape(b, n, 3, self.num_heads, -1).transpose(2, 0, 3, 1, 4)
        out = attention(qkv[0], qkv[1], qkv[2])  # scale 1/sqrt(head_dim)
        return self.proj(out.transpose(0, 2, 1, 3).reshape(b, n, c))


class MLP(nn.Module):
    def __init__(self, dim: int, mlp_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, dim)

    def __call__(self, x: mx.array) -> mx.array:
        return self.fc2(nn.gelu(self.fc1(x)))  # exact (erf) GELU


class Block(nn.Module):
    def __init__(self, args: CLIPVisionArgs):
        super().__init__()
        self.norm1 = nn.LayerNorm(args.dim, eps=args.eps)
        self.attn = SelfAttention(args.dim, args.num_heads)
        self.norm2 = nn.LayerNorm(args.dim, eps=args.eps)
        self.mlp = MLP(args.dim, args.mlp_dim)

    def __call__(self, x: mx.array) -> mx.array:
        dtype = self.norm1.weight.dtype  # matmul/attention dtype = the loaded weights' dtype
        x = x + self.attn(self.norm1(x).astype(dtype)).astype(mx.float32)
        return x + self.mlp(self.norm2(x).astype(dtype)).astype(mx.float32)


class CLIPVisionEncoder(nn.Module):
    """The visual tower as Wan uses it (``VisionTransformer.forward(use_31_block=True)``).

    Holds all ``num_layers`` blocks of the checkpoint (so both layouts load strictly) and runs the
    first ``num_layers - 1``.
    """

    def __init__(self, args: CLIPVisionArgs):
        super().__init__()
        self.args = args
        n_tokens = (args.image_size // args.patch_size) ** 2 + 1
        self.patch_embedding = nn.Conv2d(3, args.dim, args.patch_size, stride=args.patch_size, bias=False)
        self.cls_embedding = mx.zeros((1, 1, args.dim))
        self.pos_embedding = mx.zeros((1, n_tokens, args.dim))
        self.pre_norm = nn.LayerNorm(args.dim, eps=args.eps)
        self.blocks = [Block(args) for _ in range(args.num_layers)]

    def __call__(self, pixels: mx.array) -> mx.array:
        """pixels: preprocessed ``[N, S, S, 3]`` (see ``preprocess``), S = ``image_size``.

        Returns ``[N, (S/patch)^2 + 1, dim]`` float32 (257 x 1280 for ViT-H/14 at 224), class token
        first, taken after block ``num_layers - 1`` without post-norm. Residual stream and norms
        are float32; matmuls and attention run in the weights' dtype.
        """
        dtype = self.pre_norm.weight.dtype
        x = self.patch_embedding(pixels.astype(dtype)).astype(mx.float32)
        n = x.shape[0]
        x = x.reshape(n, -1, self.args.dim)
        cls = mx.broadcast_to(self.cls_embedding.astype(mx.float32), (n, 1, self.args.dim))
        x = mx.concatenate([cls, x], axis=1) + self.pos_embedding.astype(mx.float32)
        x = self.pre_norm(x)
        for block in self.blocks[:-1]:
            x = block(x)
        return x.astype(mx.float32)

    def encode_images(self, images: mx.array) -> mx.array:
        """Wan's ``CLIPModel.visual``: images ``[N, H, W, 3]`` in [-1, 1] -> ``[N, 257, dim]`` float32."""
        return self(preprocess(images, self.args.image_size))


# ---------------------------------------------------------------- checkpoint names


def _conv(w: mx.array) -> mx.array:
    return w.transpose(0, 2, 3, 1)  # torch [O, I, kh, kw] -> MLX [O, kh, kw, I]


# Keys the reference never reads: Wan's forward stops before the post-norm and the projection
# head, and only the visual tower of the open-clip model is used (its text tower and logit scale
# are not). ``position_ids`` is an index buffer (arange) some transformers versions saved.
_UNUSED_OFFICIAL = re.compile(r"^(textual\..*|log_scale|visual\.head(\..*)?|visual\.post_norm\..*)$")
_UNUSED_HF = re.compile(
    r"^(vision_model\.post_layernorm\..*|visual_projection\..*|"
    r"vision_model\.embeddings\.position_ids)$"
)

_OFFICIAL_MLP = {"mlp.0": "mlp.fc1", "mlp.2": "mlp.fc2"}
_HF_BLOCK = {
    "layer_norm1": "norm1",
    "layer_norm2": "norm2",
    "self_attn.out_proj": "attn.proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


def _official(weights: dict[str, mx.array]) -> dict[str, mx.array]:
    out = {}
    for k, v in weights.items():
        if _UNUSED_OFFICIAL.match(k):
            continue
        name = k[len("visual.") :] if k.startswith("visual.") else k
        m = re.match(r"transformer\.(\d+)\.(mlp\.[02])\.(.+)$", name)
        if m:
            name = f"transformer.{m[1]}.{_OFFICIAL_MLP[m[2]]}.{m[3]}"
        name = re.sub(r"^transformer\.", "blocks.", name)
        out[name] = _conv(v) if name == "patch_embedding.weight" else v
    return out


def _hf(weights: dict[str, mx.array]) -> dict[str, mx.array]:
    out, qkv = {}, {}
    for k, v in weights.items():
        if _UNUSED_HF.match(k):
            continue
        m = re.match(r"vision_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$", k)
        if m and m[2] in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
            qkv.setdefault((m[1], m[3]), {})[m[2][len("self_attn.")]] = v  # 'q' | 'k' | 'v'
            continue
        if m and m[2] in _HF_BLOCK:
            out[f"blocks.{m[1]}.{_HF_BLOCK[m[2]]}.{m[3]}"] = v
        elif k == "vision_model.embeddings.patch_embedding.weight":
            out["patch_embedding.weight"] = _conv(v)
        elif k == "vision_model.embeddings.class_embedding":
            out["cls_embedding"] = v.reshape(1, 1, -1)
        elif k == "vision_model.embeddings.position_embedding.weight":
            out["pos_embedding"] = v[None]
        elif k.startswith("vision_model.pre_layrnorm."):
            out["pre_norm." + k.rsplit(".", 1)[1]] = v
        else:
            out[k] = v  # unknown: left for load_strict to name
    for (i, leaf), parts in qkv.items():
        name = f"blocks.{i}.attn.to_qkv.{leaf}"
        if set(parts) != {"q", "k", "v"}:  # incomplete: keep the pieces so load_strict names them
            out.update({f"vision_model.encoder.layers.{i}.self_attn.{p}_proj.{leaf}": t for p, t in parts.items()})
            continue
        out[name] = mx.concatenate([parts["q"], parts["k"], parts["v"]], axis=0)
    return out


def sanitize(weights: dict[str, mx.array], layout: str = "official") -> dict[str, mx.array]:
    """Map a CLIP checkpoint onto ``CLIPVisionEncoder``'s parameter names.

    layout "official": Wan2.1's ``models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth``
    (``visual.patch_embedding.weight``, ``visual.cls_embedding``, ``visual.pos_embedding``,
    ``visual.pre_norm.*``, ``visual.transformer.{i}.{norm1,attn.to_qkv,attn.proj,norm2,mlp.0,mlp.2}.*``).
    layout "hf": ``transformers.CLIPVisionModel`` (``vision_model.*``; diffusers' ``image_encoder/``);
    q/k/v projections are fused into one ``to_qkv`` in (q, k, v) order.
    Dropped, because the reference never reads them: ``textual.*``, ``log_scale``, ``visual.head``,
    ``visual.post_norm.*`` (official); ``vision_model.post_layernorm.*``, ``visual_projection.*``,
    ``vision_model.embeddings.position_ids`` (hf). Other unknown keys are passed on for
    ``load_strict`` to report. Conv weights go to MLX layout. Raises ValueError for an unknown layout.
    """
    if layout == "official":
        return _official(weights)
    if layout == "hf":
        return _hf(weights)
    raise ValueError(f"unknown CLIP layout {layout!r} (expected 'official' or 'hf')")
