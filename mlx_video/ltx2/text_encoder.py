"""LTX-2 / LTX-2.3 text path: Gemma 3 hidden states -> feature extractor -> 1-D connectors.

Follows ltx-core 1.0.0 ``ltx_core.text_encoders.gemma`` (tokenizer.py, encoders/base_encoder.py,
feature_extractor.py, embeddings_connector.py, embeddings_processor.py); second opinion: diffusers
``LTX2TextConnectors``.

    prompt --GemmaTokenizer--> ids, mask (left-padded to 1024)
           --GemmaTextEncoder--> 49 hidden states [B, L, 3840] (embeddings + 48 layers, last one normed)
           --EmbeddingsProcessor--> video context [B, L, Dv], audio context [B, L, Da]

LTX-2 (V1): per-layer masked mean/range norm, one Linear(188160 -> 3840), 2-layer connectors of
width 3840; the caption projection to 4096 / 2048 is part of the transformer (ltx-core LTXModel),
not of this file. LTX-2.3 (V2): per-token RMS norm, separate video/audio Linear (with bias) to
4096 / 2048, 8-layer gated connectors. Every output position is valid: the connectors replace
padding with learnable registers, so no text mask goes to the transformer.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_lm.models import gemma3_text

from mlx_video.nn.attention import attention

# --------------------------------------------------------------------------------------------
# Gemma 3 (mlx-lm) and its tokenizer
# --------------------------------------------------------------------------------------------

# Gemma 3 12B text config as ltx-core pins it (text_encoders/gemma/config.py); config.json
# values override these.
GEMMA3_12B = dict(
    model_type="gemma3_text",
    hidden_size=3840,
    num_hidden_layers=48,
    intermediate_size=15360,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=256,
    query_pre_attn_scalar=256,
    rms_norm_eps=1e-6,
    vocab_size=262208,
    rope_theta=1_000_000.0,
    rope_local_base_freq=10_000.0,
    rope_scaling={"rope_type": "linear", "factor": 8.0},
    sliding_window=1024,
    sliding_window_pattern=6,
    max_position_embeddings=131072,
)


def gemma_args(config: dict | None = None) -> gemma3_text.ModelArgs:
    """mlx-lm Gemma 3 text args from a HF ``config.json`` dict (multimodal or text-only).

    Accepts the transformers 4.x keys (``rope_theta``, ``rope_local_base_freq``, ``rope_scaling``)
    and the 5.x ``rope_parameters`` / ``layer_types``; missing keys take the 12B values LTX-2 uses.
    Raises ValueError for a layer pattern mlx-lm cannot express (global every Nth layer).
    """
    config = dict(config or {})
    text = dict(config.get("text_config", config))
    if "vocab_size" in config and "text_config" in config:
        text.setdefault("vocab_size", config["vocab_size"])
    rp = text.pop("rope_parameters", None)
    if rp:
        text["rope_theta"] = rp["full_attention"]["rope_theta"]
        text["rope_local_base_freq"] = rp["sliding_attention"]["rope_theta"]
        full = {k: v for k, v in rp["full_attention"].items() if k != "rope_theta"}
        text["rope_scaling"] = None if full.get("rope_type", "default") == "default" else full
    args = {**GEMMA3_12B, **{k: v for k, v in text.items() if k in GEMMA3_12B and v is not None}}
    layer_types = text.get("layer_types")
    if layer_types is not None:
        p = args["sliding_window_pattern"]
        want = ["full_attention" if (i + 1) % p == 0 else "sliding_attention" for i in range(args["num_hidden_layers"])]
        if list(layer_types) != want:
            raise ValueError(f"Gemma layer_types {layer_types} are not 'global every {p}th layer'")
    return gemma3_text.ModelArgs(**args)


class GemmaTokenizer:
    """The Gemma tokenizer as ltx-core calls it: ``text.strip()``, left padding to ``max_length``
    (1024 for LTX-2), truncation, BOS added by the tokenizer.

    ``path``: a folder with the HF tokenizer files (tokenizer.json / tokenizer.model + config).
    ``vocab_size``: the Gemma embedding rows; a tokenizer that can emit ids >= vocab_size does not
    belong to that model. Raises TokenizerNotFound (a FileNotFoundError) when the folder or its files
    are missing, TokenizerError naming the file when they are corrupt, and
    ValueError for a tokenizer without a pad token or larger than the model's vocabulary. There
    is no fallback tokenizer.
    """

    def __init__(self, path: str | Path, max_length: int = 1024, vocab_size: int | None = None):
        from mlx_video.io.tokenizers import load_tokenizer

        path = Path(path)
        self.tokenizer = load_tokenizer(path, ("tokenizer.json", "tokenizer.model"), "Gemma tokenizer")
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            raise ValueError(f"tokenizer in {path} has no pad token; it is not a Gemma tokenizer")
        if vocab_size is not None and len(self.tokenizer) > vocab_size:
            raise ValueError(
                f"tokenizer in {path} has {len(self.tokenizer)} tokens but the text encoder "
                f"embeds only {vocab_size}: tokenizer and weights do not match"
            )
        self.max_length = max_length

    def __call__(self, text: str) -> tuple[mx.array, mx.array]:
        """One prompt -> (input_ids [1, max_length] int32, attention_mask [1, max_length] int32, 1 = token)."""
        enc = self.tokenizer(
            text.strip(), padding="max_length", max_length=self.max_length, truncation=True, return_tensors="np"
        )
        return mx.array(enc["input_ids"].astype(np.int32)), mx.array(enc["attention_mask"].astype(np.int32))


class GemmaTextEncoder(nn.Module):
    """Gemma 3 text model (mlx-lm ``gemma3_text``) returning every hidden state, as ltx-core's
    ``GemmaTextEncoder.encode`` gets them from HF with ``output_hidden_states=True``.

    Parameters are ``model.*`` (mlx-lm ``Gemma3Model``): load with ``sanitize_gemma``.
    """

    def __init__(self, args: gemma3_text.ModelArgs):
        super().__init__()
        self.args = args
        self.model = gemma3_text.Gemma3Model(args)

    @classmethod
    def from_config(cls, config: dict | None = None) -> GemmaTextEncoder:
        return cls(gemma_args(config))

    def _masks(self, attention_mask: mx.array) -> tuple[mx.array, mx.array]:
        """Boolean [B, 1, L, L] masks (global, sliding): causal, padded keys hidden, sliding window
        ``q - k < window`` (HF semantics). The diagonal is always open so padded queries (whose
        outputs nobody uses) never see an empty row."""
        L = attention_mask.shape[1]
        q = mx.arange(L)[:, None]
        k = mx.arange(L)[None, :]
        keys = (attention_mask != 0)[:, None, None, :]
        full = ((k <= q) & keys) | (k == q)
        sliding = full & (q - k < self.args.sliding_window)
        return full, sliding

    def __call__(self, input_ids: mx.array, attention_mask: mx.array) -> list[mx.array]:
        """input_ids, attention_mask: [B, L] (left padding, 1 = token). Returns num_layers + 1 arrays
        [B, L, hidden] in the weights' dtype: the scaled embeddings, the outputs of layers 1..N-1 and
        the final-RMSNorm-ed output of layer N (HF convention). Positions are 0..L-1 including padding
        (as HF assigns them); values at padded positions are meaningless and masked downstream."""
        m = self.model
        h = m.embed_tokens(input_ids)
        # HF casts sqrt(hidden) to the weight dtype (62.0 in bf16, 61.97 in float32).
        h = h * mx.array(self.args.hidden_size**0.5, dtype=h.dtype)
        full, sliding = self._masks(attention_mask)
        p = self.args.sliding_window_pattern
        states = [h]
        for i, layer in enumerate(m.layers):
            h = layer(h, full if (i + 1) % p == 0 else sliding, None)
            states.append(h)
        states[-1] = m.norm(h)
        return states


# Gemma checkpoint parts the reference loads but never runs when encoding (ltx-core keeps them for
# prompt enhancement with Gemma3ForConditionalGeneration.generate): vision tower, projector, LM head.
_GEMMA_UNUSED = (
    "vision_tower.",
    "multi_modal_projector.",
    "lm_head.",
    "language_model.lm_head.",
    "model.vision_tower.",
    "model.multi_modal_projector.",
)
_GEMMA_PREFIXES = ("language_model.model.", "model.language_model.", "language_model.", "model.")


def sanitize_gemma(weights: dict[str, mx.array]) -> dict[str, mx.array]:
    """Gemma 3 checkpoint -> ``GemmaTextEncoder`` names (``model.layers.{i}...``).

    Accepts the Gemma3ForConditionalGeneration layouts of transformers 4.x
    (``language_model.model.*``, as google/gemma-3-12b-it ships and ltx-core expects) and 5.x
    (``model.language_model.*``, diffusers' ``text_encoder/``), and text-only ``model.*``. Drops
    only the parts listed in ``_GEMMA_UNUSED``; anything else unknown is left for load_strict to
    report.
    """
    out = {}
    for k, v in weights.items():
        if k.startswith(_GEMMA_UNUSED):
            continue
        for p in _GEMMA_PREFIXES:
            if k.startswith(p):
                k = "model." + k[len(p) :]
                break
        out[k] = v
    return out


# --------------------------------------------------------------------------------------------
# Feature extractors (hidden states -> per-token features)
# --------------------------------------------------------------------------------------------


def _stack(hidden_states) -> mx.array:
    """list of [B, L, D] (or a stacked [B, L, D, N]) -> float32 [B, L, D, N]."""
    if isinstance(hidden_states, (list, tuple)):
        hidden_states = mx.stack(hidden_states, axis=-1)
    return hidden_states.astype(mx.float32)


def _flatten(x: mx.array, valid: mx.array) -> mx.array:
    """[B, L, D, N] -> [B, L, D*N] (layer index fastest, as the reference reshapes), padding zeroed."""
    B, L, D, N = x.shape
    return mx.where(valid[:, :, None], x.reshape(B, L, D * N), 0.0)


class FeatureExtractorV1(nn.Module):
    """LTX-2: per sample and layer, over valid tokens and all dims, ``8 (x - mean) / (max - min + 1e-6)``;
    padding zeroed; ``aggregate_embed`` Linear(D·N -> D, no bias). The same features feed both
    connectors. Normalisation in float32 (the reference runs it in the hidden states' dtype)."""

    def __init__(self, in_dims: int, out_dims: int, bias: bool = False):
        super().__init__()
        self.aggregate_embed = nn.Linear(in_dims, out_dims, bias=bias)

    def __call__(self, hidden_states, attention_mask: mx.array) -> tuple[mx.array, mx.array]:
        x = _stack(hidden_states)
        valid = attention_mask != 0
        m = valid[:, :, None, None]
        count = valid.sum(axis=1).astype(mx.float32)[:, None, None, None] * x.shape[2]
        mean = mx.where(m, x, 0.0).sum(axis=(1, 2), keepdims=True) / (count + 1e-6)
        lo = mx.where(m, x, mx.inf).min(axis=(1, 2), keepdims=True)
        hi = mx.where(m, x, -mx.inf).max(axis=(1, 2), keepdims=True)
        x = _flatten(8.0 * (x - mean) / (hi - lo + 1e-6), valid)
        w = self.aggregate_embed.weight
        f = self.aggregate_embed(x.astype(w.dtype))
        return f, f


class FeatureExtractorV2(nn.Module):
    """LTX-2.3: per token and layer RMS norm over the hidden dim (eps 1e-6), padding zeroed, then
    ``video_aggregate_embed(x · sqrt(Dv / D))`` and ``audio_aggregate_embed(x · sqrt(Da / D))``
    (Linear with bias), D = Gemma hidden size. Normalisation in float32."""

    def __init__(self, hidden: int, in_dims: int, video_dims: int, audio_dims: int, bias: bool = True):
        super().__init__()
        self.hidden = hidden
        self.video_aggregate_embed = nn.Linear(in_dims, video_dims, bias=bias)
        self.audio_aggregate_embed = nn.Linear(in_dims, audio_dims, bias=bias)

    def __call__(self, hidden_states, attention_mask: mx.array) -> tuple[mx.array, mx.array]:
        x = _stack(hidden_states)
        x = x * mx.rsqrt(mx.mean(x * x, axis=2, keepdims=True) + 1e-6)
        x = _flatten(x, attention_mask != 0)
        out = []
        for proj in (self.video_aggregate_embed, self.audio_aggregate_embed):
            scale = math.sqrt(proj.weight.shape[0] / self.hidden)
            out.append(proj((x * scale).astype(proj.weight.dtype)))
        return out[0], out[1]


# --------------------------------------------------------------------------------------------
# Embeddings connector (1-D transformer with learnable registers)
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _rope_np(
    length: int, heads: int, head_dim: int, theta: float, max_pos: float, rope_type: str, float64_grid: bool
) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin tables [heads, length, k] for positions 0..length-1 (k = head_dim/2 split,
    head_dim interleaved). As ltx-core's precompute_freqs_cis with one position axis: the LTX-2
    fractional angles (:func:`mlx_video.ltx2.rope.fractional_angles`, float32 exactly as the
    reference), cos / sin on the host in float32."""
    from mlx_video.ltx2.rope import fractional_angles

    positions = np.arange(length, dtype=np.float32)[None, None]  # [1, 1, L]
    ang = fractional_angles(positions, [max_pos], theta, float64=float64_grid, inner_dim=heads * head_dim)[0]
    cos, sin = np.cos(ang), np.sin(ang)
    if rope_type == "interleaved":  # pairs (x_2i, x_2i+1) share angle i over the flat inner dim
        cos, sin = np.repeat(cos, 2, axis=-1), np.repeat(sin, 2, axis=-1)
    elif rope_type != "split":
        raise ValueError(f"rope_type must be 'split' or 'interleaved', got {rope_type!r}")
    k = cos.shape[-1] // heads
    cos = cos.reshape(length, heads, k).transpose(1, 0, 2)
    sin = sin.reshape(length, heads, k).transpose(1, 0, 2)
    return np.ascontiguousarray(cos), np.ascontiguousarray(sin)


def apply_rope(x: mx.array, cos: mx.array, sin: mx.array, rope_type: str) -> mx.array:
    """Rotate x [B, H, L, d] with tables [H, L, d/2] ("split": halves of each head rotate
    together) or [H, L, d] ("interleaved": adjacent pairs rotate)."""
    if rope_type == "split":
        a, b = mx.split(x, 2, axis=-1)
        return mx.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    rot = mx.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(x.shape)
    return x * cos + rot * sin


class ConnectorAttention(nn.Module):
    """ltx-core ``Attention`` (self-attention only): q/k/v Linear with bias, RMSNorm on q and k over
    the whole inner dim (eps 1e-6), RoPE, SDPA (scale 1/sqrt(head_dim)), optional per-head gate
    ``2 sigmoid(to_gate_logits(x))`` on the attention output (LTX-2.3), ``to_out``."""

    def __init__(self, dim: int, heads: int, head_dim: int, gated: bool, rope_type: str):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.rope_type = heads, rope_type
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(dim, inner)
        self.to_v = nn.Linear(dim, inner)
        self.q_norm = nn.RMSNorm(inner, eps=1e-6)
        self.k_norm = nn.RMSNorm(inner, eps=1e-6)
        self.to_out = nn.Linear(inner, dim)
        if gated:
            self.to_gate_logits = nn.Linear(dim, heads)

    def __call__(self, x: mx.array, cos: mx.array, sin: mx.array) -> mx.array:
        B, L, _ = x.shape
        heads = lambda t: t.reshape(B, L, self.heads, -1).transpose(0, 2, 1, 3)  # noqa: E731
        cos, sin = cos.astype(x.dtype), sin.astype(x.dtype)  # as the reference: tables in the model dtype
        q = apply_rope(heads(self.q_norm(self.to_q(x))), cos, sin, self.rope_type)
        k = apply_rope(heads(self.k_norm(self.to_k(x))), cos, sin, self.rope_type)
        o = attention(q, k, heads(self.to_v(x)))  # [B, H, L, d]
        if "to_gate_logits" in self:
            gate = 2.0 * mx.sigmoid(self.to_gate_logits(x))  # [B, L, H]
            o = o * gate.transpose(0, 2, 1)[..., None]
        return self.to_out(o.transpose(0, 2, 1, 3).reshape(B, L, -1))


class ConnectorBlock(nn.Module):
    """``x += attn(rms(x)); x += ff(rms(x))`` with weightless RMSNorm (eps 1e-6), FF = Linear(D, 4D),
    GELU (tanh), Linear(4D, D). Residual in float32, layers in the weights' dtype."""

    def __init__(self, dim: int, heads: int, head_dim: int, gated: bool, rope_type: str):
        super().__init__()
        self.attn = ConnectorAttention(dim, heads, head_dim, gated, rope_type)
        self.ff_in = nn.Linear(dim, 4 * dim)
        self.ff_out = nn.Linear(4 * dim, dim)

    def __call__(self, x: mx.array, cos: mx.array, sin: mx.array) -> mx.array:
        dtype = self.ff_in.weight.dtype
        x = x + self.attn(mx.fast.rms_norm(x, None, 1e-6).astype(dtype), cos, sin)
        h = mx.fast.rms_norm(x, None, 1e-6).astype(dtype)
        return x + self.ff_out(nn.gelu_approx(self.ff_in(h)))


class EmbeddingsConnector(nn.Module):
    """ltx-core ``Embeddings1DConnector``: valid tokens move to the front (in order), every other slot
    i takes ``learnable_registers[i mod R]``, then ``layers`` ConnectorBlocks with 1-D RoPE over
    positions 0..L-1 and a final weightless RMSNorm. After the substitution all L positions are
    valid. Equal to the reference for left padding (the only padding its tokenizer produces; for
    right padding the reference's flipped mask misplaces tokens, diffusers matches this code)."""

    def __init__(
        self,
        heads: int,
        head_dim: int,
        layers: int,
        registers: int,
        gated: bool,
        rope_type: str,
        rope_theta: float,
        rope_max_pos: float,
        rope_float64: bool,
    ):
        super().__init__()
        dim = heads * head_dim
        self.rope_tables = functools.partial(
            _rope_np,
            heads=heads,
            head_dim=head_dim,
            theta=rope_theta,
            max_pos=rope_max_pos,
            rope_type=rope_type,
            float64_grid=rope_float64,
        )
        self.learnable_registers = mx.zeros((registers, dim))
        self.blocks = [ConnectorBlock(dim, heads, head_dim, gated, rope_type) for _ in range(layers)]

    def _registers(self, x: mx.array, attention_mask: mx.array) -> mx.array:
        B, L, D = x.shape
        R = self.learnable_registers.shape[0]
        if L % R:
            raise ValueError(f"text length {L} must be a multiple of the {R} learnable registers")
        valid = attention_mask != 0
        pos = mx.arange(L)
        order = mx.argsort(mx.where(valid, pos, pos + L), axis=1)  # valid first, each group in order
        front = mx.take_along_axis(x, order[:, :, None], axis=1)
        regs = mx.tile(self.learnable_registers.astype(x.dtype), (L // R, 1))
        n = valid.sum(axis=1, keepdims=True)
        return mx.where((pos[None] < n)[:, :, None], front, regs[None])

    def __call__(self, x: mx.array, attention_mask: mx.array) -> mx.array:
        """x: [B, L, D] features, attention_mask: [B, L] (1 = token). Returns float32 [B, L, D]."""
        x = self._registers(x.astype(mx.float32), attention_mask)
        cos, sin = (mx.array(t) for t in self.rope_tables(x.shape[1]))
        for block in self.blocks:
            x = block(x, cos, sin)
        return mx.fast.rms_norm(x, None, 1e-6)


# --------------------------------------------------------------------------------------------
# Embeddings processor (feature extractor + both connectors)
# --------------------------------------------------------------------------------------------

_V2_KEYS = {
    "caption_proj_before_connector": True,
    "caption_projection_first_linear": False,
    "caption_proj_input_norm": False,
    "caption_projection_second_linear": False,
}


@dataclass
class TextProcessorArgs:
    """Sizes of the LTX-2 (version 1) / LTX-2.3 (version 2) text feature extractor and connectors.

    Defaults are ltx-core 1.0.0's defaults for absent config keys (``rope_type`` "interleaved",
    float32 grid, ``rope_max_pos`` 1); the shipped checkpoints set split / float64 / 4096.
    """

    version: int = 1
    text_hidden: int = 3840  # Gemma hidden size
    text_layers: int = 49  # Gemma hidden states (embeddings + 48 layers)
    video_heads: int = 30
    video_head_dim: int = 128
    video_layers: int = 2
    audio_heads: int = 30
    audio_head_dim: int = 128
    audio_layers: int = 2
    video_gated: bool = False
    audio_gated: bool = False
    registers: int = 128
    rope_type: str = "interleaved"
    rope_theta: float = 10000.0
    rope_max_pos: float = 1.0
    rope_float64: bool = False
    proj_bias: bool | None = None  # aggregate Linear bias; None: False for V1, True for V2

    @classmethod
    def from_config(cls, config: dict) -> TextProcessorArgs:
        """From the LTX checkpoint's metadata ``config`` (or its ``transformer`` section), or from a
        diffusers ``LTX2TextConnectors`` config. Raises NotImplementedError for a partial or unknown
        V2 key set (as ltx-core does) and ValueError when V2 projection and connector widths differ.
        The diffusers layout is told by its own ``video_connector_*`` key names, never by ``_class_name``."""
        if any(k.startswith("video_connector_") for k in config):
            return cls._from_diffusers(config)
        t = config["transformer"] if "transformer" in config else config
        present = t.keys() & _V2_KEYS.keys()
        if present and (present != _V2_KEYS.keys() or any(t[k] != _V2_KEYS[k] for k in present)):
            raise NotImplementedError(f"unknown LTX text-projection config: { {k: t[k] for k in present} }")
        vh = t.get("connector_num_attention_heads", 30)
        vd = t.get("connector_attention_head_dim", 128)
        vl = t.get("connector_num_layers", 2)
        gated = bool(t.get("connector_apply_gated_attention", False))
        args = cls(
            version=2 if present else 1,
            video_heads=vh,
            video_head_dim=vd,
            video_layers=vl,
            audio_heads=t.get("audio_connector_num_attention_heads", vh),
            audio_head_dim=t.get("audio_connector_attention_head_dim", vd),
            audio_layers=t.get("audio_connector_num_layers", vl),
            video_gated=gated,
            audio_gated=gated,
            rope_type=t.get("rope_type", "interleaved"),
            rope_max_pos=float(t.get("connector_positional_embedding_max_pos", [1])[0]),
            rope_float64=t.get("frequencies_precision", False) == "float64",
        )
        if present:  # ltx-core sizes the V2 projections from the transformer's widths
            dims = {
                "video": (t.get("num_attention_heads", 32) * t.get("attention_head_dim", 128), vh * vd),
                "audio": (
                    t.get("audio_num_attention_heads", 32) * t.get("audio_attention_head_dim", 64),
                    args.audio_heads * args.audio_head_dim,
                ),
            }
            for name, (proj, conn) in dims.items():
                if proj != conn:
                    raise ValueError(f"{name} feature width {proj} != {name} connector width {conn}")
        return args

    @classmethod
    def _from_diffusers(cls, c: dict) -> TextProcessorArgs:
        regs = {
            c.get("video_connector_num_learnable_registers", 128),
            c.get("audio_connector_num_learnable_registers", 128),
        }
        if len(regs) != 1 or None in regs:
            raise NotImplementedError(f"connectors without (or with different) learnable registers: {regs}")
        return cls(
            version=2 if c.get("per_modality_projections", False) else 1,
            text_hidden=c.get("caption_channels", 3840),
            text_layers=c.get("text_proj_in_factor", 49),
            video_heads=c.get("video_connector_num_attention_heads", 30),
            video_head_dim=c.get("video_connector_attention_head_dim", 128),
            video_layers=c.get("video_connector_num_layers", 2),
            audio_heads=c.get("audio_connector_num_attention_heads", 30),
            audio_head_dim=c.get("audio_connector_attention_head_dim", 128),
            audio_layers=c.get("audio_connector_num_layers", 2),
            video_gated=c.get("video_gated_attn", False),
            audio_gated=c.get("audio_gated_attn", False),
            registers=regs.pop(),
            rope_type=c.get("rope_type", "interleaved"),
            rope_theta=c.get("rope_theta", 10000.0),
            rope_max_pos=float(c.get("connector_rope_base_seq_len", 4096)),
            rope_float64=c.get("rope_double_precision", True),
            proj_bias=c.get("proj_bias", False),
        )


class EmbeddingsProcessor(nn.Module):
    """Gemma hidden states -> (video context, audio context), as ltx-core's
    ``EmbeddingsProcessor.process_hidden_states``.

    Parameters: ``feature_extractor.*``, ``video_connector.*``, ``audio_connector.*``; load with
    ``sanitize``. V1 requires connector widths equal to ``text_hidden`` (ValueError otherwise).
    """

    def __init__(self, args: TextProcessorArgs):
        super().__init__()
        self.args = a = args
        flat = a.text_hidden * a.text_layers
        vdim, adim = a.video_heads * a.video_head_dim, a.audio_heads * a.audio_head_dim
        if a.version == 1:
            if vdim != a.text_hidden or adim != a.text_hidden:
                raise ValueError(f"V1 connectors must be {a.text_hidden} wide, got {vdim} / {adim}")
            self.feature_extractor = FeatureExtractorV1(flat, a.text_hidden, bias=bool(a.proj_bias))
        elif a.version == 2:
            bias = True if a.proj_bias is None else a.proj_bias
            self.feature_extractor = FeatureExtractorV2(a.text_hidden, flat, vdim, adim, bias=bias)
        else:
            raise ValueError(f"unknown text feature extractor version {a.version}")
        rope = dict(
            rope_type=a.rope_type,
            rope_theta=a.rope_theta,
            rope_max_pos=a.rope_max_pos,
            rope_float64=a.rope_float64,
            registers=a.registers,
        )
        self.video_connector = EmbeddingsConnector(
            a.video_heads, a.video_head_dim, a.video_layers, gated=a.video_gated, **rope
        )
        self.audio_connector = EmbeddingsConnector(
            a.audio_heads, a.audio_head_dim, a.audio_layers, gated=a.audio_gated, **rope
        )

    def __call__(self, hidden_states, attention_mask: mx.array) -> tuple[mx.array, mx.array]:
        """hidden_states: list of ``text_layers`` arrays [B, L, text_hidden] (or stacked
        [B, L, text_hidden, text_layers]); attention_mask [B, L], 1 = token, left padding.
        Returns float32 video context [B, L, Dv] and audio context [B, L, Da]; all positions valid."""
        video, audio = self.feature_extractor(hidden_states, attention_mask)
        return self.video_connector(video, attention_mask), self.audio_connector(audio, attention_mask)


def encode_prompt(
    prompt: str, tokenizer: GemmaTokenizer, gemma: GemmaTextEncoder, processor: EmbeddingsProcessor
) -> tuple[mx.array, mx.array]:
    """prompt -> (video context [1, L, Dv], audio context [1, L, Da]), float32. Encode negative
    prompts with a separate call, as the reference does."""
    ids, mask = tokenizer(prompt)
    return processor(gemma(ids, mask), mask)


# --------------------------------------------------------------------------------------------
# Checkpoint keys
# --------------------------------------------------------------------------------------------

# Lightricks single file: feature extractor under text_embedding_projection.*, connectors under
# model.diffusion_model.{video,audio}_embeddings_connector.* (ltx-core EMBEDDINGS_PROCESSOR_KEY_OPS).
# diffusers LTX2TextConnectors: text_proj_in / {video,audio}_text_proj_in, {video,audio}_connector.*
_PREFIXES = {
    "official": {
        "text_embedding_projection.": "feature_extractor.",
        "model.diffusion_model.video_embeddings_connector.": "video_connector.",
        "model.diffusion_model.audio_embeddings_connector.": "audio_connector.",
    },
    "diffusers": {
        "text_proj_in.": "feature_extractor.aggregate_embed.",
        "video_text_proj_in.": "feature_extractor.video_aggregate_embed.",
        "audio_text_proj_in.": "feature_extractor.audio_aggregate_embed.",
        "video_connector.": "video_connector.",
        "audio_connector.": "audio_connector.",
    },
}
_RENAMES = (  # inside a connector: reference name -> ours
    ("transformer_1d_blocks.", "blocks."),
    ("transformer_blocks.", "blocks."),
    (".attn1.", ".attn."),
    (".norm_q.", ".q_norm."),
    (".norm_k.", ".k_norm."),
    (".to_out.0.", ".to_out."),
    (".ff.net.0.proj.", ".ff_in."),
    (".ff.net.2.", ".ff_out."),
)


def sanitize(weights: dict[str, mx.array], layout: str = "official") -> dict[str, mx.array]:
    """Checkpoint -> ``EmbeddingsProcessor`` names.

    layout "official": the Lightricks single file (the whole file may be passed: only keys under
    ``text_embedding_projection.`` and ``model.diffusion_model.{video,audio}_embeddings_connector.``
    belong to the text path; the rest belongs to the transformer / VAEs and is not returned).
    layout "diffusers": a ``LTX2TextConnectors`` state dict (``connectors/``); every key is kept,
    so stray keys reach load_strict. Raises ValueError for another layout.
    """
    if layout not in _PREFIXES:
        raise ValueError(f"layout must be one of {sorted(_PREFIXES)}, got {layout!r}")
    out = {}
    for k, v in weights.items():
        prefix = next((p for p in _PREFIXES[layout] if k.startswith(p)), None)
        if prefix is None:
            if layout == "official":
                continue
            out[k] = v
            continue
        k = _PREFIXES[layout][prefix] + k[len(prefix) :]
        for a, b in _RENAMES:
            k = k.replace(a, b)
        out[k] = v
    return out
