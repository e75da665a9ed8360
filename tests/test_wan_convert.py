"""`mlx_video.wan.checkpoint` from both real layouts: the diffusers repo layout (Wan-AI/Wan2.2-TI2V-5B-Diffusers) compared
with diffusers / transformers modules, the official layout's text encoder compared with the official T5,
and 8-bit quantized conversion."""

import json
import shutil

import mlx.core as mx
import pytest
import torch

from mlx_video.io.weights import WeightsError
from mlx_video.wan.checkpoint import convert_wan, detect_layout
from mlx_video.wan.pipeline import WanPipeline
from tests import oracles
from tests.oracles import randomize_, rel_err
from tests.wan_tiny import TINY, diffusers_dit

TOK = TINY / "google" / "umt5-xxl"
CFG = json.loads((TINY / "config.json").read_text())


def _diffusers_folder(root):
    from diffusers import AutoencoderKLWan
    from transformers import UMT5Config, UMT5EncoderModel

    from mlx_video.wan.vae22 import Wan22VAEArgs

    dit = diffusers_dit(CFG, 48, 48)
    randomize_(dit, seed=11, buffers=False)  # the RoPE tables stay
    a = Wan22VAEArgs()
    vae = AutoencoderKLWan(
        base_dim=4,
        decoder_base_dim=8,
        z_dim=48,
        in_channels=12,
        out_channels=12,
        patch_size=2,
        is_residual=True,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        temperal_downsample=[False, True, True],
        latents_mean=a.latents_mean,
        latents_std=a.latents_std,
    ).eval()
    randomize_(vae, seed=12, fan_in=True)
    vocab = len(json.loads((TOK / "tokenizer.json").read_text())["model"]["vocab"])
    t5 = UMT5EncoderModel(
        UMT5Config(
            vocab_size=vocab,
            d_model=CFG["text_dim"],
            d_kv=8,
            d_ff=64,
            num_heads=4,
            num_layers=2,
            feed_forward_proj="gated-gelu",
            dropout_rate=0.0,
        )
    ).eval()
    randomize_(t5, seed=13)
    dit.save_pretrained(root / "transformer", max_shard_size="200KB")  # sharded, with index
    vae.save_pretrained(root / "vae")
    t5.save_pretrained(root / "text_encoder")
    shutil.copytree(TOK, root / "tokenizer")
    (root / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline", "expand_timesteps": True}))
    return dit, vae, t5


@pytest.fixture(scope="module")
def diffusers_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusers") / "Wan2.2-TI2V-5B-Diffusers"
    mods = _diffusers_folder(root)
    assert detect_layout(root) == "diffusers"
    assert len(list((root / "transformer").glob("*.safetensors"))) > 1
    out = convert_wan(root, root.parent / "mlx", dtype="float32")
    return mods, WanPipeline(out, dtype=mx.float32, offload=False)


def test_diffusers_layout_dit_matches_diffusers(diffusers_case):
    (dit, _, _), pipe = diffusers_case
    T, h, w = 3, 4, 6
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 48, T, h, w, generator=g)
    ctx = [torch.randn(5, CFG["text_dim"], generator=g), torch.randn(9, CFG["text_dim"], generator=g)]
    padded = torch.zeros(2, 512, CFG["text_dim"])
    for i, c in enumerate(ctx):
        padded[i, : len(c)] = c
    L = T * h * w // 4
    t = torch.full((2, L), 700.0)
    t[:, : h * w // 4] = 0.0
    with torch.no_grad():
        ref = dit(x, timestep=t, encoder_hidden_states=padded).sample
    m = pipe.dit
    ours = m(
        mx.array(x.permute(0, 2, 3, 4, 1).numpy()),
        mx.array([[0.0, 700.0, 700.0]] * 2),
        m.embed_text([mx.array(c.numpy()) for c in ctx]),
        m.rope_tables((T, h // 2, w // 2)),
    )
    e = rel_err(ours, ref.permute(0, 2, 3, 4, 1))
    assert e < 3e-4, e
    other = m(
        mx.array(x.permute(0, 2, 3, 4, 1).numpy()),
        mx.array([[700.0, 700.0, 700.0]] * 2),
        m.embed_text([mx.array(c.numpy()) for c in ctx]),
        m.rope_tables((T, h // 2, w // 2)),
    )
    assert rel_err(other, ref.permute(0, 2, 3, 4, 1)) > 100 * 3e-4  # per-token timesteps are seen


def test_diffusers_layout_vae_matches_diffusers(diffusers_case):
    (_, vae, _), pipe = diffusers_case
    a = pipe.vae.args
    mean = torch.tensor(a.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(a.latents_std).view(1, -1, 1, 1, 1)
    z = torch.randn(1, 48, 2, 2, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = vae.decode(z * std + mean).sample.clamp(-1, 1)
    ours = pipe.vae.decode(mx.array(z.permute(0, 2, 3, 4, 1).numpy()))
    e = rel_err(ours, ref.permute(0, 2, 3, 4, 1))
    assert e < 1e-4, e


def test_diffusers_layout_text_encoder_matches_transformers(diffusers_case):
    (_, _, t5), pipe = diffusers_case
    from transformers import AutoTokenizer

    prompts = ["a cat walks on the grass", "  two   dogs &amp; a ball "]
    tok = AutoTokenizer.from_pretrained(TOK)
    ours = pipe.text_encoder.encode(prompts)
    import html
    import re

    for p, o in zip(prompts, ours):
        clean = re.sub(r"\s+", " ", html.unescape(html.unescape(p)).strip())
        ids = tok([clean], padding="max_length", max_length=512, truncation=True, return_tensors="pt")
        with torch.no_grad():
            ref = t5(input_ids=ids.input_ids, attention_mask=ids.attention_mask).last_hidden_state[0]
        n = int(ids.attention_mask.sum())
        assert o.shape == (n, CFG["text_dim"])
        assert rel_err(o, ref[:n]) < 1e-4


def test_official_layout_text_encoder_matches_official_t5(tmp_path):
    w = oracles.wan()
    out = convert_wan(TINY, tmp_path / "mlx", dtype="float32")
    pipe = WanPipeline(out, dtype=mx.float32, offload=False)
    sd = torch.load(TINY / "models_t5_umt5-xxl-enc-bf16.pth")
    cfg = json.loads((out / "config.json").read_text())["t5"]
    ref = w.t5.T5Encoder(
        vocab=cfg["vocab_size"],
        dim=cfg["dim"],
        dim_attn=cfg["dim_attn"],
        dim_ffn=cfg["dim_ffn"],
        num_heads=cfg["num_heads"],
        num_layers=cfg["num_layers"],
        num_buckets=cfg["num_buckets"],
        shared_pos=False,
        dropout=0.0,
    ).eval()
    ref.load_state_dict({k: v.float() for k, v in sd.items()})
    tok = w.tokenizers.HuggingfaceTokenizer(name=str(TOK), seq_len=512, clean="whitespace")
    prompts = ["An astronaut rides a horse on the moon"]
    ids, mask = tok(prompts, return_mask=True, add_special_tokens=True)
    with torch.no_grad():
        r = ref(ids, mask)[0][: int(mask.sum())]
    o = pipe.text_encoder.encode(prompts)[0]
    assert rel_err(o, r) < 1e-4


def test_quantized_conversion_runs_and_stays_close(tmp_path):
    q = convert_wan(TINY, tmp_path / "q8", quantize=8, group_size=32)
    f = convert_wan(TINY, tmp_path / "f32", dtype="float32")
    assert json.loads((q / "config.json").read_text())["quantization"]["dit"] == {"bits": 8, "group_size": 32}
    assert (q / "dit.safetensors").stat().st_size < 0.5 * (f / "dit.safetensors").stat().st_size
    pq, pf = WanPipeline(q, dtype=mx.float32, offload=False), WanPipeline(f, dtype=mx.float32, offload=False)
    x = mx.random.normal((1, 2, 4, 4, 48), key=mx.random.key(0))
    ctx = [mx.random.normal((6, CFG["text_dim"]), key=mx.random.key(1))]
    outs = [p.dit(x, mx.array([500.0]), p.dit.embed_text(ctx), p.dit.rope_tables((2, 2, 2))) for p in (pq, pf)]
    assert rel_err(outs[0], outs[1]) < 5e-2


def test_unknown_layout_and_unused_key_are_errors(tmp_path):
    with pytest.raises(WeightsError, match="neither"):
        (tmp_path / "empty").mkdir()
        convert_wan(tmp_path / "empty", tmp_path / "o")
    src = tmp_path / "ckpt"
    shutil.copytree(TINY, src)
    from safetensors.torch import load_file, save_file

    p = src / "diffusion_pytorch_model.safetensors"
    sd = load_file(str(p))
    sd["blocks.0.extra_thing.weight"] = torch.zeros(3)
    save_file(sd, str(p))
    with pytest.raises(WeightsError, match="extra_thing"):
        convert_wan(src, tmp_path / "o")
    assert not (tmp_path / "o").exists()
