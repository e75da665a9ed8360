"""Wan text encoder (UMT5) parity against the official Wan2.2 T5Encoder and transformers' UMT5EncoderModel,
plus the official prompt cleaning + tokenizer call on the tiny fixture tokenizer."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
import torch

from mlx_video.io.weights import WeightsError, load_strict
from mlx_video.wan.t5 import (
    UMT5Args,
    UMT5Encoder,
    WanTextEncoder,
    clean_prompt,
    load_tokenizer,
    relative_position_buckets,
    sanitize,
)
from tests.oracles import randomize_, rel_err, wan

ROOT = Path(__file__).resolve().parents[1]
TOK_DIR = ROOT / "tests" / "fixtures" / "tiny-umt5-tokenizer"
TOL = 1e-4
TINY = dict(dim=32, dim_attn=32, dim_ffn=64, num_heads=4, num_layers=2, num_buckets=32)

MESSY = [
    "A cat   walking\ton the beach at sunset,\n cinematic.  ",
    "Tom &amp;amp; Jerry &lt;3 the city at night &quot;neon&quot;",
    "cafÃ© with a cup of coffee\u00a0and\u3000a book",  # mojibake, NBSP, ideographic space
    "An astronaut riding a horse on the moon, close up shot, golden hour",
    " ".join(["a slow aerial view of the ocean waves"] * 80),  # > 512 tokens: truncated
]


def _vocab() -> int:
    return len(json.loads((TOK_DIR / "tokenizer.json").read_text())["model"]["vocab"])


def _to_mx(sd) -> dict:
    return {k: mx.array(v.detach().float().numpy()) for k, v in sd.items()}


def _official(seed=0):
    W = wan()
    m = W.t5.T5Encoder(vocab=_vocab(), shared_pos=False, dropout=0.0, **TINY).eval()
    randomize_(m, seed=seed, std=0.1)
    with torch.no_grad():  # relative-position tables are "tables": std 0.5
        for blk in m.blocks:
            blk.pos_embedding.embedding.weight.mul_(5.0)
    return m


def _ours(weights, layout, args=None) -> UMT5Encoder:
    args = args or UMT5Args(vocab_size=_vocab(), **TINY)
    return load_strict(UMT5Encoder(args), sanitize(weights, layout), "umt5")


def _inputs(seed=1, b=2, n=40, lengths=(40, 23)):
    g = np.random.default_rng(seed)
    ids = g.integers(3, _vocab(), size=(b, n))
    mask = (np.arange(n)[None] < np.array(lengths)[:, None]).astype(np.int64)
    ids = ids * mask  # padding id 0 after the end, like the tokenizer
    return ids, mask


def test_relative_buckets_match_references():
    W = wan()
    n = 1100  # every distance a 512-token prompt (and more) can produce
    rel = torch.arange(n)[None, :] - torch.arange(n)[:, None]
    ref = W.t5.T5RelativeEmbedding(32, 4, bidirectional=True)._relative_position_bucket(rel).numpy()
    ours = relative_position_buckets(n, 32, 128)
    assert (ours == ref).all()


def test_official_parity_and_sensitivity():
    ref = _official()
    ids, mask = _inputs()
    with torch.no_grad():
        want = ref(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    model = _ours(_to_mx(ref.state_dict()), "official")
    got = model(mx.array(ids.astype(np.int32)), mx.array(mask))
    err = rel_err(got, want)
    assert err <= TOL, err

    # The mask matters: the same ids without it change the short prompt's real rows.
    open_mask = model(mx.array(ids.astype(np.int32)), mx.ones(mask.shape))
    n1 = int(mask[1].sum())
    assert rel_err(open_mask[1, :n1], want[1, :n1]) > 100 * TOL
    # The per-block relative-position bias matters (zeroed -> far off), and so does its block index.
    for blk in model.blocks:
        blk.pos_embedding.embedding.weight = mx.zeros_like(blk.pos_embedding.embedding.weight)
    assert rel_err(model(mx.array(ids.astype(np.int32)), mx.array(mask)), want) > 100 * TOL
    sd = ref.state_dict()
    a, b = "blocks.0.pos_embedding.embedding.weight", "blocks.1.pos_embedding.embedding.weight"
    swapped = _ours(_to_mx({**sd, a: sd[b], b: sd[a]}), "official")
    assert rel_err(swapped(mx.array(ids.astype(np.int32)), mx.array(mask)), want) > 100 * TOL


def _hf(seed=2):
    from transformers import UMT5Config, UMT5EncoderModel

    cfg = UMT5Config(
        vocab_size=_vocab(),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_heads=4,
        num_layers=2,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        attn_implementation="eager",
    )
    m = UMT5EncoderModel(cfg).eval()
    randomize_(m, seed=seed, std=0.1)
    with torch.no_grad():
        for blk in m.encoder.block:
            blk.layer[0].SelfAttention.relative_attention_bias.weight.mul_(5.0)
    return m, cfg


def test_hf_parity_and_tied_embeddings():
    ref, cfg = _hf()
    ids, mask = _inputs(seed=3, lengths=(31, 40))
    with torch.no_grad():
        want = ref(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()
    sd = _to_mx(ref.state_dict())
    assert "shared.weight" in sd and "encoder.embed_tokens.weight" in sd
    args = UMT5Args.from_config(cfg.to_dict())
    assert args == UMT5Args(vocab_size=_vocab(), **TINY)
    for drop in (None, "shared.weight", "encoder.embed_tokens.weight"):  # both tied names, or either one
        w = {k: v for k, v in sd.items() if k != drop}
        got = _ours(w, "hf", args)(mx.array(ids.astype(np.int32)), mx.array(mask))
        err = rel_err(got, want)
        assert err <= TOL, (drop, err)
    bad = dict(sd, **{"shared.weight": sd["shared.weight"] + 1})
    with pytest.raises(WeightsError, match="tied"):
        sanitize(bad, "hf")


def test_config_readers():
    W = wan()
    off = UMT5Args.from_config(
        {
            "vocab_size": 256384,
            "dim": 4096,
            "dim_attn": 4096,
            "dim_ffn": 10240,
            "num_heads": 64,
            "encoder_layers": 24,
            "decoder_layers": 24,
            "num_buckets": 32,
            "shared_pos": False,
            "dropout": 0.1,
        }
    )
    assert off == UMT5Args()
    with pytest.raises(ValueError):
        UMT5Args.from_config({"d_model": 8, "feed_forward_proj": "relu"})
    assert callable(W.t5.umt5_xxl)


def test_strict_loading_names_keys():
    ref = _official()
    w = sanitize(_to_mx(ref.state_dict()), "official")
    model = UMT5Encoder(UMT5Args(vocab_size=_vocab(), **TINY))
    k = "blocks.1.attn.o.weight"
    cases = [
        ({kk: v for kk, v in w.items() if kk != k}, k),
        ({**w, "blocks.1.attn.extra.weight": w[k]}, "blocks.1.attn.extra.weight"),
        ({**w, k: w[k][:, :8]}, k),
    ]
    for bad, name in cases:
        with pytest.raises(WeightsError, match=name.replace(".", r"\.")):
            load_strict(model, bad, "umt5")
    with pytest.raises(ValueError):
        sanitize(w, "diffusers")


def _official_tokenizer(text_len=512):
    return wan().tokenizers.HuggingfaceTokenizer(name=str(TOK_DIR), seq_len=text_len, clean="whitespace")


def test_cleaning_and_tokenizer_call_match_official():
    W = wan()
    for p in MESSY:
        assert clean_prompt(p) == W.tokenizers.whitespace_clean(W.tokenizers.basic_clean(p))
    assert clean_prompt(MESSY[1]) == 'Tom & Jerry <3 the city at night "neon"'
    assert clean_prompt(MESSY[2]).startswith("café with")

    enc = WanTextEncoder.from_dir(TOK_DIR, UMT5Encoder(UMT5Args(vocab_size=_vocab(), **TINY)))
    ids, mask = enc.tokenize(MESSY)
    ref_ids, ref_mask = _official_tokenizer()(MESSY, return_mask=True, add_special_tokens=True)
    assert np.array_equal(np.array(ids), ref_ids.numpy())
    assert np.array_equal(np.array(mask), ref_mask.numpy())
    lengths = np.array(mask).sum(1)
    assert ids.shape == (len(MESSY), 512) and lengths[-1] == 512 and int(ids[-1, -1]) == 1  # truncated, EOS kept
    assert (lengths[:-1] > 8).all()  # real prompts give several tokens, not <unk> soup
    assert (np.array(ids)[:4] == 2).mean() < 0.2


def test_encode_matches_official_call():
    ref = _official(seed=5)
    prompts = MESSY[:2] + MESSY[3:]
    ref_ids, ref_mask = _official_tokenizer()(prompts, return_mask=True, add_special_tokens=True)
    with torch.no_grad():
        ctx = ref(ref_ids, ref_mask)
    want = [u[:v] for u, v in zip(ctx, ref_mask.gt(0).sum(dim=1).long())]
    enc = WanTextEncoder.from_dir(TOK_DIR, _ours(_to_mx(ref.state_dict()), "official"))
    got = enc.encode(prompts)
    assert [g.shape for g in got] == [tuple(w.shape) for w in want]
    for g, w in zip(got, want):
        assert g.dtype == mx.float32 and rel_err(g, w) <= TOL
    # the text matters
    other = enc.encode(["A dog running in the snow"])[0]
    assert rel_err(other[:3], got[0][:3]) > 100 * TOL
    # a shorter text_len truncates like the official call
    short = WanTextEncoder(enc.model, enc.tokenizer, text_len=16).encode(prompts[-1:])[0]
    assert short.shape == (16, 32)


def test_tokenizer_folder_errors(tmp_path):
    model = UMT5Encoder(UMT5Args(vocab_size=_vocab(), **TINY))
    with pytest.raises(FileNotFoundError):
        WanTextEncoder.from_dir(tmp_path / "missing", model)
    with pytest.raises(FileNotFoundError):
        WanTextEncoder.from_dir(tmp_path, model)
    (tmp_path / "tokenizer.json").write_text("{not json")
    (tmp_path / "tokenizer_config.json").write_text((TOK_DIR / "tokenizer_config.json").read_text())
    with pytest.raises(OSError):
        load_tokenizer(tmp_path)
    with pytest.raises(ValueError):  # tokenizer larger than the encoder's vocabulary
        WanTextEncoder(UMT5Encoder(UMT5Args(vocab_size=100, **TINY)), load_tokenizer(TOK_DIR))


def test_tiny_tokenizer_script_is_deterministic(tmp_path):
    spec = importlib.util.spec_from_file_location("make_tiny_tokenizer", ROOT / "scripts" / "make_tiny_tokenizer.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.build(tmp_path)
    for f in sorted(TOK_DIR.iterdir()):
        assert (tmp_path / f.name).read_bytes() == f.read_bytes(), f.name
