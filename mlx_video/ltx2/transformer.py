"""LTX-2 / LTX-2.3 audio+video diffusion transformer ("LTXModel") in MLX.

Follows ``ltx_core.model.transformer`` (ltx-core 1.0.0: model.py, transformer.py, transformer_args.py,
attention.py, adaln.py) as described in docs/ltx2.md §2. One stack of blocks carries a
video stream and (optionally) an audio stream; each block runs, per stream, AdaLN-modulated
self-attention, text cross-attention, then audio<->video cross-attention, then the AdaLN FFN.
The network predicts a velocity; :func:`to_x0` turns it into x0 as ltx-core's X0Model does.

Numerics: the residual streams, AdaLN arithmetic, norms and RoPE are float32 (the modulation tables are stored
in the weights' dtype and added in float32); linear layers and attention run in the weights' dtype (bf16 in
production, float32 in the parity tests).
RoPE tables are inputs (:func:`mlx_video.ltx2.rope.rope_tables`, split layout of :mod:`mlx_video.nn.rope`), built once
per run or stage. The hyper-parameters and their config names are in :mod:`mlx_video.ltx2.config`, the checkpoints'
weight names in :mod:`mlx_video.ltx2.transformer_keys`.
Evaluation is paced inside the block loop (:class:`mlx_video.nn.evaluation.SubstepPacing` at :data:`PHASES`,
docs/ltx2.md §2.9): MLX keeps a queued kernel's inputs until it has run, so how far evaluation runs ahead sets the
activation memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_video.distributed import current
from mlx_video.ltx2.config import DIFFUSERS_KEYS, LTX_CORE_KEYS, LTXModelArgs  # noqa: F401  (re-exported)
from mlx_video.ltx2.rope import LTXRope, fractional_angles, rope_table, rope_tables  # noqa: F401  (re-exported)
from mlx_video.ltx2.transformer_keys import (  # noqa: F401  (re-exported)
    LIGHTRICKS_PREFIX,
    OTHER_MODULES,
    lora_key_map,
    sanitize,
)
from mlx_video.nn.attention import attention
from mlx_video.nn.blockwise import BlockWeights, run_blocks
from mlx_video.nn.embeddings import sinusoidal_embedding
from mlx_video.nn.evaluation import Pace, SubstepPacing, no_pace
from mlx_video.nn.rope import RopeTable

F32 = mx.float32


# ----------------------------------------------------------------------------------------------
# inputs


@dataclass
class Modality:
    """One stream's inputs (video or audio), as ltx-core's ``Modality``.

    latent: [B, T, C_in] patchified tokens (grid tokens, then any appended guiding tokens).
    timesteps: per-token noise level in [0, 1], [B, T] or [B, T, 1] (``denoise_mask * sigma``);
        [B] or [B, 1] for one value per item.
    sigma: [B] the step's global sigma. It drives LTX-2.3's prompt AdaLN and the *other* stream's
        audio<->video cross-attention modulation.
    context: [B, S, caption_channels] (LTX-2, projected inside) or [B, S, cross_attention_dim].
    attention_bias: None, or an additive self-attention bias [B, 1, T, T] float32 (0 = full attention, large
        negative = masked): :func:`attention_bias` of a [0, 1] mask (ltx-core ``Modality.attention_mask``,
        IC-LoRA's conditioning attention strength; docs/ltx2.md §2.8).
    """

    latent: mx.array
    timesteps: mx.array
    sigma: mx.array
    context: mx.array
    attention_bias: mx.array | None = None


def attention_bias(mask: mx.array) -> mx.array:
    """A [0, 1] self-attention mask [B, T, T] -> additive bias [B, 1, T, T] float32 as ltx-core's
    ``_prepare_self_attention_mask``: ``log(max(m, tiny))`` where m > 0, the float32 minimum where m <= 0."""
    m = mask.astype(F32)
    tiny, low = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).min)
    return mx.where(m > 0, mx.log(mx.maximum(m, tiny)), low)[:, None]


KINDS = ("video_self_attn", "audio_self_attn", "a2v_cross_attn", "v2a_cross_attn")


@dataclass(frozen=True)
class Perturbations:
    """Per-batch-item guidance perturbations (ltx-core ``BatchedPerturbationConfig``).

    ``items[b]`` maps a kind in :data:`KINDS` to the block indices where it applies (None = every
    block). ``*_self_attn`` (STG): the self-attention output is replaced by its value projection
    (gate and output projection still applied). ``*_cross_attn`` (modality isolation): the
    audio->video or video->audio residual is dropped.
    Example: ``Perturbations(({}, {"video_self_attn": [28], "audio_self_attn": [28]}))``;
    ``Perturbations()`` perturbs nothing.
    """

    items: tuple = field(default_factory=tuple)

    def __post_init__(self):
        for item in self.items:
            bad = set(item) - set(KINDS)
            if bad:
                raise ValueError(f"unknown perturbation kinds {sorted(bad)}; known: {KINDS}")

    def _hit(self, kind: str, block: int) -> list[bool]:
        return [kind in it and (it[kind] is None or block in it[kind]) for it in self.items]

    def all(self, kind: str, block: int) -> bool:
        hits = self._hit(kind, block)
        return bool(hits) and all(hits)

    def keep(self, kind: str, block: int) -> mx.array | None:
        """[B, 1, 1] float32, 0 for the items perturbed by ``kind`` in ``block``; None if none is."""
        hits = self._hit(kind, block)
        if not any(hits):
            return None
        return mx.array([0.0 if h else 1.0 for h in hits], dtype=F32)[:, None, None]


# ----------------------------------------------------------------------------------------------
# layers


def _wdtype(layer: nn.Module) -> mx.Dtype:
    return layer.scales.dtype if hasattr(layer, "scales") else layer.weight.dtype


def _lin(layer: nn.Module, x: mx.array) -> mx.array:
    """Apply a (possibly quantized) linear layer in its weights' dtype."""
    return layer(x.astype(_wdtype(layer)))


def _rms(x: mx.array, eps: float) -> mx.array:
    return mx.fast.rms_norm(x.astype(F32), None, eps)


class RMSNorm(nn.Module):
    """RMSNorm with a learned weight, computed in float32."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = mx.ones((dim,))
        self.eps = eps

    def __call__(self, x: mx.array) -> mx.array:
        return mx.fast.rms_norm(x.astype(F32), self.weight.astype(F32), self.eps)


@mx.compile
def _norm_rope(x: mx.array, weight: mx.array, cos: mx.array, sin: mx.array, eps: float) -> mx.array:
    """q/k RMSNorm then split RoPE (``(a, b) -> (a cos - b sin, b cos + a sin)`` on the halves of each head's
    chunk), float32 arithmetic, cast back to x's dtype. RoPE is linear and the norm scales each token by one
    number r = rsqrt(mean(x²) + eps), so this computes ``r · rope(x ⊙ weight)``: one [B, T, 1] float32
    reduction, then a single elementwise kernel over [B, T, heads, 2, half] views of x and weight (``swap``:
    the halves exchanged, a strided view) that writes x's dtype. No float32 [B, T, D] copy of x, of the
    normed x or of the halves (the same values as norm-then-rotate up to float32 rounding)."""
    b, t, d = x.shape
    h, half = cos.shape[2], cos.shape[3]
    xf = x.astype(F32)
    r = mx.rsqrt(mx.mean(xf * xf, axis=-1, keepdims=True) + eps)[..., None, None]  # [B, T, 1, 1, 1]
    xr, wr = x.reshape(b, t, h, 2, half), weight.reshape(h, 2, half)
    y = xr.astype(F32) * wr.astype(F32)
    swapped = xr[:, :, :, ::-1].astype(F32) * wr[:, ::-1].astype(F32)
    sign = mx.array([-1.0, 1.0], dtype=F32)[:, None]  # [2, 1]: -sin on the first half, +sin on the second
    out = r * (y * cos[:, :, :, None] + swapped * (sin[:, :, :, None] * sign))
    return out.reshape(b, t, d).astype(x.dtype)


@mx.compile
def _head_gates(out: mx.array, logits: mx.array) -> mx.array:
    """out [B, T, H, d] · 2 sigmoid(logits [B, T, H]) in float32, written in out's dtype (one kernel)."""
    gates = 2.0 * mx.sigmoid(logits.astype(F32))
    return (out.astype(F32) * gates[..., None]).astype(out.dtype)


class Attention(nn.Module):
    """Multi-head attention with q/k RMSNorm across heads, split RoPE and optional per-head gate."""

    def __init__(self, query_dim: int, context_dim: int, heads: int, dim_head: int, eps: float, gated: bool):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.q_norm = RMSNorm(inner, eps)
        self.k_norm = RMSNorm(inner, eps)
        self.to_q = nn.Linear(query_dim, inner)
        self.to_k = nn.Linear(context_dim, inner)
        self.to_v = nn.Linear(context_dim, inner)
        self.to_out = nn.Linear(inner, query_dim)
        if gated:
            self.to_gate_logits = nn.Linear(query_dim, heads)

    def _heads(self, x: mx.array) -> mx.array:
        b, t, _ = x.shape
        return x.reshape(b, t, self.heads, -1).transpose(0, 2, 1, 3)

    def __call__(
        self,
        x: mx.array,
        context: mx.array | None = None,
        pe: RopeTable | None = None,
        k_pe: RopeTable | None = None,
        keep: mx.array | None = None,
        skip: bool = False,
        shard=None,
        bias: mx.array | None = None,
        pace: Callable[..., None] | None = None,
    ) -> mx.array:
        """x: [B, T, query_dim] float32; context: [B, S, context_dim] (None: self-attention).
        ``shard`` (:class:`mlx_video.distributed.TokenShard`): the keys' tokens are this rank's slice
        (and so are the queries' in self-attention); attention still covers the whole sequence.
        ``bias``: additive attention bias [B, 1, T, S] (no sequence parallelism with a bias).

        ``pe`` rotates q (and k unless ``k_pe`` is given). STG: ``skip`` replaces the attention
        output by v for every item; ``keep`` ([B,1,1], 0 = replace) does it per item. ``pace(q, k, v)``,
        when given, is called with the projected (normed, rotated) q, k, v before the attention itself.
        Returns [B, T, query_dim] in the weights' dtype.
        """
        context = x if context is None else context
        b, t, _ = x.shape
        v = _lin(self.to_v, context)
        if skip:
            out = v
        else:
            if pe is not None:
                kp = pe if k_pe is None else k_pe
                q = _norm_rope(_lin(self.to_q, x), self.q_norm.weight, pe.cos, pe.sin, self.q_norm.eps)
                k = _norm_rope(_lin(self.to_k, context), self.k_norm.weight, kp.cos, kp.sin, self.k_norm.eps)
            else:
                q = self.q_norm(_lin(self.to_q, x))
                k = self.k_norm(_lin(self.to_k, context))
            if pace is not None:
                pace(q, k, v)
            attend = partial(attention, dtype=v.dtype, mask=None if bias is None else bias.astype(v.dtype))
            qh, kh, vh = self._heads(q), self._heads(k), self._heads(v)
            o = attend(qh, kh, vh) if shard is None else shard.attention(qh, kh, vh, attend, context is x)
            out = o.transpose(0, 2, 1, 3).reshape(b, t, -1)
            if keep is not None:
                out = out * keep + v * (1 - keep)
        if "to_gate_logits" in self:
            out = _head_gates(out.reshape(b, t, self.heads, -1), _lin(self.to_gate_logits, x)).reshape(b, t, -1)
        return _lin(self.to_out, out)


class FeedForward(nn.Module):
    """Linear -> GELU(tanh) -> Linear, 4x wide."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.proj_in = nn.Linear(dim, dim * mult)
        self.proj_out = nn.Linear(dim * mult, dim)

    def __call__(self, x: mx.array) -> mx.array:
        return _lin(self.proj_out, nn.gelu_approx(_lin(self.proj_in, x)))


class TimestepEmbedder(nn.Module):
    """256-channel sinusoidal embedding [cos, sin] -> Linear -> SiLU -> Linear."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(256, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def __call__(self, t: mx.array) -> mx.array:
        # float32 angles on device, as ltx-core (get_timestep_embedding computes in float32)
        e = sinusoidal_embedding(t, 256, float64=False)
        return _lin(self.linear_2, nn.silu(_lin(self.linear_1, e))).astype(F32)


class AdaLNSingle(nn.Module):
    """PixArt adaLN-single: t -> (modulation [..., rows*D] in the weights' dtype, embedded timestep [..., D]
    float32)."""

    def __init__(self, dim: int, rows: int):
        super().__init__()
        self.timestep_embedder = TimestepEmbedder(dim)
        self.linear = nn.Linear(dim, rows * dim)

    def __call__(self, t: mx.array) -> tuple[mx.array, mx.array]:
        emb = self.timestep_embedder(t)
        # the modulation stays in the linear's dtype (bf16 in production: exactly what a float32 copy would
        # hold, at half the bytes; [B, T, rows*D] per token); the kernels that use it add it in float32
        return _lin(self.linear, nn.silu(emb)), emb


class CaptionProjection(nn.Module):
    """LTX-2 text projection: Linear -> GELU(tanh) -> Linear."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def __call__(self, x: mx.array) -> mx.array:
        return _lin(self.linear_2, nn.gelu_approx(_lin(self.linear_1, x)))


def _rows(table: mx.array, mod: mx.array, start: int, stop: int) -> list[tuple[mx.array, mx.array]]:
    """(modulation row [B, T, D], table row [D]) pairs for rows start..stop-1, not yet added: the fused
    kernels below add them on the fly instead of writing per-token [B, T, D] float32 arrays."""
    b, t, _ = mod.shape
    k, d = table.shape
    m = mod.reshape(b, t, k, d)
    return [(m[:, :, r], table[r]) for r in range(start, stop)]


# dtype names for the compiled kernels (mx.compile takes strings, not dtypes, as constant arguments)
_DTYPES = {"bfloat16": mx.bfloat16, "float16": mx.float16, "float32": mx.float32}


def _dname(dtype: mx.Dtype) -> str:
    return next(k for k, v in _DTYPES.items() if v == dtype)


@mx.compile
def _modulate(
    x: mx.array, m_shift: mx.array, t_shift: mx.array, m_scale: mx.array, t_scale: mx.array, eps: float, out: str
) -> mx.array:
    """rms(x)·(1 + scale) + shift, scale/shift = table row + modulation row, computed in float32 and
    written in dtype ``out`` (the next linear layer's: the value it would cast to anyway)."""
    scale = m_scale.astype(F32) + t_scale.astype(F32)
    shift = m_shift.astype(F32) + t_shift.astype(F32)
    return (mx.fast.rms_norm(x.astype(F32), None, eps) * (1 + scale) + shift).astype(_DTYPES[out])


@mx.compile
def _affine(x: mx.array, scale: mx.array, shift: mx.array, out: str) -> mx.array:
    """x·(1 + scale) + shift in float32, written in dtype ``out`` (one kernel)."""
    return (x.astype(F32) * (1 + scale.astype(F32)) + shift.astype(F32)).astype(_DTYPES[out])


@mx.compile
def _gated(x: mx.array, y: mx.array, m_gate: mx.array, t_gate: mx.array) -> mx.array:
    """x + y·gate in float32, gate = table row + modulation row (the residual update)."""
    return x + y.astype(F32) * (m_gate.astype(F32) + t_gate.astype(F32))


@mx.compile
def _plus(x: mx.array, y: mx.array, gate: mx.array | None = None) -> mx.array:
    """x + y (· gate) in float32 in one kernel (y in any dtype)."""
    y = y.astype(F32)
    return x + (y if gate is None else y * gate.astype(F32))


def _ada(table: mx.array, mod: mx.array, start: int, stop: int) -> list[mx.array]:
    """Rows start..stop-1 of ``table [k, D] + mod [B, T, k*D]`` as a list of [B, T, D] float32."""
    b, t, _ = mod.shape
    k, d = table.shape
    m = mod.reshape(b, t, k, d)[:, :, start:stop] + table[start:stop].astype(F32)
    return [m[:, :, i] for i in range(stop - start)]


PHASES = ("video_qkv", "video_self", "video_text", "video_text+audio", "av_cross", "block")
"""Where a forward calls its pace (:data:`mlx_video.nn.evaluation.Pace`), in order: after the video self-attention's
q, k, v projections (with q/k norm and RoPE; not called when the block skips it, STG); after the video
self-attention; after the video text cross-attention (video-only model) or after it and the audio stream's self-
and text attention; after the audio<->video cross-attention; after the block's feed-forwards ("block", the block's
output)."""


@dataclass
class _Stream:
    """Per-stream tensors shared by every block (ltx-core TransformerArgs)."""

    x: mx.array  # [B, T, D] float32 residual stream
    mod: mx.array  # [B, T|1, rows*D] AdaLN modulation
    emb: mx.array  # [B, T|1, D] embedded timestep (output modulation)
    context: mx.array  # [B, S, D]
    pe: RopeTable
    prompt_mod: mx.array | None = None  # [B, 1, 2*D] LTX-2.3 context modulation
    cross_pe: RopeTable | None = None
    cross_mod: mx.array | None = None  # [B, 1, 4*D] a<->v scale/shift from the other stream's sigma
    cross_gate: mx.array | None = None  # [B, 1, D]
    shard: object = None  # TokenShard: x holds this rank's tokens (sequence parallelism)
    bias: mx.array | None = None  # [B, 1, T, T] additive self-attention bias


class Block(nn.Module):
    """BasicAVTransformerBlock: per stream self-attn, text cross-attn; a<->v cross-attn; FFN."""

    def __init__(self, args: LTXModelArgs, idx: int):
        super().__init__()
        self.idx = idx
        self.eps = args.norm_eps
        self.adaln = args.cross_attention_adaln
        g, eps = args.apply_gated_attention, args.norm_eps
        vd, vh, vdh = args.inner_dim, args.num_attention_heads, args.attention_head_dim
        self.attn1 = Attention(vd, vd, vh, vdh, eps, g)
        self.attn2 = Attention(vd, args.cross_attention_dim, vh, vdh, eps, g)
        self.ff = FeedForward(vd)
        self.scale_shift_table = mx.zeros((args.ada_rows, vd))
        if self.adaln:
            self.prompt_scale_shift_table = mx.zeros((2, vd))
        self.has_audio = args.audio
        if args.audio:
            ad, ah, adh = args.audio_inner_dim, args.audio_num_attention_heads, args.audio_attention_head_dim
            self.audio_attn1 = Attention(ad, ad, ah, adh, eps, g)
            self.audio_attn2 = Attention(ad, args.audio_cross_attention_dim, ah, adh, eps, g)
            self.audio_ff = FeedForward(ad)
            self.audio_scale_shift_table = mx.zeros((args.ada_rows, ad))
            if self.adaln:
                self.audio_prompt_scale_shift_table = mx.zeros((2, ad))
            self.audio_to_video_attn = Attention(vd, ad, ah, adh, eps, g)  # q: video, k/v: audio
            self.video_to_audio_attn = Attention(ad, vd, ah, adh, eps, g)  # q: audio, k/v: video
            # rows: (scale, shift) a2v, (scale, shift) v2a, gate
            self.scale_shift_table_a2v_ca_video = mx.zeros((5, vd))
            self.scale_shift_table_a2v_ca_audio = mx.zeros((5, ad))

    def _self(self, s: _Stream, attn1: Attention, table: mx.array, keep, skip, pace=None) -> mx.array:
        """x + gate · attn1(modulated x): the AdaLN self-attention residual update (float32)."""
        shift, scale, gate = _rows(table, s.mod, 0, 3)
        q_in = _modulate(s.x, *shift, *scale, self.eps, _dname(_wdtype(attn1.to_q)))
        out = attn1(q_in, pe=s.pe, keep=keep, skip=skip, shard=s.shard, bias=s.bias, pace=pace)
        return _gated(s.x, out, *gate)

    def _text(self, s: _Stream, x: mx.array, attn2: Attention, table: mx.array, prompt_table) -> mx.array:
        """The text cross-attention residual update of x (float32): plain for LTX-2, AdaLN-modulated
        queries and prompt-modulated context for LTX-2.3."""
        if not self.adaln:  # LTX-2: plain text cross-attention
            return _plus(x, attn2(_rms(x, self.eps), context=s.context))
        shift_q, scale_q, gate_q = _rows(table, s.mod, 6, 9)
        shift_kv, scale_kv = _ada(prompt_table, s.prompt_mod, 0, 2)
        dt = _dname(_wdtype(attn2.to_q))
        q_in = _modulate(x, *shift_q, *scale_q, self.eps, dt)
        return _gated(x, attn2(q_in, context=_affine(s.context, scale_kv, shift_kv, dt)), *gate_q)

    @staticmethod
    def _cross(x, attn, q_side, kv_side, row: int, keep: mx.array | None) -> mx.array:
        """x + one audio<->video direction's gated update: (normed x, a2v scale-shift table, stream) per
        side; rows ``row``, ``row + 1`` of each table give (scale, shift) for that side, row 4 of the query
        side's table the gate."""
        (qn, qt, qs), (kn, kt, ks) = q_side, kv_side
        sq, hq = _ada(qt[:4], qs.cross_mod, row, row + 2)
        sk, hk = _ada(kt[:4], ks.cross_mod, row, row + 2)
        (gate,) = _ada(qt[4:], qs.cross_gate, 0, 1)
        dt = _dname(_wdtype(attn.to_q))
        q_in, kv_in = _affine(qn, sq, hq, dt), _affine(kn, sk, hk, dt)
        out = attn(q_in, context=kv_in, pe=qs.cross_pe, k_pe=ks.cross_pe, shard=ks.shard)
        return _plus(x, out, gate if keep is None else gate * keep)

    def _ffn(self, x: mx.array, mod: mx.array, table: mx.array, ff: FeedForward) -> mx.array:
        shift, scale, gate = _rows(table, mod, 3, 6)
        return _gated(x, ff(_modulate(x, *shift, *scale, self.eps, _dname(_wdtype(ff.proj_in)))), *gate)

    def __call__(
        self, v: _Stream, a: _Stream | None, p: Perturbations, pace: Pace | None = None
    ) -> tuple[mx.array, mx.array | None]:
        """One block on both streams; returns the new (video, audio) residual streams [B, T, D] float32.
        ``pace(phase, *arrays)`` (see :data:`PHASES`), when given, is called after each sub-step with its
        outputs (the block's end is left to the caller): where evaluation can be paced inside a block."""
        i = self.idx
        pace = pace if pace is not None else no_pace
        qkv = lambda *xs: pace("video_qkv", *xs)  # noqa: E731
        vx = self._self(
            v, self.attn1, self.scale_shift_table, p.keep("video_self_attn", i), p.all("video_self_attn", i), qkv
        )
        pace("video_self", vx)
        vx = self._text(v, vx, self.attn2, self.scale_shift_table, getattr(self, "prompt_scale_shift_table", None))
        if a is None:
            pace("video_text", vx)
            return self._ffn(vx, v.mod, self.scale_shift_table, self.ff), None
        ax = self._self(
            a, self.audio_attn1, self.audio_scale_shift_table, p.keep("audio_self_attn", i), p.all("audio_self_attn", i)
        )
        ax = self._text(
            a, ax, self.audio_attn2, self.audio_scale_shift_table, getattr(self, "audio_prompt_scale_shift_table", None)
        )
        pace("video_text+audio", vx, ax)

        # audio <-> video cross-attention; both directions read the norms taken before either update
        vn, an = _rms(vx, self.eps), _rms(ax, self.eps)
        tv, ta = self.scale_shift_table_a2v_ca_video, self.scale_shift_table_a2v_ca_audio
        if not p.all("a2v_cross_attn", i):  # video queries audio: table rows 0, 1
            vx = self._cross(vx, self.audio_to_video_attn, (vn, tv, v), (an, ta, a), 0, p.keep("a2v_cross_attn", i))
        if not p.all("v2a_cross_attn", i):  # audio queries video: table rows 2, 3
            ax = self._cross(ax, self.video_to_audio_attn, (an, ta, a), (vn, tv, v), 2, p.keep("v2a_cross_attn", i))
        pace("av_cross", vx, ax)

        vx = self._ffn(vx, v.mod, self.scale_shift_table, self.ff)
        ax = self._ffn(ax, a.mod, self.audio_scale_shift_table, self.audio_ff)
        return vx, ax


# ----------------------------------------------------------------------------------------------
# model


class LTXModel(nn.Module):
    """LTX-2 / LTX-2.3 velocity transformer (ltx-core ``LTXModel``; video-only when ``args.audio`` is False).

    Call: ``model(video, audio, rope, perturbations=None) -> (v_video, v_audio)`` with
    :class:`Modality` inputs (audio None: video-only pass, no audio<->video attention) and
    ``rope = model.rope_tables(video_positions, audio_positions)``. Velocities are float32,
    [B, T_v, out_channels] and [B, T_a, audio_out_channels] (None without audio); slice off
    appended guiding tokens afterwards. ``block_weights``: a :class:`mlx_video.nn.blockwise.BlockWeights`
    over ``transformer_blocks`` (streamed or per-block dequantized weights), or None (as loaded).
    """

    block_weights: BlockWeights | None = None
    # video tokens (per rank) from which the default pacing evaluates inside blocks (SubstepPacing): stage-2
    # sizes (6,144 tokens at 768x512) do, stage 1 (1,536) keeps one block in flight (short sub-steps there
    # would leave the GPU idle at each wait)
    substep_pacing_tokens: int = 4096

    def __init__(self, args: LTXModelArgs):
        super().__init__()
        self.args = args
        vd, rows = args.inner_dim, args.ada_rows
        self.patchify_proj = nn.Linear(args.in_channels, vd)
        self.adaln_single = AdaLNSingle(vd, rows)
        if args.cross_attention_adaln:
            self.prompt_adaln_single = AdaLNSingle(vd, 2)
        if args.caption_projection:
            self.caption_projection = CaptionProjection(args.caption_channels, vd)
        self.scale_shift_table = mx.zeros((2, vd))
        self.proj_out = nn.Linear(vd, args.out_channels)
        if args.audio:
            ad = args.audio_inner_dim
            self.audio_patchify_proj = nn.Linear(args.audio_in_channels, ad)
            self.audio_adaln_single = AdaLNSingle(ad, rows)
            if args.cross_attention_adaln:
                self.audio_prompt_adaln_single = AdaLNSingle(ad, 2)
            if args.caption_projection:
                self.audio_caption_projection = CaptionProjection(args.caption_channels, ad)
            self.audio_scale_shift_table = mx.zeros((2, ad))
            self.audio_proj_out = nn.Linear(ad, args.audio_out_channels)
            self.av_ca_video_scale_shift_adaln_single = AdaLNSingle(vd, 4)
            self.av_ca_audio_scale_shift_adaln_single = AdaLNSingle(ad, 4)
            self.av_ca_a2v_gate_adaln_single = AdaLNSingle(vd, 1)
            self.av_ca_v2a_gate_adaln_single = AdaLNSingle(ad, 1)
        self.transformer_blocks = [Block(args, i) for i in range(args.num_layers)]

    def rope_tables(self, video_positions, audio_positions=None) -> LTXRope:
        """RoPE tables for one run or stage from explicit positions (see :func:`rope_tables`).

        video_positions [B|1, 3, T_v, 2] (seconds, pixels, pixels; [start, end)), audio_positions
        [B|1, 1, T_a, 2] seconds or None. Include the positions of appended guiding tokens.
        """
        a = self.args
        if audio_positions is not None and not a.audio:
            raise ValueError("this is a video-only model: audio_positions must be None")
        return rope_tables(
            video_positions,
            audio_positions,
            video_dim=a.inner_dim,
            video_heads=a.num_attention_heads,
            video_max_pos=a.positional_embedding_max_pos,
            audio_dim=a.audio_inner_dim,
            audio_heads=a.audio_num_attention_heads,
            audio_max_pos=a.audio_positional_embedding_max_pos,
            cross_dim=a.audio_cross_attention_dim,
            theta=a.positional_embedding_theta,
            use_middle=a.use_middle_indices_grid,
            float64=a.double_precision_rope,
        )

    def _stream(
        self,
        m: Modality,
        other: Modality | None,
        pe: RopeTable,
        cross_pe: RopeTable | None,
        prefix: str,
        cross_names: tuple[str, str],
    ) -> _Stream:
        mult = self.args.timestep_scale_multiplier
        layer = lambda name: getattr(self, prefix + name, None)  # noqa: E731
        x = _lin(layer("patchify_proj"), m.latent).astype(F32)
        b = x.shape[0]
        # per token, or one per item. Per-token AdaLN is [B, T, rows*D] float32 as in the reference
        # (~0.9 GB for 6144 LTX-2.3 video tokens); pass [B] timesteps when all tokens share one.
        t = m.timesteps.astype(F32).reshape(b, -1)
        mod, emb = layer("adaln_single")(t * mult)
        sigma = m.sigma.astype(F32).reshape(b)
        prompt = layer("prompt_adaln_single")
        prompt_mod = prompt(sigma * mult)[0][:, None] if prompt is not None else None
        proj = layer("caption_projection")
        ctx = m.context if proj is None else proj(m.context)  # cast (exactly) where it is used
        s = _Stream(x, mod, emb, ctx, pe, prompt_mod)
        if other is not None:
            # cross-attention modulation follows the *other* stream's sigma (ltx-core 1.0.0)
            ts = other.sigma.astype(F32).reshape(b) * mult
            gate_factor = self.args.av_ca_timestep_scale_multiplier / mult
            s.cross_pe = cross_pe
            s.cross_mod = getattr(self, cross_names[0])(ts)[0][:, None]
            s.cross_gate = getattr(self, cross_names[1])(ts * gate_factor)[0][:, None]
        return s

    @staticmethod
    def _output(x: mx.array, emb: mx.array, table: mx.array, proj: nn.Linear, eps: float) -> mx.array:
        shift, scale = table[0].astype(F32) + emb, table[1].astype(F32) + emb
        x = mx.fast.layer_norm(x, None, None, eps) * (1 + scale) + shift
        return _lin(proj, x).astype(F32)

    def __call__(
        self,
        video: Modality,
        audio: Modality | None,
        rope: LTXRope,
        perturbations: Perturbations | None = None,
        sp=None,
        pace: Pace | None = None,
    ) -> tuple[mx.array, mx.array | None]:
        """Velocities for the video and audio tokens (see class docstring). ``sp``
        (:class:`mlx_video.distributed.SequenceParallel`, default: the one ``distributed.active`` set, if
        any): each rank runs the video tokens of its slice
        (audio stays whole on every rank) and returns the whole result. ``pace`` (:data:`Pace`): how the
        block loop is evaluated (default :class:`SubstepPacing` with ``substep_pacing_tokens``). Raises ValueError on
        audio input to a video-only model or a perturbation list whose length is not B."""
        if audio is not None and not self.args.audio:
            raise ValueError("this is a video-only model: audio must be None")
        b = video.latent.shape[0]
        p = perturbations if perturbations is not None else Perturbations()
        if p.items and len(p.items) != b:
            raise ValueError(f"perturbations has {len(p.items)} items for a batch of {b}")
        sp = current(sp)
        if sp is not None and video.attention_bias is not None:
            raise ValueError("a self-attention mask (IC-LoRA attention strength) does not run sequence-parallel")
        shard = sp.split(video.latent.shape[1]) if sp is not None else None
        if shard is not None:  # this rank's video tokens, their timesteps and RoPE rows
            cut = lambda t: t if t is None else RopeTable(shard.take(t.cos), shard.take(t.sin))  # noqa: E731
            ts = video.timesteps
            ts = shard.take(ts) if ts.ndim > 1 and ts.shape[1] == shard.length else ts
            video = Modality(shard.take(video.latent), ts, video.sigma, video.context)
            rope = rope._replace(video=cut(rope.video), video_cross=cut(rope.video_cross))
        v = self._stream(
            video,
            audio,
            rope.video,
            rope.video_cross,
            "",
            ("av_ca_video_scale_shift_adaln_single", "av_ca_a2v_gate_adaln_single"),
        )
        v.shard, v.bias = shard, video.attention_bias
        a = None
        if audio is not None:
            a = self._stream(
                audio,
                video,
                rope.audio,
                rope.audio_cross,
                "audio_",
                ("av_ca_audio_scale_shift_adaln_single", "av_ca_v2a_gate_adaln_single"),
            )

        pace = pace if pace is not None else SubstepPacing(v.x.shape[1], self.substep_pacing_tokens)

        def step(block, _):
            v.x, ax = block(v, a, p, pace)
            if a is not None:
                a.x = ax
            return v.x, ax

        tokens = b * (v.x.shape[1] + (a.x.shape[1] if a is not None else 0))
        run_blocks(self.transformer_blocks, step, None, self.block_weights, tokens, lambda s: pace("block", *s))
        eps = self.args.norm_eps
        out_v = self._output(v.x, v.emb, self.scale_shift_table, self.proj_out, eps)
        out_v = out_v if shard is None else shard.gather(out_v)
        out_a = None if a is None else self._output(a.x, a.emb, self.audio_scale_shift_table, self.audio_proj_out, eps)
        return out_v, out_a


def to_x0(latent: mx.array, velocity: mx.array, timesteps: mx.array) -> mx.array:
    """x0 = x_t - v * t_token in float32 (ltx-core X0Model / to_denoised).

    latent, velocity: [B, T, C]; timesteps: per-token noise level [B, T] / [B, T, 1], or [B] / [B, 1].
    """
    t = timesteps.astype(F32).reshape(latent.shape[0], -1, 1)
    return latent.astype(F32) - velocity.astype(F32) * t
