"""Parity of the MLX Wan DiT (mlx_video/wan/transformer.py) with the official Wan2.2 WanModel and
with diffusers' WanTransformer3DModel (the Wan2.1 CLIP image branch: i2v / flf2v), at tiny sizes.

Weights: the reference is randomized (docs/ORACLES.md: std 0.1, tables 0.5, norms 1+0.1N), exported in
its real checkpoint layout, converted by our ``sanitize`` and loaded by ``load_strict``.
The official <-> diffusers key map below is the test's own (docs/wan.md 12), not the library's.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import torch

from mlx_video.io.weights import WeightsError, load_strict
from mlx_video.wan.transformer import WanModel, WanModelArgs, sanitize
from tests.oracles import randomize_, rel_err, wan
from tests.wan_tiny import diffusers_dit

TOL = 1e-4  # float32 module
TOL_ATTN = 3e-4  # float32 attention-heavy stack
SENS = 1e-2  # an input we claim to cover must move the output by at least this (>30x tolerance)

TINY = dict(dim=32, ffn_dim=48, freq_dim=16, num_heads=2, num_layers=2, text_dim=16, text_len=512, eps=1e-6)
T, H, W = 3, 6, 8  # latent grid -> tokens (3, 3, 4), L = 36, non-square
GRID = (T, H // 2, W // 2)
L = T * (H // 2) * (W // 2)
HEAD_DIM = TINY["dim"] // TINY["num_heads"]  # 16: RoPE split t 8, h 4, w 4


# ----------------------------------------------------------------------------- official <-> diffusers

_TOP = {
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "img_emb.proj.0": "condition_embedder.image_embedder.norm1",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
    "img_emb.proj.4": "condition_embedder.image_embedder.norm2",
    "img_emb.emb_pos": "condition_embedder.image_embedder.pos_embed",
    "head.head": "proj_out",
    "head.modulation": "scale_shift_table",
    "patch_embedding": "patch_embedding",
}
_BLOCK = {"norm3": "norm2", "ffn.0": "ffn.net.0.proj", "ffn.2": "ffn.net.2", "modulation": "scale_shift_table"}
for _a, _b in (("self_attn", "attn1"), ("cross_attn", "attn2")):
    _BLOCK.update(
        {
            f"{_a}.{p}": f"{_b}.{q}"
            for p, q in (
                ("q", "to_q"),
                ("k", "to_k"),
                ("v", "to_v"),
                ("o", "to_out.0"),
                ("norm_q", "norm_q"),
                ("norm_k", "norm_k"),
                ("k_img", "add_k_proj"),
                ("v_img", "add_v_proj"),
                ("norm_k_img", "norm_added_k"),
            )
        }
    )


def _rename(key: str, top: dict, block: dict) -> str:
    if key.startswith("blocks."):
        _, i, rest = key.split(".", 2)
        table, prefix = block, f"blocks.{i}."
    else:
        table, prefix, rest = top, "", key
    for src in sorted(table, key=len, reverse=True):
        if rest == src or rest.startswith(src + "."):
            return prefix + table[src] + rest[len(src) :]
    raise KeyError(key)


def official_to_diffusers(sd: dict) -> dict:
    return {_rename(k, _TOP, _BLOCK): v for k, v in sd.items()}


def diffusers_to_official(sd: dict) -> dict:
    inv = lambda d: {v: k for k, v in d.items()}
    return {_rename(k, inv(_TOP), inv(_BLOCK)): v for k, v in sd.items()}


# ----------------------------------------------------------------------------- builders


def sharpen_cross_attention_(module, factor=3.0):
    """Scale the cross-attention q/k RMSNorm weights. With random weights the attention over the 512
    text rows (mostly identical padding rows) is near uniform and the prompt moved the output by only
    ~0.15%; ×3 logits' scale makes text and image tokens matter by ~8% (see assert_sensitive)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if any(s in name for s in ("cross_attn.norm_", "attn2.norm_")):
                p.mul_(factor)
    return module


def official(model_type="t2v", in_dim=8, out_dim=8, seed=0):
    ref = wan().model.WanModel(model_type=model_type, in_dim=in_dim, out_dim=out_dim, **TINY).eval()
    return sharpen_cross_attention_(randomize_(ref, seed=seed))


def diffusers_model(in_dim=8, out_dim=8, image_dim=None, pos_len=None, seed=0):
    dm = diffusers_dit(TINY, in_dim, out_dim, image_dim, pos_len)
    sharpen_cross_attention_(randomize_(dm, seed=seed))
    dm.rope = type(dm.rope)(HEAD_DIM, (1, 2, 2), 1024)  # randomize_ also filled the RoPE buffers
    return dm


def state(module) -> dict:
    return {k: mx.array(v.detach().numpy()) for k, v in module.state_dict().items() if not k.startswith("rope.")}


def ours(args: WanModelArgs, weights: dict, layout: str) -> WanModel:
    return load_strict(WanModel(args), sanitize(weights, layout), what="Wan DiT")


def latents(rng, b=1, c=8):
    """Channels-first float32 numpy [B, C, T, H, W] (the references' layout)."""
    return rng.standard_normal((b, c, T, H, W)).astype(np.float32)


def cl(a: np.ndarray) -> mx.array:
    """[B, C, T, H, W] numpy -> channels-last MLX."""
    return mx.array(np.ascontiguousarray(a.transpose(0, 2, 3, 4, 1)))


def run_official(ref, x, t, ctxs, y=None):
    """Official forward (lists of per-sample tensors) -> channels-last numpy [B, T, H, W, C]."""
    with torch.no_grad():
        out = ref(
            [torch.from_numpy(u) for u in x],
            torch.as_tensor(t),
            [torch.from_numpy(c) for c in ctxs],
            L,
            y=None if y is None else [torch.from_numpy(u) for u in y],
        )
    return np.stack([o.numpy() for o in out]).transpose(0, 2, 3, 4, 1)


def run_diffusers(dm, x, t, ctx_padded, clip=None):
    with torch.no_grad():
        out = dm(
            torch.from_numpy(x),
            torch.as_tensor(t),
            torch.from_numpy(ctx_padded),
            encoder_hidden_states_image=None if clip is None else torch.from_numpy(clip),
            return_dict=False,
        )[0]
    return out.numpy().transpose(0, 2, 3, 4, 1)


def pad(ctxs, n=512):
    return np.stack([np.concatenate([c, np.zeros((n - len(c), c.shape[1]), np.float32)]) for c in ctxs])


def texts(rng, lengths=(7,)):
    return [rng.standard_normal((n, TINY["text_dim"])).astype(np.float32) for n in lengths]


def assert_sensitive(a, b, what):
    e = rel_err(a, b)
    assert e > SENS, f"{what} moves the output by only {e:.2e}: the comparison would be blind to it"


# ----------------------------------------------------------------------------- tests


def test_t2v_official_and_diffusers():
    rng = np.random.default_rng(0)
    ref = official("t2v")
    sd = state(ref)
    x, ctx, t = latents(rng), texts(rng), np.array([700.0])
    want = run_official(ref, x, t, ctx)

    args = WanModelArgs.from_config(dict(model_type="t2v", in_dim=8, out_dim=8, **TINY))
    m = ours(args, sd, "official")
    rope = m.rope_tables(GRID)
    c = m.embed_text([mx.array(u) for u in ctx])
    got = m(cl(x), mx.array(t), c, rope)
    assert got.shape == (1, T, H, W, 8) and got.dtype == mx.float32
    assert rel_err(got, want) < TOL_ATTN

    # the same weights in the diffusers layout, through diffusers and through our diffusers sanitize
    dm = diffusers_model()
    dm.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in official_to_diffusers(sd).items()}, strict=True)
    want_d = run_diffusers(dm, x, t, pad(ctx))
    assert rel_err(want_d, want) < TOL_ATTN  # our test key map is right
    md = ours(WanModelArgs.from_config(dm.config), official_to_diffusers(sd), "diffusers")
    assert rel_err(md(cl(x), mx.array(t), md.embed_text(mx.array(pad(ctx))), rope), want_d) < TOL_ATTN

    # every input the test claims to cover moves the output well past the tolerance
    assert_sensitive(m(cl(x), mx.array([300.0]), c, rope), got, "timestep")
    assert_sensitive(m(cl(x), mx.array(t), m.embed_text([mx.array(u) for u in texts(rng)]), rope), got, "text")
    assert_sensitive(m(cl(x), mx.array(t), c, m.rope_tables(GRID, t_positions=[2, 1, 0])), got, "RoPE t-positions")
    assert_sensitive(m(cl(latents(rng)), mx.array(t), c, rope), got, "latent")


def test_ti2v_per_token_timesteps():
    """Wan2.2 TI2V: per-token t (frame-0 tokens t=0, the rest t) in the [B, T] and [B, L] forms, and
    a t that varies inside frames (the per-token path), vs the official model and diffusers."""
    rng = np.random.default_rng(1)
    ref = official("ti2v", in_dim=12, out_dim=12, seed=1)
    sd = state(ref)
    m = ours(WanModelArgs.from_config(dict(model_type="ti2v", in_dim=12, out_dim=12, **TINY)), sd, "official")
    x, ctx = latents(rng, c=12), texts(rng, (5,))
    rope, c = m.rope_tables(GRID), m.embed_text([mx.array(u) for u in ctx])

    t_frames = np.array([[0.0, 650.0, 650.0]])
    t_tokens = np.repeat(t_frames, L // T, axis=1)  # [1, L]
    want = run_official(ref, x, t_tokens, ctx)
    got_frames = m(cl(x), mx.array(t_frames), c, rope)
    got_tokens = m(cl(x), mx.array(t_tokens), c, rope)
    assert rel_err(got_frames, want) < TOL_ATTN
    assert rel_err(got_tokens, got_frames) < 1e-6
    assert_sensitive(m(cl(x), mx.array([650.0]), c, rope), got_frames, "per-frame timestep")

    t_rand = rng.uniform(0, 1000, (1, L))  # varies inside a frame: per-token path
    want_r = run_official(ref, x, t_rand, ctx)
    got_r = m(cl(x), mx.array(t_rand.astype(np.float32)), c, rope)
    assert rel_err(got_r, want_r) < TOL_ATTN
    assert_sensitive(got_r, got_tokens, "per-token timestep")

    dm = diffusers_model(12, 12)
    dm.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in official_to_diffusers(sd).items()}, strict=True)
    want_d = run_diffusers(dm, x, t_tokens, pad(ctx))
    md = ours(WanModelArgs.from_config(dm.config), official_to_diffusers(sd), "diffusers")
    assert rel_err(md(cl(x), mx.array(t_frames), c, rope), want_d) < TOL_ATTN


def test_i2v_wan22_with_y():
    """Wan2.2 I2V-A14B layout: no CLIP branch, y = [mask(4), latent(8)] concatenated on channels."""
    rng = np.random.default_rng(2)
    ref = official("i2v", in_dim=20, out_dim=8, seed=2)
    sd = state(ref)
    args = WanModelArgs.from_config(dict(model_type="i2v", in_dim=20, out_dim=8, **TINY), weights=sd)
    assert args.image_dim is None
    m = ours(args, sd, "official")
    x, y, ctx, t = latents(rng), latents(rng, c=12), texts(rng), np.array([900.0])
    want = run_official(ref, x, t, ctx, y=y)
    rope, c = m.rope_tables(GRID), m.embed_text([mx.array(u) for u in ctx])
    got = m(cl(x), mx.array(t), c, rope, y=cl(y))
    assert rel_err(got, want) < TOL_ATTN
    assert_sensitive(m(cl(x), mx.array(t), c, rope, y=cl(latents(rng, c=12))), got, "y")


@pytest.mark.parametrize("flf", [False, True], ids=["i2v_clip", "flf2v"])
def test_wan21_clip_branch(flf):
    """Wan2.1 I2V / FLF2V image cross-attention (k_img, v_img, norm_k_img, MLPProj, FLF2V emb_pos)
    against diffusers, through both the diffusers layout and the official layout."""
    rng = np.random.default_rng(3)
    n_img, image_dim = 5, 24  # stand-ins for 257 tokens x 1280 (CLIP ViT-H)
    pos_len = 2 * n_img if flf else None
    dm = diffusers_model(20, 8, image_dim=image_dim, pos_len=pos_len, seed=3)
    sd_d = state(dm)
    x, y, ctx, t = latents(rng), latents(rng, c=12), texts(rng, (9,)), np.array([500.0])
    k = 2 if flf else 1
    clip = rng.standard_normal((k, n_img, image_dim)).astype(np.float32)  # diffusers: [B*k, 257, 1280]
    want = run_diffusers(dm, np.concatenate([x, y], axis=1), t, pad(ctx), clip)

    args = WanModelArgs.from_config(dm.config)
    assert (args.model_type, args.image_dim, args.pos_embed_seq_len) == ("flf2v" if flf else "i2v", image_dim, pos_len)
    clip_fea = mx.array(clip.reshape(1, k * n_img, image_dim))  # ours: [B, 257*k, 1280]
    for layout, weights in (("diffusers", sd_d), ("official", diffusers_to_official(sd_d))):
        m = ours(args, weights, layout)
        rope, c, img = m.rope_tables(GRID), m.embed_text([mx.array(u) for u in ctx]), m.embed_image(clip_fea)
        got = m(cl(x), mx.array(t), c, rope, y=cl(y), img=img)
        assert rel_err(got, want) < TOL_ATTN, layout

    other = m.embed_image(mx.array(rng.standard_normal((1, k * n_img, image_dim)).astype(np.float32)))
    assert_sensitive(m(cl(x), mx.array(t), c, rope, y=cl(y), img=other), got, "image tokens")
    if flf:  # first/last order matters through emb_pos
        swapped = m.embed_image(mx.array(clip[::-1].reshape(1, k * n_img, image_dim)))
        assert_sensitive(m(cl(x), mx.array(t), c, rope, y=cl(y), img=swapped), got, "first/last image order")
    with pytest.raises(ValueError):
        m(cl(x), mx.array(t), c, rope, y=cl(y))  # the CLIP branch needs img


def _patch_official_t_positions(ref, pos):
    """Replace the first len(pos) temporal rows of the official RoPE table by rows ``pos``."""
    ct = (HEAD_DIM - 4 * (HEAD_DIM // 6)) // 2
    f = ref.freqs.clone()
    f[: len(pos), :ct] = ref.freqs[list(pos), :ct]
    ref.freqs = f


@pytest.mark.parametrize("pos", [[2, 1, 0], [0, 5, 2]], ids=["reversed", "custom"])
def test_explicit_temporal_positions(pos):
    """t_positions = WanFM reversed time / musubi f_indices, vs the official model with its RoPE
    temporal rows replaced (and diffusers with its cos/sin buffers replaced)."""
    rng = np.random.default_rng(4)
    ref = official("t2v", seed=4)
    sd = state(ref)
    m = ours(WanModelArgs(model_type="t2v", in_dim=8, out_dim=8, **TINY), sd, "official")
    x, ctx, t = latents(rng), texts(rng), np.array([400.0])
    c = m.embed_text([mx.array(u) for u in ctx])
    default = m(cl(x), mx.array(t), c, m.rope_tables(GRID))
    got = m(cl(x), mx.array(t), c, m.rope_tables(GRID, t_positions=pos))
    _patch_official_t_positions(ref, pos)
    assert rel_err(got, run_official(ref, x, t, ctx)) < TOL_ATTN
    assert_sensitive(got, default, "temporal RoPE positions")

    dm = diffusers_model()
    dm.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in official_to_diffusers(sd).items()}, strict=True)
    td = dm.rope.t_dim
    for buf in (dm.rope.freqs_cos, dm.rope.freqs_sin):
        buf[: len(pos), :td] = buf[pos, :td].clone()
    assert rel_err(got, run_diffusers(dm, x, t, pad(ctx))) < TOL_ATTN


def test_batch_of_two_equals_two_calls():
    """Batched CFG: B=2 with different contexts (and per-token t) equals two B=1 calls and the
    official batch."""
    rng = np.random.default_rng(5)
    ref = official("ti2v", seed=5)
    m = ours(WanModelArgs(model_type="ti2v", in_dim=8, out_dim=8, **TINY), state(ref), "official")
    x1 = latents(rng)
    x = np.concatenate([x1, x1])
    ctx = texts(rng, (7, 12))
    t_frames = np.array([[0.0, 800.0, 800.0]] * 2)
    rope, c = m.rope_tables(GRID), m.embed_text([mx.array(u) for u in ctx])
    got = m(cl(x), mx.array(t_frames), c, rope)
    for i in range(2):
        one = m(cl(x[i : i + 1]), mx.array(t_frames[i : i + 1]), c[i : i + 1], rope)
        assert rel_err(got[i : i + 1], one) < 1e-6
    assert_sensitive(got[0], got[1], "context in a batch")
    want = run_official(ref, x, np.repeat(t_frames, L // T, axis=1), ctx)
    assert rel_err(got, want) < TOL_ATTN


def test_timestep_forms_agree():
    rng = np.random.default_rng(6)
    m = ours(WanModelArgs(model_type="t2v", in_dim=8, out_dim=8, **TINY), state(official(seed=6)), "official")
    x, rope = cl(latents(rng, b=2)), m.rope_tables(GRID)
    c = m.embed_text([mx.array(u) for u in texts(rng, (3, 4))])
    ts = np.array([250.0, 600.0], np.float32)
    a = m(x, mx.array(ts), c, rope)
    b = m(x, mx.array(np.repeat(ts[:, None], T, 1)), c, rope)
    d = m(x, mx.array(np.repeat(ts[:, None], L, 1)), c, rope)
    assert rel_err(b, a) < 1e-6 and rel_err(d, a) < 1e-6
    with pytest.raises(ValueError):
        m(x, mx.array(np.zeros((2, 5), np.float32)), c, rope)  # neither T nor L
    with pytest.raises(ValueError):
        m(x, mx.array(ts), c, m.rope_tables((T, 2, 2)))  # rope for another grid


def test_strict_loading_names_the_key():
    sd = state(official("t2v", seed=7))
    args = WanModelArgs(model_type="t2v", in_dim=8, out_dim=8, **TINY)
    w = sanitize(sd, "official")
    missing = dict(w)
    del missing["blocks.1.norm_cross.weight"]
    with pytest.raises(WeightsError, match=r"blocks\.1\.norm_cross\.weight"):
        load_strict(WanModel(args), missing)
    with pytest.raises(WeightsError, match=r"blocks\.0\.cross_attn\.k_img\.weight"):
        load_strict(WanModel(args), {**w, "blocks.0.cross_attn.k_img.weight": mx.zeros((32, 32))})
    bad = dict(sd)
    bad["blocks.0.self_attn.q.weight"] = mx.zeros((32, 16))
    with pytest.raises(WeightsError, match=r"blocks\.0\.self_attn\.q\.weight"):
        load_strict(WanModel(args), sanitize(bad, "official"))
    # a Wan2.1 CLIP checkpoint read as Wan2.2 i2v fails loudly, naming the image keys
    with pytest.raises(WeightsError, match=r"img_emb"):
        load_strict(
            WanModel(WanModelArgs(model_type="i2v", in_dim=8, out_dim=8, **TINY)),
            {**w, "img_emb.emb_pos": mx.zeros((1, 514, 1280))},
        )
    with pytest.raises(ValueError):
        sanitize(sd, "comfy")


def test_from_config_real_shapes():
    """The shipped configs (docs/wan.md 1) in both spellings give the same args."""
    off = {
        "_class_name": "WanModel",
        "model_type": "ti2v",
        "dim": 3072,
        "in_dim": 48,
        "out_dim": 48,
        "num_heads": 24,
        "num_layers": 30,
        "ffn_dim": 14336,
        "freq_dim": 256,
        "text_len": 512,
        "eps": 1e-6,
    }
    dif = {
        "_class_name": "WanTransformer3DModel",
        "num_attention_heads": 24,
        "attention_head_dim": 128,
        "in_channels": 48,
        "out_channels": 48,
        "ffn_dim": 14336,
        "num_layers": 30,
        "freq_dim": 256,
        "text_dim": 4096,
        "eps": 1e-6,
        "patch_size": [1, 2, 2],
        "qk_norm": "rms_norm_across_heads",
        "cross_attn_norm": True,
        "image_dim": None,
        "added_kv_proj_dim": None,
        "rope_max_seq_len": 1024,
    }
    assert WanModelArgs.from_config(off) == WanModelArgs.from_config(dif)
    i2v = {
        "model_type": "i2v",
        "dim": 5120,
        "in_dim": 36,
        "out_dim": 16,
        "num_heads": 40,
        "num_layers": 40,
        "ffn_dim": 13824,
    }
    flf = WanModelArgs.from_config(dict(i2v, model_type="flf2v"))
    assert (flf.image_dim, flf.pos_embed_seq_len, flf.head_dim) == (1280, 514, 128)
    assert WanModelArgs.from_config(i2v).image_dim is None  # Wan2.2 A14B
    assert WanModelArgs.from_config(i2v, weights=["img_emb.proj.0.weight"]).image_dim == 1280  # Wan2.1
    m = WanModel(WanModelArgs(**{**TINY, "num_layers": 1}))
    rope = m.rope_tables((2, 3, 4))
    assert rope.cos.shape == (24, 1, HEAD_DIM // 2) and rope.cos.dtype == mx.float32


def test_bf16_weights():
    """Production numerics: bf16 weights/projections/attention, float32 residual stream and output."""
    rng = np.random.default_rng(8)
    ref = official("ti2v", seed=8)
    m = ours(WanModelArgs(model_type="ti2v", in_dim=8, out_dim=8, **TINY), state(ref), "official")
    m.set_dtype(mx.bfloat16)
    x, ctx = latents(rng), texts(rng, (6,))
    t_frames = np.array([[0.0, 500.0, 500.0]])
    c = m.embed_text([mx.array(u).astype(mx.bfloat16) for u in ctx])
    assert c.dtype == mx.bfloat16
    got = m(cl(x), mx.array(t_frames), c, m.rope_tables(GRID))
    assert got.dtype == mx.float32
    assert rel_err(got, run_official(ref, x, np.repeat(t_frames, L // T, axis=1), ctx)) < 2e-2
