"""Wan's text encoder: the UMT5-XXL encoder and the official prompt cleaning + tokenizer call.

Follows ``wan/modules/t5.py`` (``T5Encoder`` built by ``umt5_xxl(encoder_only=True)``) and
``wan/modules/tokenizers.py`` (``HuggingfaceTokenizer(clean='whitespace')``) of the official Wan2.2
code; ``transformers.UMT5EncoderModel`` computes the same function under other names (see
docs/wan.md §5).

Per block: ``x += Attn(RMSNorm1(x))``, ``x += FFN(RMSNorm2(x))``; the attention has no bias, no
1/sqrt(d) scale and adds a per-block relative-position bias (32 bidirectional buckets, max distance
128) and the padding mask to the logits; the FFN is ``fc2(fc1(x) * gelu_tanh(gate(x)))``; a final
RMSNorm closes the stack.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, fields
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_video.io.weights import WeightsError
from mlx_video.nn.attention import attention


@dataclass
class UMT5Args:
    """UMT5 encoder hyper-parameters; the defaults are Wan's ``umt5_xxl`` (encoder only)."""

    vocab_size: int = 256384
    dim: int = 4096
    dim_attn: int = 4096
    dim_ffn: int = 10240
    num_heads: int = 64
    num_layers: int = 24
    num_buckets: int = 32
    max_distance: int = 128
    shared_pos: bool = False  # False: every block owns its relative-position table (UMT5)
    eps: float = 1e-6

    @classmethod
    def from_config(cls, config: dict) -> UMT5Args:
        """Read either the official ``umt5_xxl`` kwargs dict (``vocab_size``, ``dim``, ``dim_attn``,
        ``dim_ffn``, ``num_heads``, ``encoder_layers``/``num_layers``, ``num_buckets``, ``shared_pos``)
        or a transformers ``UMT5Config`` dict (``d_model``, ``d_kv``, ``d_ff``, ...).

        Raises ValueError for an HF config whose FFN is not gated-GELU (the only kind Wan uses).
        """
        if "d_model" in config:  # transformers UMT5Config / config.json
            act = config.get("feed_forward_proj", "gated-gelu")
            if act != "gated-gelu":
                raise ValueError(f"UMT5 feed_forward_proj {act!r} is not supported (Wan uses 'gated-gelu')")
            return cls(
                vocab_size=config["vocab_size"],
                dim=config["d_model"],
                dim_attn=config["d_kv"] * config["num_heads"],
                dim_ffn=config["d_ff"],
                num_heads=config["num_heads"],
                num_layers=config["num_layers"],
                num_buckets=config.get("relative_attention_num_buckets", 32),
                max_distance=config.get("relative_attention_max_distance", 128),
                shared_pos=False,
                eps=config.get("layer_norm_epsilon", 1e-6),
            )
        config = dict(config)
        if "encoder_layers" in config:
            config["num_layers"] = config.pop("encoder_layers")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in config.items() if k in names})


def relative_position_buckets(length: int, num_buckets: int = 32, max_distance: int = 128) -> np.ndarray:
    """Bidirectional T5 bucket of ``j - i`` for query i, key j: int32 ``[length, length]``.

    Half the buckets for keys after the query; within a half, distances below a quarter of the
    buckets are exact and larger ones log-spaced up to ``max_distance``. The log ratio is taken in
    float32 and truncated like the reference (``.long()``); checked against it for |j-i| < 1100.
    """
    rel = np.arange(length)[None, :] - np.arange(length)[:, None]
    half = num_buckets // 2
    exact = half // 2
    dist = np.abs(rel)
    ratio = np.log(np.maximum(dist, 1).astype(np.float32) / np.float32(exact))
    ratio = ratio / np.float32(math.log(max_distance / exact)) * np.float32(half - exact)
    large = np.minimum(exact + ratio.astype(np.int64), half - 1)
    return ((rel > 0) * half + np.where(dist < exact, dist, large)).astype(np.int32)


class RelativePositionBias(nn.Module):
    """Learned per-head bias for each bucket: ``embedding [num_buckets, heads]``."""

    def __init__(self, num_buckets: int, num_heads: int):
        super().__init__()
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def __call__(self, buckets: mx.array) -> mx.array:
        """buckets: int32 [L, L] -> bias [1, heads, L, L] (weights' dtype)."""
        return self.embedding(buckets).transpose(2, 0, 1)[None]


class T5Attention(nn.Module):
    def __init__(self, dim: int, dim_attn: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim_attn, bias=False)
        self.k = nn.Linear(dim, dim_attn, bias=False)
        self.v = nn.Linear(dim, dim_attn, bias=False)
        self.o = nn.Linear(dim_attn, dim, bias=False)

    def __call__(self, x: mx.array, bias: mx.array) -> mx.array:
        """x [B, L, dim]; bias [B|1, heads, L, L] additive (position + mask). No 1/sqrt(d) scale."""
        b, n, _ = x.shape
        q, k, v = (p(x).reshape(b, n, self.num_heads, -1).transpose(0, 2, 1, 3) for p in (self.q, self.k, self.v))
        out = attention(q, k, v, scale=1.0, mask=bias)
        return self.o(out.transpose(0, 2, 1, 3).reshape(b, n, -1))


class GatedGeluFFN(nn.Module):
    def __init__(self, dim: int, dim_ffn: int):
        super().__init__()
        self.gate = nn.Linear(dim, dim_ffn, bias=False)
        self.fc1 = nn.Linear(dim, dim_ffn, bias=False)
        self.fc2 = nn.Linear(dim_ffn, dim, bias=False)

    def __call__(self, x: mx.array) -> mx.array:
        return self.fc2(self.fc1(x) * nn.gelu_approx(self.gate(x)))  # gelu_approx = tanh GELU


class T5Block(nn.Module):
    def __init__(self, args: UMT5Args):
        super().__init__()
        self.norm1 = nn.RMSNorm(args.dim, eps=args.eps)
        self.attn = T5Attention(args.dim, args.dim_attn, args.num_heads)
        self.norm2 = nn.RMSNorm(args.dim, eps=args.eps)
        self.ffn = GatedGeluFFN(args.dim, args.dim_ffn)
        if not args.shared_pos:
            self.pos_embedding = RelativePositionBias(args.num_buckets, args.num_heads)

    def __call__(self, x: mx.array, keep: mx.array, buckets: mx.array, shared_bias: mx.array | None) -> mx.array:
        dtype = self.norm1.weight.dtype  # matmul/attention dtype = the loaded weights' dtype
        pos = shared_bias if shared_bias is not None else self.pos_embedding(buckets)
        # Masked keys get the dtype's most negative finite value, like the reference's masked_fill
        # (finite, so a fully masked row stays finite; -inf would give NaN).
        bias = mx.where(keep, pos.astype(dtype), mx.array(mx.finfo(dtype).min, dtype))
        x = x + self.attn(self.norm1(x).astype(dtype), bias).astype(mx.float32)
        return x + self.ffn(self.norm2(x).astype(dtype)).astype(mx.float32)


class UMT5Encoder(nn.Module):
    """UMT5 encoder stack as Wan uses it (``wan/modules/t5.py`` ``T5Encoder``).

    Parameter names follow the official checkpoint (``token_embedding``, ``blocks.i.attn.q`` ...,
    with ``ffn.gate.0`` shortened to ``ffn.gate``); ``sanitize`` maps both layouts onto them.
    """

    def __init__(self, args: UMT5Args):
        super().__init__()
        self.args = args
        self.token_embedding = nn.Embedding(args.vocab_size, args.dim)
        if args.shared_pos:
            self.pos_embedding = RelativePositionBias(args.num_buckets, args.num_heads)
        self.blocks = [T5Block(args) for _ in range(args.num_layers)]
        self.norm = nn.RMSNorm(args.dim, eps=args.eps)

    def __call__(self, ids: mx.array, mask: mx.array | None = None) -> mx.array:
        """ids: int [B, L] token ids; mask: [B, L] (1/True = real token, 0 = padding) or None.

        Returns the final-normed hidden states [B, L, dim] float32 for every position (padding rows
        included; callers keep the first ``mask.sum()`` rows). The residual stream and the norms are
        float32; matmuls and attention run in the weights' dtype.
        """
        b, n = ids.shape
        if mask is None:
            mask = mx.ones((b, n), dtype=mx.bool_)
        keep = (mask != 0)[:, None, None, :]
        buckets = mx.array(relative_position_buckets(n, self.args.num_buckets, self.args.max_distance))
        shared = self.pos_embedding(buckets) if self.args.shared_pos else None
        x = self.token_embedding(ids).astype(mx.float32)
        for block in self.blocks:
            x = block(x, keep, buckets, shared)
        return self.norm(x).astype(mx.float32)


# HF UMT5EncoderModel sub-names -> ours (after the "encoder.block.{i}." prefix).
_HF_BLOCK = {
    "layer.0.layer_norm": "norm1",
    "layer.0.SelfAttention.q": "attn.q",
    "layer.0.SelfAttention.k": "attn.k",
    "layer.0.SelfAttention.v": "attn.v",
    "layer.0.SelfAttention.o": "attn.o",
    "layer.0.SelfAttention.relative_attention_bias": "pos_embedding.embedding",
    "layer.1.layer_norm": "norm2",
    "layer.1.DenseReluDense.wi_0": "ffn.gate",
    "layer.1.DenseReluDense.wi_1": "ffn.fc1",
    "layer.1.DenseReluDense.wo": "ffn.fc2",
}


def _hf_key(key: str) -> str:
    if key == "encoder.final_layer_norm.weight":
        return "norm.weight"
    if key.startswith("encoder.block."):
        idx, rest = key[len("encoder.block.") :].split(".", 1)
        sub, leaf = rest.rsplit(".", 1)
        if sub in _HF_BLOCK:
            return f"blocks.{idx}.{_HF_BLOCK[sub]}.{leaf}"
    return key  # unknown keys pass through unchanged so load_strict names them


def sanitize(weights: dict[str, mx.array], layout: str = "official") -> dict[str, mx.array]:
    """Map a UMT5 encoder checkpoint onto ``UMT5Encoder``'s parameter names.

    layout "official": Wan's ``models_t5_umt5-xxl-enc-bf16.pth`` names (``token_embedding``,
    ``blocks.i.{norm1,attn.q/k/v/o,pos_embedding.embedding,norm2,ffn.gate.0,ffn.fc1,ffn.fc2}``, ``norm``).
    layout "hf": ``transformers.UMT5EncoderModel`` names (``shared``, ``encoder.embed_tokens``,
    ``encoder.block.i.layer...``, ``encoder.final_layer_norm``), e.g. diffusers' ``text_encoder/``.
    The HF model ties ``encoder.embed_tokens.weight`` to ``shared.weight``; a file may hold either or
    both. Both present must be equal (the tie) and become one ``token_embedding``.

    Nothing is dropped: unknown keys are passed on so ``load_strict`` reports them.
    Raises ValueError for an unknown layout, WeightsError when the two tied embeddings differ.
    """
    if layout == "official":
        return {k.replace(".ffn.gate.0.", ".ffn.gate."): v for k, v in weights.items()}
    if layout != "hf":
        raise ValueError(f"unknown UMT5 layout {layout!r} (expected 'official' or 'hf')")
    weights = dict(weights)
    tied = [weights.pop(k) for k in ("shared.weight", "encoder.embed_tokens.weight") if k in weights]
    if len(tied) == 2 and (tied[0].shape != tied[1].shape or not mx.array_equal(tied[0], tied[1]).item()):
        raise WeightsError(
            "UMT5 (hf): shared.weight and encoder.embed_tokens.weight are tied in the "
            "model but differ in the checkpoint"
        )
    out = {_hf_key(k): v for k, v in weights.items()}
    if tied:
        out["token_embedding.weight"] = tied[0]
    return out


# ---------------------------------------------------------------- prompts -> context


def clean_prompt(text: str) -> str:
    """Wan's ``clean='whitespace'``: ftfy.fix_text, html.unescape twice, strip, collapse whitespace.

    Whitespace is matched with the ``regex`` package's ``\\s`` (Unicode White_Space), as the reference.
    """
    import ftfy
    import regex

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return regex.sub(r"\s+", " ", text).strip()


def load_tokenizer(tokenizer_dir: str | Path):
    """``transformers.AutoTokenizer`` from a local folder (``google/umt5-xxl/`` of the checkpoint).

    Never downloads and never falls back to another tokenizer. Raises TokenizerNotFound (a
    FileNotFoundError) when the folder or its tokenizer files are missing, TokenizerError (an OSError
    and ValueError, naming the file) when they cannot be read, and ValueError when
    the tokenizer does not have UMT5's special ids (pad 0, eos 1).
    """
    from mlx_video.io.tokenizers import load_tokenizer as _load

    path = Path(tokenizer_dir)
    tok = _load(path, ("tokenizer.json", "spiece.model"), "UMT5 tokenizer")
    if tok.pad_token_id != 0 or tok.eos_token_id != 1:
        raise ValueError(
            f"{path} is not a UMT5 tokenizer: pad id {tok.pad_token_id}, eos id {tok.eos_token_id} (expected 0 and 1)"
        )
    return tok


class WanTextEncoder:
    """Prompts -> Wan text context, as the official ``T5EncoderModel.__call__``.

    model: a loaded ``UMT5Encoder``; tokenizer: a transformers tokenizer (see ``load_tokenizer``);
    text_len: padded / truncated token count (512 in every Wan config).
    """

    def __init__(self, model: UMT5Encoder, tokenizer, text_len: int = 512):
        if len(tokenizer) > model.args.vocab_size:
            raise ValueError(
                f"tokenizer has {len(tokenizer)} tokens, more than the encoder's vocabulary ({model.args.vocab_size})"
            )
        self.model, self.tokenizer, self.text_len = model, tokenizer, text_len

    @classmethod
    def from_dir(cls, tokenizer_dir: str | Path, model: UMT5Encoder, text_len: int = 512) -> WanTextEncoder:
        """Pair ``model`` with the tokenizer in ``tokenizer_dir`` (errors as ``load_tokenizer``)."""
        return cls(model, load_tokenizer(tokenizer_dir), text_len)

    def tokenize(self, prompts: list[str]) -> tuple[mx.array, mx.array]:
        """Cleaned prompts -> (ids int32 [B, text_len], mask int32 [B, text_len]); ``</s>`` appended,
        padded with 0 to ``text_len`` and truncated to it (the official tokenizer call)."""
        enc = self.tokenizer(
            [clean_prompt(p) for p in prompts],
            padding="max_length",
            truncation=True,
            max_length=self.text_len,
            add_special_tokens=True,
            return_tensors="np",
        )
        return mx.array(enc["input_ids"].astype(np.int32)), mx.array(enc["attention_mask"].astype(np.int32))

    def encode(self, prompts: list[str]) -> list[mx.array]:
        """Encode a batch of prompts; returns one float32 ``[n_i, dim]`` per prompt, where n_i is
        the prompt's token count including ``</s>`` (rows past it are padding and dropped)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        ids, mask = self.tokenize(prompts)
        out = self.model(ids, mask)
        lengths = mask.sum(axis=1).tolist()
        return [out[i, :n] for i, n in enumerate(lengths)]
