"""The Wan 2.1 / 2.2 diffusion transformer (DiT), every released variant, in MLX.

Follows ``wan.modules.model.WanModel`` of the official Wan2.2 code (t2v, i2v without CLIP, ti2v
with per-token timesteps) and of the official Wan2.1 code (i2v / flf2v with CLIP image tokens,
``WanI2VCrossAttention`` and ``MLPProj``); diffusers' ``WanTransformer3DModel`` is the same
arithmetic under other names (docs/wan.md sections 2 and 12).

One forward, in the paper's terms: patchify the (latent ‖ y) video into tokens; embed the timestep
(sinusoid -> MLP) into six modulation vectors; per block, modulated LayerNorm -> self-attention with
3-D RoPE -> gated residual, LayerNorm -> cross-attention to the text (and image) tokens -> residual,
modulated LayerNorm -> GELU FFN -> gated residual; a modulated head; unpatchify to velocity.

Layout: channels-last. Latents [B, T, h, w, C]; tokens [B, L, C] in (t, h/2, w/2) row-major order.
Numerics: residual stream, time embedding, modulation, norms and head in float32; q/k/v/o, FFN,
text/image embeddings and attention in the weights' dtype (bf16 in production); RoPE in float32.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..distributed import current
from ..nn.attention import attention
from ..nn.blockwise import BlockWeights, run_blocks
from ..nn.embeddings import sinusoidal_embedding
from ..nn.lora import LoraKeyMap
from ..nn.rope import RopeTables, apply_rope_interleaved, nd_rope_tables

MODEL_TYPES = ("t2v", "i2v", "flf2v", "ti2v")


@dataclass
class WanModelArgs:
    """Hyper-parameters of one Wan DiT (docs/wan.md section 1).

    image_dim: CLIP feature width of the Wan2.1 image branch (1280), None without it.
    pos_embed_seq_len: FLF2V's learned position table over the 2x257 image tokens (514), else None.
    """

    model_type: str = "t2v"
    dim: int = 1536
    ffn_dim: int = 8960
    freq_dim: int = 256
    num_heads: int = 12
    num_layers: int = 30
    in_dim: int = 16
    out_dim: int = 16
    text_dim: int = 4096
    text_len: int = 512
    patch_size: tuple = (1, 2, 2)
    eps: float = 1e-6
    image_dim: int | None = None
    pos_embed_seq_len: int | None = None
    rope_theta: float = 10000.0

    def __post_init__(self):
        self.patch_size = tuple(int(p) for p in self.patch_size)
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {self.model_type!r}")
        if self.dim % self.num_heads or self.head_dim % 2:
            raise ValueError(f"dim {self.dim} / num_heads {self.num_heads} must give an even head dim")
        if self.pos_embed_seq_len is not None and self.image_dim is None:
            raise ValueError("pos_embed_seq_len (FLF2V) needs image_dim")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @classmethod
    def from_config(cls, config: Mapping, weights: Mapping | None = None) -> WanModelArgs:
        """Args from an official ``config.json`` (``_class_name: WanModel``) or a diffusers
        ``WanTransformer3DModel`` config.

        Wan2.1 I2V and Wan2.2 I2V-A14B both say ``model_type: i2v``; only the former has the CLIP
        image branch. An official config therefore gets it from ``config["image_dim"]`` if present,
        else from ``weights`` (a checkpoint dict or its keys: ``img_emb.*`` present), else none
        (a wrong guess then fails loudly in ``load_strict``). FLF2V always has it (1280, 514).
        Raises ValueError for settings no released model uses (no qk-norm, windowed attention, ...).
        """
        d = config  # not copied: a ConfigKeys records what is read
        if "num_attention_heads" in d:  # diffusers' own key name (official configs say num_heads)
            if d.get("qk_norm", "rms_norm_across_heads") != "rms_norm_across_heads":
                raise ValueError(f"unsupported qk_norm {d['qk_norm']!r}")
            dim = d["num_attention_heads"] * d["attention_head_dim"]
            image_dim, pos_len = d.get("image_dim"), d.get("pos_embed_seq_len")
            if image_dim is not None and d.get("added_kv_proj_dim", dim) != dim:
                raise ValueError(f"added_kv_proj_dim {d['added_kv_proj_dim']} != inner dim {dim}")
            in_dim = d.get("in_channels", 16)
            out_dim = d.get("out_channels") or in_dim
            model_type = d.get("model_type") or (
                "flf2v" if pos_len else "i2v" if image_dim or in_dim != out_dim else "ti2v" if out_dim == 48 else "t2v"
            )
            args = dict(
                model_type=model_type,
                dim=dim,
                num_heads=d["num_attention_heads"],
                in_dim=in_dim,
                out_dim=out_dim,
                image_dim=image_dim,
                pos_embed_seq_len=pos_len,
                patch_size=d.get("patch_size", (1, 2, 2)),
            )
            for k in ("ffn_dim", "freq_dim", "num_layers", "text_dim", "eps"):
                if k in d:
                    args[k] = d[k]
            if not d.get("cross_attn_norm", True):
                raise ValueError("cross_attn_norm=False is not supported")
            return cls(**args)
        if not d.get("qk_norm", True) or not d.get("cross_attn_norm", True):
            raise ValueError("qk_norm/cross_attn_norm False is not supported (no released model uses it)")
        if tuple(d.get("window_size", (-1, -1))) != (-1, -1):
            raise ValueError(f"windowed attention {d['window_size']} is not supported")
        args = {f.name: d[f.name] for f in fields(cls) if f.name in d}
        if args.get("model_type") == "flf2v":
            args.setdefault("image_dim", 1280)
            args.setdefault("pos_embed_seq_len", 514)
        elif args.get("model_type") == "i2v" and "image_dim" not in args and weights is not None:
            keys = set(weights)
            if any(k.startswith("img_emb.") for k in keys):
                args["image_dim"] = 1280
        return cls(**args)


# ----------------------------------------------------------------------------- layers


class RMSNorm(nn.Module):
    """x·rsqrt(mean(x²)+eps)·w over the last axis (all heads together), accumulated in float32.
    With bf16 activations the result is rounded once after the weight multiply; the reference
    rounds before it (one bf16 ulp; inside the 2e-2 bf16 budget, test_bf16_weights)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = mx.ones((dim,))

    def __call__(self, x: mx.array) -> mx.array:
        return mx.fast.rms_norm(x, self.weight.astype(x.dtype), self.eps)


def _ln(x: mx.array, eps: float) -> mx.array:
    """LayerNorm without affine over the last axis, float32 (``mx.fast.layer_norm``; a written-out
    two-pass form inside the compiled callers measured 1.56 vs 0.94 GiB of temporaries on CUDA at
    2x27280x3072, as its reductions do not fuse)."""
    return mx.fast.layer_norm(x.astype(mx.float32), None, None, eps)


@mx.compile
def _modulate(x: mx.array, shift: mx.array, scale: mx.array, eps: float, out_dtype: str) -> mx.array:
    """LN(x)·(1+scale)+shift in float32, cast to ``out_dtype`` (an ``mx`` dtype name). x [B, L, C];
    shift/scale [B, G, C] with G dividing L (G = 1: one timestep per sample; T: per latent frame;
    L: per token), broadcast over the L/G tokens of each group."""
    B, L, C = x.shape
    G = shift.shape[1]
    h = _ln(x.reshape(B, G, L // G, C), eps) * (1 + scale[:, :, None]) + shift[:, :, None]
    return h.astype(getattr(mx, out_dtype)).reshape(B, L, C)


@mx.compile
def _affine_ln(x: mx.array, weight: mx.array, bias: mx.array, eps: float, out_dtype: str) -> mx.array:
    f32 = mx.float32
    return (_ln(x, eps) * weight.astype(f32) + bias.astype(f32)).astype(getattr(mx, out_dtype))


class LayerNorm(nn.Module):
    """Affine LayerNorm computed in float32; the result is cast to ``dtype``."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = mx.ones((dim,))
        self.bias = mx.zeros((dim,))

    def __call__(self, x: mx.array, dtype: mx.Dtype = mx.float32) -> mx.array:
        return _affine_ln(x, self.weight, self.bias, self.eps, _name(dtype))


def _name(dtype: mx.Dtype) -> str:
    """'bfloat16' for mx.bfloat16 (compiled functions take dtypes only as names)."""
    return str(dtype).rsplit(".", 1)[-1]


@mx.compile
def _gated_add(x: mx.array, y: mx.array, gate: mx.array) -> mx.array:
    """x + y·gate in float32; x [B, L, C] float32, y [B, L, C] any dtype, gate [B, G, C]."""
    B, L, C = x.shape
    G = gate.shape[1]
    y = y.astype(mx.float32).reshape(B, G, L // G, C) * gate[:, :, None]
    return x + y.reshape(B, L, C)


def _heads(x: mx.array, n: int) -> mx.array:
    """[B, L, n·d] -> [B, n, L, d]."""
    B, L, _ = x.shape
    return x.reshape(B, L, n, -1).transpose(0, 2, 1, 3)


def _merge(x: mx.array) -> mx.array:
    """[B, n, L, d] -> [B, L, n·d]."""
    B, n, L, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, L, n * d)


class SelfAttention(nn.Module):
    """Multi-head self-attention with q/k RMSNorm (across heads) and 3-D RoPE on q and k."""

    def __init__(self, dim: int, num_heads: int, eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q, self.norm_k = RMSNorm(dim, eps), RMSNorm(dim, eps)

    def __call__(self, x: mx.array, rope: RopeTables, shard=None) -> mx.array:
        """``shard``: a :class:`mlx_video.distributed.TokenShard` when x holds one rank's tokens."""
        B, L, C = x.shape
        n = self.num_heads
        q = apply_rope_interleaved(self.norm_q(self.q(x)).reshape(B, L, n, -1), rope)
        k = apply_rope_interleaved(self.norm_k(self.k(x)).reshape(B, L, n, -1), rope)
        v = self.v(x).reshape(B, L, n, -1)
        q, k, v = (t.transpose(0, 2, 1, 3) for t in (q, k, v))
        out = attention(q, k, v) if shard is None else shard.attention(q, k, v, attention)
        return self.o(_merge(out))


class CrossAttention(nn.Module):
    """Attention from the video tokens to the 512 text tokens (no mask, no RoPE).

    With ``image=True`` (Wan2.1 i2v/flf2v, ``WanI2VCrossAttention``) the same query also attends to
    the CLIP image tokens through their own k_img/v_img (+ RMSNorm on k_img); the two attention
    outputs are summed before the shared output projection.
    """

    def __init__(self, dim: int, num_heads: int, eps: float, image: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q, self.norm_k = RMSNorm(dim, eps), RMSNorm(dim, eps)
        if image:
            self.k_img, self.v_img = nn.Linear(dim, dim), nn.Linear(dim, dim)
            self.norm_k_img = RMSNorm(dim, eps)

    def __call__(self, x: mx.array, context: mx.array, img: mx.array | None = None) -> mx.array:
        n = self.num_heads
        q = _heads(self.norm_q(self.q(x)), n)
        out = attention(q, _heads(self.norm_k(self.k(context)), n), _heads(self.v(context), n))
        if img is not None:
            out = out + attention(q, _heads(self.norm_k_img(self.k_img(img)), n), _heads(self.v_img(img), n))
        return self.o(_merge(out))


class FeedForward(nn.Module):
    """Linear -> act -> Linear (the DiT FFN and text embedding: GELU-tanh; time embedding: SiLU;
    image MLP: exact GELU)."""

    def __init__(self, dim: int, hidden: int, out: int | None = None, act=nn.gelu_approx):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, out or dim)
        self.act = act

    def __call__(self, x: mx.array) -> mx.array:
        return self.fc2(self.act(self.fc1(x)))


class WanBlock(nn.Module):
    """One DiT block (``WanAttentionBlock``). ``modulation`` [1, 6, C] is added to the per-sample /
    per-frame / per-token projection e0 to give shift, scale, gate of self-attention and of the FFN."""

    def __init__(self, args: WanModelArgs):
        super().__init__()
        self.eps = args.eps
        self.self_attn = SelfAttention(args.dim, args.num_heads, args.eps)
        self.norm_cross = LayerNorm(args.dim, args.eps)  # official "norm3", diffusers "norm2"
        self.cross_attn = CrossAttention(args.dim, args.num_heads, args.eps, image=args.image_dim is not None)
        self.ffn = FeedForward(args.dim, args.ffn_dim)
        self.modulation = mx.zeros((1, 6, args.dim))

    def __call__(
        self, x: mx.array, e0: mx.array, context: mx.array, rope: RopeTables, img: mx.array | None, shard=None
    ) -> mx.array:
        dt = _name(context.dtype)
        m = self.modulation.astype(mx.float32)[None] + e0  # [B, G, 6, C] float32
        shift_sa, scale_sa, gate_sa, shift_ff, scale_ff, gate_ff = (m[:, :, i] for i in range(6))
        x = _gated_add(x, self.self_attn(_modulate(x, shift_sa, scale_sa, self.eps, dt), rope, shard), gate_sa)
        x = x + self.cross_attn(self.norm_cross(x, context.dtype), context, img)
        return _gated_add(x, self.ffn(_modulate(x, shift_ff, scale_ff, self.eps, dt)), gate_ff)


class Head(nn.Module):
    """Modulated LayerNorm (shift, scale = modulation + e, with e the time embedding) and the
    output projection to patch·out_dim values per token; float32 as in the reference."""

    def __init__(self, args: WanModelArgs):
        super().__init__()
        self.eps = args.eps
        self.proj = nn.Linear(args.dim, math.prod(args.patch_size) * args.out_dim)
        self.modulation = mx.zeros((1, 2, args.dim))

    def __call__(self, x: mx.array, e: mx.array) -> mx.array:
        m = self.modulation.astype(mx.float32)[None] + e[:, :, None]  # [B, G, 2, C]
        return self.proj(_modulate(x, m[:, :, 0], m[:, :, 1], self.eps, "float32")).astype(mx.float32)


class PatchEmbedding(nn.Module):
    """Conv3d with kernel = stride = patch_size, done as patchify + matmul (same arithmetic).
    ``weight`` is in MLX conv layout [C, pt, ph, pw, in_dim]."""

    def __init__(self, in_dim: int, dim: int, patch_size: tuple):
        super().__init__()
        self.patch_size = patch_size
        self.weight = mx.zeros((dim, *patch_size, in_dim))
        self.bias = mx.zeros((dim,))

    def __call__(self, x: mx.array) -> mx.array:
        """x [B, T, h, w, in_dim] -> tokens [B, L, C] in the weights' dtype, (t, h, w) row-major."""
        B, T, H, W, c = x.shape
        pt, ph, pw = self.patch_size
        x = x.reshape(B, T // pt, pt, H // ph, ph, W // pw, pw, c).transpose(0, 1, 3, 5, 2, 4, 6, 7)
        x = x.reshape(B, -1, pt * ph * pw * c).astype(self.weight.dtype)
        return x @ self.weight.reshape(self.weight.shape[0], -1).T + self.bias


class ImageEmbedding(nn.Module):
    """Wan2.1 ``MLPProj``: LayerNorm -> Linear -> GELU (exact) -> Linear -> LayerNorm, torch-default
    eps 1e-5; FLF2V first adds ``emb_pos`` [1, 514, image_dim] to the 2x257 CLIP tokens."""

    def __init__(self, image_dim: int, dim: int, pos_len: int | None):
        super().__init__()
        self.norm_in = LayerNorm(image_dim, 1e-5)
        self.mlp = FeedForward(image_dim, image_dim, dim, act=nn.gelu)
        self.norm_out = LayerNorm(dim, 1e-5)
        if pos_len is not None:
            self.emb_pos = mx.zeros((1, pos_len, image_dim))

    def __call__(self, x: mx.array, dtype: mx.Dtype) -> mx.array:
        if "emb_pos" in self:
            if x.shape[1] != self.emb_pos.shape[1]:
                raise ValueError(
                    f"FLF2V expects {self.emb_pos.shape[1]} CLIP tokens (first then last image), got {x.shape[1]}"
                )
            x = x.astype(mx.float32) + self.emb_pos.astype(mx.float32)
        return self.norm_out(self.mlp(self.norm_in(x, dtype)), dtype)


# ----------------------------------------------------------------------------- model


class WanModel(nn.Module):
    """The Wan DiT. Call order per run: ``rope_tables`` and ``embed_text`` (and ``embed_image``)
    once, then ``__call__`` per denoising step.

    The compute dtype is the weights' dtype (cast with ``set_dtype``); float32 state stays float32.
    ``block_weights``: a :class:`mlx_video.nn.blockwise.BlockWeights` over ``blocks`` (streamed or
    per-block dequantized weights), or None (resident weights as loaded).
    """

    block_weights: BlockWeights | None = None

    def __init__(self, args: WanModelArgs):
        super().__init__()
        self.args = args
        C = args.dim
        self.patch_embedding = PatchEmbedding(args.in_dim, C, args.patch_size)
        self.text_embedding = FeedForward(args.text_dim, C, C)
        self.time_embedding = FeedForward(args.freq_dim, C, C, act=nn.silu)
        self.time_projection = nn.Linear(C, 6 * C)
        self.blocks = [WanBlock(args) for _ in range(args.num_layers)]
        self.head = Head(args)
        if args.image_dim is not None:
            self.img_emb = ImageEmbedding(args.image_dim, C, args.pos_embed_seq_len)

    @property
    def dtype(self) -> mx.Dtype:
        """Compute dtype: that of the (never quantized) norm weights."""
        return self.blocks[0].self_attn.norm_q.weight.dtype if self.blocks else mx.float32

    def rope_tables(self, grid: Sequence[int], t_positions: Sequence[int] | None = None) -> RopeTables:
        """Self-attention RoPE for a post-patch token grid ``(T, h/2, w/2)``.

        Positions are arange per axis; ``t_positions`` (T ints) replaces the temporal one, e.g.
        ``T-1-i`` (WanFM reversed time) or musubi's one-frame ``f_indices``. Head-dim split
        d_t = d - 4·(d//6), d_h = d_w = 2·(d//6), theta 10000, interleaved pairs (docs/wan.md 2.4).
        Returns :class:`RopeTables` (float32, see nn/rope.py). Raises ValueError on a length mismatch.
        """
        T, H, W = (int(g) for g in grid)
        t_pos = np.arange(T) if t_positions is None else np.asarray(t_positions).reshape(-1)
        if len(t_pos) != T:
            raise ValueError(f"t_positions has {len(t_pos)} entries for {T} latent frames")
        d = self.args.head_dim
        dims = (d - 4 * (d // 6), 2 * (d // 6), 2 * (d // 6))
        return nd_rope_tables((t_pos, np.arange(H), np.arange(W)), dims, self.args.rope_theta)

    def embed_text(self, context) -> mx.array:
        """Text tokens for cross-attention: [B, text_len, C] in the compute dtype.

        context: list of B arrays [n_i, text_dim] (n_i <= text_len; T5 output trimmed to the prompt),
        or a padded [B, text_len, text_dim] array. Each is zero-padded to text_len rows that are
        *not* masked: the padding rows become the MLP's bias response, as in the reference (docs/wan.md 2.2).
        """
        n, dt = self.args.text_len, self.dtype
        if isinstance(context, mx.array) and context.ndim == 3:
            context = list(context)
        rows = []
        for c in context:
            if c.ndim != 2 or c.shape[0] > n or c.shape[1] != self.args.text_dim:
                raise ValueError(f"text context must be [n <= {n}, {self.args.text_dim}], got {tuple(c.shape)}")
            rows.append(mx.pad(c.astype(dt), [(0, n - c.shape[0]), (0, 0)]))
        return self.text_embedding(mx.stack(rows))

    def embed_image(self, clip_fea: mx.array) -> mx.array:
        """CLIP image tokens (Wan2.1 i2v/flf2v): clip_fea [B, 257·k, image_dim] (CLIP ViT-H penultimate
        features; FLF2V: first image's 257 then last image's 257) -> [B, 257·k, C] in the compute dtype.
        Pass the result as ``img`` to ``__call__``. Raises ValueError for models without the branch."""
        if "img_emb" not in self:
            raise ValueError(f"this {self.args.model_type} model has no CLIP image branch")
        return self.img_emb(clip_fea, self.dtype)

    def _time_embedding(self, t, B: int, T: int, L: int) -> tuple[mx.array, mx.array]:
        """e [B, G, C] and e0 [B, G, 6, C] (float32) for G = 1, T or L timestep groups."""
        tt = np.asarray(t, dtype=np.float64)
        tt = tt.reshape(-1, 1) if tt.ndim <= 1 else tt
        if tt.ndim != 2 or tt.shape[0] not in (1, B) or tt.shape[1] not in (1, T, L):
            raise ValueError(f"t must be [B], [B, T={T}] or [B, L={L}], got shape {np.shape(t)}")
        if tt.shape[1] == L != T:  # per token: use the per-frame form when it is the same thing
            per_frame = tt.reshape(tt.shape[0], T, L // T)
            if (per_frame == per_frame[:, :, :1]).all():
                tt = per_frame[:, :, 0]
        tt = np.broadcast_to(tt, (B, tt.shape[1]))
        e = self.time_embedding(sinusoidal_embedding(tt, self.args.freq_dim))
        e0 = self.time_projection(nn.silu(e)).astype(mx.float32)
        return e.astype(mx.float32), e0.reshape(B, tt.shape[1], 6, -1)

    def __call__(
        self,
        x: mx.array,
        t,
        context: mx.array,
        rope: RopeTables,
        y: mx.array | None = None,
        img: mx.array | None = None,
        sp=None,
    ) -> mx.array:
        """Flow velocity for latent ``x``.

        x: [B, T, h, w, C_lat] float32 (h, w even). y: optional [B, T, h, w, C_y] concatenated on
        channels first (i2v/flf2v: 4 mask + 16 latent). t: [B] (one timestep per sample), [B, T]
        (per latent frame, the efficient form) or [B, L] (per token, L = T·h/2·w/2), values 0..1000;
        a batch of 1 broadcasts. context: ``embed_text`` output [B or 1, text_len, C]. rope:
        ``rope_tables((T, h/2, w/2))``. img: ``embed_image`` output, required exactly when the
        model has the CLIP branch. sp: a :class:`mlx_video.distributed.SequenceParallel` (default: the
        one ``distributed.active`` set, if any); each rank
        then runs the blocks on its slice of the tokens (and RoPE rows) and returns the whole
        result, equal to the one-device one. Returns v [B, T, h, w, out_dim] float32.
        Raises ValueError on inconsistent shapes.
        """
        if y is not None:
            x = mx.concatenate([x, y.astype(x.dtype)], axis=-1)
        B, T, H, W, c = x.shape
        pt, ph, pw = self.args.patch_size
        if c != self.args.in_dim or T % pt or H % ph or W % pw:
            raise ValueError(
                f"input [B, T, h, w, C] = {x.shape} does not fit in_dim {self.args.in_dim} "
                f"and patch {self.args.patch_size}"
            )
        grid = (T // pt, H // ph, W // pw)
        L = math.prod(grid)
        if rope.even.shape[0] != L:
            raise ValueError(f"rope tables have {rope.even.shape[0]} rows for {L} tokens {grid}")
        if (img is None) != ("img_emb" not in self):
            raise ValueError(
                "img (CLIP tokens from embed_image) is required by, and only by, i2v/flf2v models with the CLIP branch"
            )
        context = mx.broadcast_to(context, (B, *context.shape[1:])) if context.shape[0] != B else context
        if img is not None and img.shape[0] != B:
            img = mx.broadcast_to(img, (B, *img.shape[1:]))

        e, e0 = self._time_embedding(t, B, grid[0], L)
        h = self.patch_embedding(x).astype(mx.float32)
        sp = current(sp)
        shard = sp.split(L) if sp is not None else None
        if shard is not None:  # this rank's tokens, RoPE rows and modulation groups
            h, e, e0 = shard.take(h), shard.groups(e), shard.groups(e0)
            rope = type(rope)(shard.take(rope.even, 0), shard.take(rope.odd, 0))
        # block by block (mx.eval after each): peak 26.3 -> 15.7 GiB at 27,280 tokens for +2.6% time (H100)
        h = run_blocks(
            self.blocks, lambda block, h: block(h, e0, context, rope, img, shard), h, self.block_weights, B * h.shape[1]
        )
        out = self.head(h, e)  # [B, L, pt·ph·pw·out_dim]
        out = shard.gather(out) if shard is not None else out
        out = out.reshape(B, *grid, pt, ph, pw, self.args.out_dim).transpose(0, 1, 4, 2, 5, 3, 6, 7)
        return out.reshape(B, T, H, W, self.args.out_dim)


# ----------------------------------------------------------------------------- checkpoints

_BLOCK = r"^(blocks\.\d+\.)"
_RULES = {
    "official": [
        (r"^(text|time)_embedding\.0\.", r"\1_embedding.fc1."),
        (r"^(text|time)_embedding\.2\.", r"\1_embedding.fc2."),
        (r"^time_projection\.1\.", "time_projection."),
        (r"^head\.head\.", "head.proj."),
        (_BLOCK + r"norm3\.", r"\1norm_cross."),
        (_BLOCK + r"ffn\.0\.", r"\1ffn.fc1."),
        (_BLOCK + r"ffn\.2\.", r"\1ffn.fc2."),
        (r"^img_emb\.proj\.0\.", "img_emb.norm_in."),
        (r"^img_emb\.proj\.1\.", "img_emb.mlp.fc1."),
        (r"^img_emb\.proj\.3\.", "img_emb.mlp.fc2."),
        (r"^img_emb\.proj\.4\.", "img_emb.norm_out."),
    ],
    "diffusers": [
        (r"^condition_embedder\.time_embedder\.linear_(\d)\.", r"time_embedding.fc\1."),
        (r"^condition_embedder\.time_proj\.", "time_projection."),
        (r"^condition_embedder\.text_embedder\.linear_(\d)\.", r"text_embedding.fc\1."),
        (r"^condition_embedder\.image_embedder\.norm1\.", "img_emb.norm_in."),
        (r"^condition_embedder\.image_embedder\.ff\.net\.0\.proj\.", "img_emb.mlp.fc1."),
        (r"^condition_embedder\.image_embedder\.ff\.net\.2\.", "img_emb.mlp.fc2."),
        (r"^condition_embedder\.image_embedder\.norm2\.", "img_emb.norm_out."),
        (r"^condition_embedder\.image_embedder\.pos_embed$", "img_emb.emb_pos"),
        (r"^proj_out\.", "head.proj."),
        (r"^scale_shift_table$", "head.modulation"),
        (_BLOCK + r"scale_shift_table$", r"\1modulation"),
        (_BLOCK + r"attn1\.", r"\1self_attn."),
        (_BLOCK + r"attn2\.", r"\1cross_attn."),
        (r"\.to_([qkv])\.", r".\1."),
        (r"\.to_out\.0\.", ".o."),
        (r"\.add_([kv])_proj\.", r".\1_img."),
        (r"\.norm_added_k\.", ".norm_k_img."),
        (_BLOCK + r"norm2\.", r"\1norm_cross."),  # diffusers swaps norm2 (cross-attn LN) and norm3
        (_BLOCK + r"ffn\.net\.0\.proj\.", r"\1ffn.fc1."),
        (_BLOCK + r"ffn\.net\.2\.", r"\1ffn.fc2."),
    ],
}
_RULES = {k: [(re.compile(p), r) for p, r in v] for k, v in _RULES.items()}


def sanitize(weights: Mapping[str, mx.array], layout: str) -> dict[str, mx.array]:
    """Map a Wan DiT checkpoint to this module's parameter names and MLX layouts.

    layout "official": original WanModel names (``blocks.N.self_attn.q``, ``norm3`` = cross-attn LN,
    ``ffn.0/2``, ``head.head``, ``img_emb.proj.0/1/3/4``, ``img_emb.emb_pos``, ...); "diffusers":
    ``WanTransformer3DModel`` names (``attn1/attn2``, ``norm2`` = cross-attn LN, ``condition_embedder.*``,
    ``proj_out``, ``scale_shift_table``, ``add_k_proj``, ...). The patch-embedding Conv3d weight goes
    from torch [O, I, kt, kh, kw] to MLX [O, kt, kh, kw, I]. Keys not recognised pass through
    unchanged (``load_strict`` then names them). Dropped on purpose: diffusers' ``attn2.norm_added_q``
    (never used by either reference; diffusers itself ignores it on load). Raises ValueError for an
    unknown layout.
    """
    if layout not in _RULES:
        raise ValueError(f"layout must be one of {sorted(_RULES)}, got {layout!r}")
    out = {}
    for key, w in weights.items():
        if layout == "diffusers" and ".norm_added_q." in key:
            continue
        for pat, rep in _RULES[layout]:
            key = pat.sub(rep, key)
        if key == "patch_embedding.weight" and w.ndim == 5:
            w = w.transpose(0, 2, 3, 4, 1)
        out[key] = w
    return out


def lora_key_map() -> LoraKeyMap:
    """How Wan DiT LoRA files name their modules (:class:`mlx_video.nn.lora.LoraKeyMap`): official names
    (musubi-tuner, original-key and ComfyUI files) or diffusers names (``transformer.blocks.N.attn1.to_q``),
    resolved through :func:`sanitize`; alpha / rank scaling."""
    return LoraKeyMap(
        sanitize,
        {"official": "", "diffusers": ""},
        ("model.diffusion_model.", "diffusion_model.", "transformer.", "base_model.model."),
    )
