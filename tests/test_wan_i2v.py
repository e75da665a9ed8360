"""Wan2.2 I2V-A14B (two experts, no CLIP) and Wan2.1 I2V-14B (CLIP) pipelines against the official loops
re-run on the reference modules with injected noise; expert switch step, per-expert guide scales, only
the active expert resident; converters from the official and diffusers layouts, strict."""

import json
import shutil
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from mlx_video.io.weights import WeightsError
from mlx_video.wan import denoise as D
from mlx_video.wan import pipeline as P
from mlx_video.wan.checkpoint import convert_wan
from mlx_video.wan.clip import preprocess
from mlx_video.wan.config import TASKS
from tests import oracles
from tests.helpers import IMAGES
from tests.oracles import rel_err
from tests.test_wan_flf2v import _official_experts, _official_vae21
from tests.test_wan_transformer import official_to_diffusers
from tests.wan_tiny import diffusers_dit

ROOT = Path(__file__).resolve().parents[1]
A14B = ROOT / "assets" / "tiny-Wan2.2-I2V-A14B"
I2V21 = ROOT / "assets" / "tiny-Wan2.1-I2V-14B"
IMG = IMAGES / "chelsea.png"  # 451x300: the aspect drives the size
STEPS, SHIFT, G, FRAMES, AREA = 4, 5.0, (1.0, 8.0), 9, 64 * 48  # UniPC t = 999, 937, 833, 624: 2 high, 2 low


@pytest.fixture(scope="module")
def a14b(tmp_path_factory):
    out = convert_wan(A14B, tmp_path_factory.mktemp("conv") / "a14b", dtype="float32")
    return P.WanPipeline(out, dtype=mx.float32, offload=True)


def _inputs(seed=0):
    w, h = P.i2v_size(Image.open(IMG).size, AREA)
    g = np.random.default_rng(seed)
    T = (FRAMES - 1) // 4 + 1
    noise = g.standard_normal((1, T, h // 8, w // 8, 16)).astype(np.float32)
    ctx = [g.standard_normal((n, 32)).astype(np.float32) for n in (5, 8)]
    return noise, ctx, (w, h)


def _reference_i2v(models, noise, ctx, wh, guide, clip=None):
    """The loop body of Wan2.2 ``image2video.py`` (experts) / Wan2.1 ``image2video.py`` (one model, CLIP),
    on the reference modules: official VAE 2.1 y, UniPC from the official scheduler, CFG per step."""
    vae, scale = _official_vae21()
    W, H = wh
    img = torch.from_numpy(np.asarray(Image.open(IMG).convert("RGB"), np.float32) / 255.0).permute(2, 0, 1)
    img = (img - 0.5) / 0.5
    T = (FRAMES - 1) // 4 + 1
    video = torch.zeros(3, FRAMES, H, W)
    video[:, 0] = torch.nn.functional.interpolate(img[None], size=(H, W), mode="bicubic")[0]
    msk = torch.zeros(4, T, H // 8, W // 8)
    msk[:, 0] = 1  # I2V: latent 0 all four channels, the rest 0
    sched = oracles.wan_scheduler("unipc", STEPS, SHIFT)
    x = torch.from_numpy(noise[0]).permute(3, 0, 1, 2)
    c, u = (torch.from_numpy(a) for a in ctx)
    seq = T * H * W // 256
    used = []
    with torch.no_grad():
        y = torch.cat([msk, vae.encode(video[None], scale)[0]])
        for t in sched.timesteps:
            name = "high" if t.item() >= 900 else "low"
            m, g = models[name], (guide[1] if name == "high" else guide[0])
            used.append(name)
            ts = torch.stack([t])
            vc, vu = (m(x, ts, cc, seq, y, clip) for cc in (c, u))
            x = sched.step((vu + g * (vc - vu))[None], t, x[None], return_dict=False)[0][0]
    return x.permute(1, 2, 3, 0)[None].numpy(), used


def _generate(pipe, task, noise, ctx, guide, **kw):
    """``pipe.generate`` on IMG at 64*48 with this file's frames, steps and shift, the noise and contexts given."""
    return pipe.generate(
        task=task,
        images=[IMG],
        size="64*48",
        frame_num=FRAMES,
        sample_steps=STEPS,
        sample_shift=SHIFT,
        guide_scale=guide,
        noise=mx.array(noise),
        context=[mx.array(c) for c in ctx],
        **kw,
    )


def _official_call(m):
    return lambda x, ts, cc, seq, y, clip: m([x], t=ts, context=[cc], seq_len=seq, y=[y])[0]


def test_a14b_loop_matches_official_experts(a14b):
    noise, ctx, wh = _inputs()
    experts = {k: _official_call(m) for k, m in _official_experts().items()}
    ref, used = _reference_i2v(experts, noise, ctx, wh, G)
    assert used == ["high", "high", "low", "low"]

    seen = []

    def progress(stage, i, n):  # which DiT is resident after each step
        if stage == "denoise":
            seen.append(tuple(sorted(a14b._dits)))

    res = _generate(a14b, "i2v-A14B", noise, ctx, G, progress=progress)
    e = rel_err(res.latents, ref)
    assert e < 1e-5, e  # measured 3.5e-7 (ORACLES allows 1e-3 for pipelines; tighter keeps the bugs below visible)
    assert seen == [("dit_high",), ("dit_high",), ("dit_low",), ("dit_low",)]  # switch at step 2, one resident
    assert res.frames.shape == (FRAMES, wh[1], wh[0], 3) and res.params["sample_guide_scale"] == list(G)
    assert D.expert_segments([999, 937, 833, 624], 0.9) == [("dit_high", 0, 2), ("dit_low", 2, 4)]
    # it can fail: swapped guide scales, or one expert for all steps, move the result far past 1e-5
    for guide in (G[::-1],):
        bad = _generate(a14b, "i2v-A14B", noise, ctx, guide)
        assert rel_err(bad.latents, ref) > 1e-3, rel_err(bad.latents, ref)  # measured 1.1e-2
    only_low, _ = _reference_i2v({"high": experts["low"], "low": experts["low"]}, noise, ctx, wh, G)
    assert rel_err(res.latents, only_low) > 1e-3


@pytest.fixture(scope="module")
def i2v21(tmp_path_factory):
    out = convert_wan(I2V21, tmp_path_factory.mktemp("conv") / "i2v21", dtype="float32")
    return P.WanPipeline(out, dtype=mx.float32, offload=False)


def test_wan21_i2v_with_clip_matches_reference_loop(i2v21):
    pipe = i2v21
    noise, ctx, wh = _inputs(1)
    cfg = json.loads((I2V21 / "config.json").read_text())
    sd = {k: v.float() for k, v in load_file(str(I2V21 / "diffusion_pytorch_model.safetensors")).items()}
    dm = diffusers_dit(cfg, 36, 16, image_dim=sd["img_emb.proj.0.weight"].shape[0])
    dm.load_state_dict(official_to_diffusers(sd), strict=True)
    # the CLIP tokens the pipeline computes itself (the tower is parity-tested in test_wan_clip.py): the
    # first frame at its own resolution, squashed to 224 (here 28) by CLIP's preprocessing
    clip = P.encode_clip(pipe.clip, [P.first_last_pixels(IMG)[0]])
    clip_t = torch.from_numpy(np.array(clip))

    def call(x, ts, cc, seq, y, _):
        pad = torch.zeros(1, 512, cc.shape[1])
        pad[0, : len(cc)] = cc
        return dm(torch.cat([x, y])[None], ts, pad, encoder_hidden_states_image=clip_t, return_dict=False)[0][0]

    ref, used = _reference_i2v({"high": call, "low": call}, noise, ctx, wh, (G[0], G[0]))
    res = _generate(pipe, "i2v-14B", noise, ctx, G[0])
    e = rel_err(res.latents, ref)
    assert e < 1e-5, e  # measured 4.7e-7
    rocket = P.encode_clip(pipe.clip, [P.first_last_pixels(IMAGES / "rocket.png")[0]])
    other = _generate(pipe, "i2v-14B", noise, ctx, G[0], clip_fea=rocket)
    assert rel_err(other.latents, ref) > 1e-2  # the CLIP tokens are seen (measured 0.19)


def test_task_defaults_and_checkpoint_checks(i2v21):
    pipe = i2v21
    assert TASKS["i2v-14B"].default_shift("832*480") == 3.0 and TASKS["i2v-14B"].default_shift("1280*720") == 5.0
    assert TASKS["flf2v-14B"].sample_shift == 16 and TASKS["t2v-A14B"].guide_pair() == (3.0, 4.0)
    with pytest.raises(ValueError, match="needs a two-expert"):
        pipe.generate(task="i2v-A14B", images=[IMG])
    with pytest.raises(ValueError, match="exactly one image"):
        pipe.generate(task="i2v-14B", images=[IMG, IMG])
    with pytest.raises(ValueError, match="flf2v DiT"):
        pipe.generate(task="flf2v-14B", images=[IMG, IMG])


# ----------------------------------------------------------------------------- converters


def test_diffusers_a14b_and_clip_layouts(tmp_path):
    """Wan2.2-I2V-A14B-Diffusers (transformer = high-noise, transformer_2 = low-noise) and the Wan2.1
    image_encoder/ (CLIPVisionModel) convert strictly and match the modules they came from."""
    from diffusers import AutoencoderKLWan
    from transformers import CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    from tests.oracles import randomize_
    from tests.test_wan_transformer import sharpen_cross_attention_

    root = tmp_path / "Wan2.2-I2V-A14B-Diffusers"
    dits = []
    for i, sub in enumerate(("transformer", "transformer_2")):
        dm = diffusers_dit(dict(dim=32, num_heads=2, text_dim=32, freq_dim=32, ffn_dim=48, num_layers=2), 36, 16)
        sharpen_cross_attention_(randomize_(dm, seed=20 + i))
        dm.rope = type(dm.rope)(16, (1, 2, 2), 1024)
        dm.save_pretrained(root / sub)
        dits.append(dm)
    vae = AutoencoderKLWan(base_dim=4, z_dim=16).eval()
    randomize_(vae, seed=22, fan_in=True)
    vae.save_pretrained(root / "vae")
    tok = ROOT / "tests" / "fixtures" / "tiny-umt5-tokenizer"
    vocab = len(json.loads((tok / "tokenizer.json").read_text())["model"]["vocab"])
    UMT5EncoderModel(
        UMT5Config(
            vocab_size=vocab, d_model=32, d_kv=8, d_ff=64, num_heads=4, num_layers=1, feed_forward_proj="gated-gelu"
        )
    ).save_pretrained(root / "text_encoder")
    shutil.copytree(tok, root / "tokenizer")
    clip = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=4,
            num_hidden_layers=2,
            image_size=28,
            patch_size=14,
            hidden_act="gelu",
        )
    ).eval()
    randomize_(clip, seed=23, std=0.1)
    clip.save_pretrained(root / "image_encoder")
    (root / "model_index.json").write_text(
        json.dumps({"_class_name": "WanImageToVideoPipeline", "boundary_ratio": 0.9})
    )

    pipe = P.WanPipeline(convert_wan(root, tmp_path / "mlx", dtype="float32"), dtype=mx.float32, offload=False)
    assert pipe.cfg["experts"] == ["dit_high", "dit_low"] and "clip" in pipe.cfg
    g = np.random.default_rng(0)
    x = g.standard_normal((1, 36, 2, 4, 4)).astype(np.float32)
    ctx = g.standard_normal((7, 32)).astype(np.float32)
    pad = np.zeros((1, 512, 32), np.float32)
    pad[0, :7] = ctx
    for name, dm in zip(("dit_high", "dit_low"), dits):
        with torch.no_grad():
            want = dm(torch.from_numpy(x), torch.tensor([700.0]), torch.from_numpy(pad), return_dict=False)[0]
        m = pipe.model(name)
        got = m(
            mx.array(x.transpose(0, 2, 3, 4, 1)),
            mx.array([700.0]),
            m.embed_text([mx.array(ctx)]),
            m.rope_tables((2, 2, 2)),
        )
        assert rel_err(got, want.permute(0, 2, 3, 4, 1)) < 3e-4, name
    px = g.uniform(-1, 1, (1, 28, 28, 3)).astype(np.float32)
    with torch.no_grad():
        pv = torch.from_numpy(np.array(preprocess(mx.array(px), 28))).permute(0, 3, 1, 2)
        want = clip(pixel_values=pv, output_hidden_states=True).hidden_states[-2]
    assert rel_err(pipe.clip.encode_images(mx.array(px)), want) < 1e-4


@pytest.mark.parametrize("case", ["missing", "extra", "shape"])
def test_expert_strict_loading_names_the_key(tmp_path, case):
    src = tmp_path / "ckpt"
    shutil.copytree(A14B, src)
    p = src / "low_noise_model" / "diffusion_pytorch_model.safetensors"
    sd = load_file(str(p))
    key = "blocks.1.cross_attn.k.weight"
    if case == "missing":
        del sd[key]
    elif case == "extra":
        key = "blocks.1.cross_attn.k_img.weight"
        sd[key] = torch.zeros(32, 32)
    else:
        sd[key] = torch.zeros(32, 16)
    save_file(sd, str(p))
    with pytest.raises(WeightsError, match=key.replace(".", r"\.")):
        convert_wan(src, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_lora_per_expert(tmp_path, a14b):
    """--lora_high merges W + strength·(alpha/rank)·B@A into the high-noise expert only; --lora into both
    (the formats themselves are tested in test_lora.py)."""
    g = np.random.default_rng(7)
    a, b = g.standard_normal((4, 32)).astype(np.float32), g.standard_normal((32, 4)).astype(np.float32)
    f = tmp_path / "musubi.safetensors"
    mx.save_safetensors(
        str(f),
        {
            "lora_unet_blocks_0_self_attn_q.lora_down.weight": mx.array(a),
            "lora_unet_blocks_0_self_attn_q.lora_up.weight": mx.array(b),
            "lora_unet_blocks_0_self_attn_q.alpha": mx.array(2.0),
        },
    )
    base = {n: np.array(a14b.model(n).blocks[0].self_attn.q.weight) for n in ("dit_high", "dit_low")}
    delta = 0.5 * (2.0 / 4) * (b @ a)
    p = P.WanPipeline(a14b.model_dir, dtype=mx.float32, offload=False, loras_high=[f"{f}:0.5"])
    np.testing.assert_allclose(
        np.array(p.model("dit_high").blocks[0].self_attn.q.weight), base["dit_high"] + delta, atol=1e-5
    )
    np.testing.assert_array_equal(np.array(p.model("dit_low").blocks[0].self_attn.q.weight), base["dit_low"])
    p = P.WanPipeline(a14b.model_dir, dtype=mx.float32, offload=False, loras=[(f, 0.5)])
    for n in ("dit_high", "dit_low"):
        np.testing.assert_allclose(np.array(p.model(n).blocks[0].self_attn.q.weight), base[n] + delta, atol=1e-5)
    with pytest.raises(ValueError, match="two-expert"):
        P.WanPipeline(convert_wan(I2V21, tmp_path / "i2v", dtype="float32"), loras_low=[str(f)])
    with pytest.raises(WeightsError, match="not found"):
        P.WanPipeline(a14b.model_dir, loras=[str(tmp_path / "nope.safetensors")])
