"""`mlx_video.ltx2.checkpoint` + `mlx_video.ltx2.loading` on tiny LTX-2 / LTX-2.3 checkpoints in Lightricks' layout.

The checkpoints come from scripts/make_tiny_ltx2.py: official ltx-core 1.0.0 / transformers modules
at tiny sizes, saved as the real files are (bf16 single file with embedded config, upsampler file with
its own config, ComfyUI LoRA, Gemma folder). Each converted and loaded component is compared with the
ltx-core module holding the same weights (float32 conversion, so the usual float32 tolerances apply).
Then strictness (orphan / missing / mis-shaped keys, truncated file), 8-bit quantization, fp8
dequantization and the model resolver's cache.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import torch

import mlx_video.io.hub as hub
from mlx_video.io.weights import WeightsError
from mlx_video.ltx2 import loading as L
from mlx_video.ltx2.checkpoint import convert_ltx2
from mlx_video.ltx2.transformer import Modality
from tests.oracles import rel_err

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("make_tiny_ltx2", ROOT / "scripts" / "make_tiny_ltx2.py")
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)

TOL, ATTN_TOL = 1e-4, 3e-4
LTX2_FILE = "ltx-2-tiny-dev.safetensors"


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """version -> converted tiny checkpoint (float32, with Gemma, x2 upsampler and distilled LoRA)."""

    @functools.cache
    def get(version: str) -> SimpleNamespace:
        root = tmp_path_factory.mktemp(f"ltx{version}")
        mods = tiny.reference_modules(version, seed=0)
        paths = tiny.write(root / "src", mods, version)
        out = convert_ltx2(
            paths["checkpoint"],
            root / "mlx",
            dtype="float32",
            gemma=paths["gemma"],
            upsamplers=[paths["upsampler"]],
            distilled_lora=paths["lora"],
        )
        return SimpleNamespace(version=version, mods=mods, paths=paths, dir=out, cfg=L.read_config(out))

    return get


def t2m(t: torch.Tensor, *perm) -> mx.array:
    return mx.array((t.permute(*perm) if perm else t).detach().numpy())


def randn(*shape, seed=0, scale=1.0):
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- components vs ltx-core


def _av_inputs(case, seed=0):
    """One audio+video transformer call: positions from ltx-core's latent tools, contexts from the
    reference connectors, per-token timesteps with a clean first latent frame."""
    from ltx_core.components.patchifiers import AudioPatchifier, VideoLatentPatchifier
    from ltx_core.tools import AudioLatentTools, VideoLatentTools
    from ltx_core.types import AudioLatentShape, VideoLatentShape

    t = case.cfg["transformer"]
    f, h, w, ta = 2, 2, 3, 5
    vpos = (
        VideoLatentTools(VideoLatentPatchifier(1), VideoLatentShape(1, t["in_channels"], f, h, w), 24.0)
        .create_initial_state("cpu", torch.float32)
        .positions
    )
    apos = (
        AudioLatentTools(AudioPatchifier(1), AudioLatentShape(1, 1, ta, t["audio_in_channels"]))
        .create_initial_state("cpu", torch.float32)
        .positions
    )
    hs, mask = _hidden_states(seed, n_valid=5)
    with torch.no_grad():
        enc = case.mods["processor"].process_hidden_states(tuple(hs), mask)
    n = f * h * w
    vt = torch.full((1, n), 0.6)
    vt[:, : h * w] = 0.0
    return dict(
        v_lat=randn(1, n, t["in_channels"], seed=seed + 1),
        a_lat=randn(1, ta, t["audio_in_channels"], seed=seed + 2),
        v_t=vt,
        a_t=torch.full((1, ta), 0.6),
        sigma=torch.tensor([0.6]),
        vpos=vpos,
        apos=apos,
        v_ctx=enc.video_encoding,
        a_ctx=enc.audio_encoding,
    )


def _run_transformer_ref(case, x):
    from ltx_core.guidance.perturbations import BatchedPerturbationConfig
    from ltx_core.model.transformer import Modality as RefModality

    v = RefModality(latent=x["v_lat"], sigma=x["sigma"], timesteps=x["v_t"], positions=x["vpos"], context=x["v_ctx"])
    a = RefModality(latent=x["a_lat"], sigma=x["sigma"], timesteps=x["a_t"], positions=x["apos"], context=x["a_ctx"])
    with torch.no_grad():
        return case.mods["transformer"](v, a, BatchedPerturbationConfig.empty(1))


def _run_transformer(model, x):
    m = {k: t2m(v) for k, v in x.items()}
    rope = model.rope_tables(x["vpos"].numpy(), x["apos"].numpy())
    return model(
        Modality(m["v_lat"], m["v_t"], m["sigma"], m["v_ctx"]),
        Modality(m["a_lat"], m["a_t"], m["sigma"], m["a_ctx"]),
        rope,
    )


@pytest.mark.parametrize("version", ["2.0", "2.3"])
def test_transformer_matches_ltx_core(cases, version):
    case = cases(version)
    model = L.load_transformer(case.dir, case.cfg)
    assert model.args.cross_attention_adaln == (version == "2.3") and model.args.caption_projection == (
        version == "2.0"
    )
    x = _av_inputs(case)
    rv, ra = _run_transformer_ref(case, x)
    ov, oa = _run_transformer(model, x)
    assert rel_err(ov, rv) < ATTN_TOL and rel_err(oa, ra) < ATTN_TOL, (rel_err(ov, rv), rel_err(oa, ra))
    # each input moves the output well beyond the tolerance (measured errors ~1e-5; the weakest input,
    # the LTX-2 audio text context, moves it by 4e-3 in this tiny model)
    other = lambda c: randn(*c.shape, seed=99) * c.std()  # noqa: E731  (another prompt's context)
    for key, change in (
        ("v_ctx", other),
        ("a_ctx", other),
        ("vpos", lambda p: p.flip(2)),
        ("apos", lambda p: p.flip(2)),
        ("v_t", lambda t: 0.3 + 0 * t),
        ("sigma", lambda s: s / 2),
    ):
        ov2, oa2 = _run_transformer(model, {**x, key: change(x[key])})
        assert max(rel_err(ov2, rv), rel_err(oa2, ra)) > 10 * ATTN_TOL, key


def _hidden_states(seed, n_valid, length=16):
    hs = [randn(1, length, tiny.GEMMA_HIDDEN, seed=seed + i, scale=3.0) for i in range(tiny.GEMMA_LAYERS + 1)]
    mask = torch.zeros(1, length, dtype=torch.int64)
    mask[:, length - n_valid :] = 1
    return hs, mask


@pytest.mark.parametrize("version", ["2.0", "2.3"])
def test_connectors_match_ltx_core(cases, version):
    case = cases(version)
    proc = L.load_connectors(case.dir, case.cfg)
    assert proc.args.version == (1 if version == "2.0" else 2) and proc.args.registers == tiny.REGISTERS
    hs, mask = _hidden_states(3, n_valid=6)
    with torch.no_grad():
        ref = case.mods["processor"].process_hidden_states(tuple(hs), mask)
    v, a = proc([t2m(h) for h in hs], t2m(mask))
    assert rel_err(v, ref.video_encoding) < ATTN_TOL and rel_err(a, ref.audio_encoding) < ATTN_TOL
    v2, _ = proc([t2m(h) for h in _hidden_states(4, n_valid=6)[0]], t2m(mask))
    assert rel_err(v2, ref.video_encoding) > 100 * ATTN_TOL


def test_text_encoder_matches_ltx_core(cases):
    """Tokenizer -> Gemma -> connectors from the converted folder vs ltx-core's GemmaTextEncoder (HF
    Gemma 3 from the tiny Gemma folder) + EmbeddingsProcessor."""
    from ltx_core.text_encoders.gemma import GemmaTextEncoder
    from ltx_core.text_encoders.gemma.tokenizer import LTXVGemmaTokenizer

    case = cases("2.0")
    enc = L.load_text_encoder(case.dir, case.cfg, max_length=16)
    ref = GemmaTextEncoder(
        model=case.mods["gemma"], tokenizer=LTXVGemmaTokenizer(str(case.paths["gemma"]), 16), dtype=torch.float32
    )
    prompt = "a red cat walks on the beach at sunset"
    with torch.no_grad():
        states, mask = ref.encode(prompt)
        want = case.mods["processor"].process_hidden_states(states, mask)
    v, a = enc(prompt)
    assert rel_err(v, want.video_encoding) < ATTN_TOL and rel_err(a, want.audio_encoding) < ATTN_TOL
    assert rel_err(enc("a blue dog runs fast")[0], want.video_encoding) > 100 * ATTN_TOL


@pytest.mark.parametrize("version", ["2.0", "2.3"])
def test_video_vae_matches_ltx_core(cases, version):
    case = cases(version)
    vae = L.load_video_vae(case.dir, case.cfg)
    z = randn(1, tiny.C, 2, 2, 2, seed=5)
    video = randn(1, 3, 9, 64, 64, seed=6).clamp(-1, 1)
    with torch.no_grad():
        x_ref, z_ref = case.mods["vae_decoder"](z), case.mods["vae_encoder"](video)
    x = vae.decode(t2m(z, 0, 2, 3, 4, 1))
    assert rel_err(np.array(x).transpose(0, 4, 1, 2, 3), x_ref) < TOL
    zz = vae.encode(t2m(video, 0, 2, 3, 4, 1))
    assert rel_err(np.array(zz).transpose(0, 4, 1, 2, 3), z_ref) < TOL
    dec_only = L.load_video_vae(case.dir, case.cfg, parts=("decoder",))
    assert "encoder" not in dec_only and rel_err(dec_only.decode(t2m(z, 0, 2, 3, 4, 1)), x) < 1e-6


@pytest.mark.parametrize("version", ["2.0", "2.3"])
def test_audio_decoder_and_vocoder_match_ltx_core(cases, version):
    case = cases(version)
    dec, voc = L.load_audio_decoder(case.dir, case.cfg), L.load_vocoder(case.dir, case.cfg)
    assert voc.sample_rate == (24000 if version == "2.0" else 48000)
    zc = case.mods["config"]["audio_vae"]["model"]["params"]["ddconfig"]["z_channels"]
    z = randn(1, zc, 4, 16, seed=7)  # (B, z, t, F')
    with torch.no_grad():
        mel_ref = case.mods["audio_decoder"](z)  # (B, 2, 4t - 3, 64)
        wav_ref = case.mods["vocoder"](mel_ref)
    mel = dec(t2m(z, 0, 2, 3, 1))
    assert rel_err(mel, mel_ref.permute(0, 2, 3, 1)) < TOL
    wav = voc(t2m(mel_ref, 0, 2, 3, 1))
    assert wav.shape == tuple(wav_ref.permute(0, 2, 1).shape)
    assert float((wav_ref.abs() >= 0.999).float().mean()) < 0.2  # not saturated: a sensitive comparison
    assert rel_err(wav, wav_ref.permute(0, 2, 1)) < ATTN_TOL
    assert rel_err(voc(t2m(mel_ref.flip(1), 0, 2, 3, 1)), wav_ref.permute(0, 2, 1)) > 100 * ATTN_TOL
    enc = L.load_audio_encoder(case.dir, case.cfg)
    with torch.no_grad():
        zr = case.mods["audio_encoder"](mel_ref)
    assert rel_err(enc(t2m(mel_ref, 0, 2, 3, 1)), zr.permute(0, 2, 3, 1)) < TOL


def test_upsampler_and_lora(cases):
    case = cases("2.0")
    ups = L.load_upsampler(case.dir, case.cfg, "spatial_x2")
    assert ups is not None and L.load_upsampler(case.dir, case.cfg, "ltx-2-tiny-spatial-upscaler-x2") is not None
    x = randn(1, tiny.C, 2, 3, 4, seed=8)
    with torch.no_grad():
        want = case.mods["upsampler"](x)
    assert rel_err(np.array(ups(t2m(x, 0, 2, 3, 4, 1))).transpose(0, 4, 1, 2, 3), want) < TOL
    with pytest.raises(WeightsError, match="temporal_x2"):
        L.load_upsampler(case.dir, case.cfg, "temporal_x2")

    lora = L.load_distilled_lora(case.dir, case.cfg)
    src = tiny.lora_state_dict(case.mods["transformer"])
    assert len(lora) == len(src) and case.cfg["distilled_lora"]["rank"] == 4
    params = dict(
        __import__("mlx.utils", fromlist=["tree_flatten"]).tree_flatten(
            L.load_transformer(case.dir, case.cfg).parameters()
        )
    )
    for k in [k for k in lora if k.endswith(".lora_A")]:
        layer = k[: -len(".lora_A")]
        assert (lora[layer + ".lora_B"] @ lora[k]).shape == params[layer + ".weight"].shape
    # ltx-core names -> ours (to_out.0 -> to_out, ff.net.0.proj -> ff.proj_in), values untouched
    a = src["diffusion_model.transformer_blocks.1.attn1.to_out.0.lora_A.weight"].float().numpy()
    assert np.array_equal(np.array(lora["transformer_blocks.1.attn1.to_out.lora_A"]), a)
    b = src["diffusion_model.transformer_blocks.0.audio_ff.net.0.proj.lora_B.weight"].float().numpy()
    assert np.array_equal(np.array(lora["transformer_blocks.0.audio_ff.proj_in.lora_B"]), b)


# ----------------------------------------------------------------------------- strictness


def _rewrite(src: Path, dst: Path, edit) -> Path:
    """Copy a safetensors file (metadata kept) after ``edit(weights)`` changed its dict in place."""
    w, meta = mx.load(str(src), return_metadata=True)
    edit(w)
    mx.save_safetensors(str(dst), w, metadata=meta)
    return dst


def _assert_fails(case, tmp_path, ckpt, *names, **kw):
    out = tmp_path / "out"
    with pytest.raises(WeightsError) as e:
        convert_ltx2(ckpt, out, dtype="float32", gemma=case.paths["gemma"], **kw)
    for n in names:
        assert n in str(e.value), (n, str(e.value))
    assert not out.exists() and not list(tmp_path.glob("out.tmp-*"))  # nothing half-written left behind
    return str(e.value)


def test_keys_nobody_owns(cases, tmp_path):
    case = cases("2.0")

    def add(w):
        w["foo.bar"] = mx.zeros((2,))
        w["model.diffusion_model.embeddings_connector.learnable_registers"] = mx.zeros((4, 32))  # video-only model's
        w["audio_vae.something_else.weight"] = mx.zeros((2,))

    ckpt = _rewrite(case.paths["checkpoint"], tmp_path / LTX2_FILE, add)
    msg = _assert_fails(
        case,
        tmp_path,
        ckpt,
        "foo.bar",
        "model.diffusion_model.embeddings_connector.learnable_registers",
        "audio_vae.something_else.weight",
    )
    assert "no LTX-2 component owns (3)" in msg


@pytest.mark.parametrize(
    "edit, names",
    [
        (
            lambda w: w.pop("model.diffusion_model.transformer_blocks.1.attn1.to_q.weight"),
            ["missing", "transformer_blocks.1.attn1.to_q.weight"],
        ),
        (
            lambda w: w.update({"model.diffusion_model.patchify_proj.weight": mx.zeros((32, 4), mx.bfloat16)}),
            ["mis-shaped", "patchify_proj.weight"],
        ),
        (
            lambda w: w.update({"audio_vae.decoder.conv_out.conv.weight": mx.zeros((2, 16, 3, 4), mx.bfloat16)}),
            ["audio decoder", "conv_out.conv.weight"],
        ),
        (lambda w: w.pop("vocoder.conv_post.weight"), ["vocoder", "missing", "conv_post.weight"]),
        (lambda w: w.pop("text_embedding_projection.aggregate_embed.weight"), ["aggregate_embed.weight"]),
    ],
    ids=["missing", "mis-shaped", "mis-shaped-audio", "missing-vocoder", "missing-connector"],
)
def test_missing_and_misshaped_keys(cases, tmp_path, edit, names):
    case = cases("2.0")
    _assert_fails(case, tmp_path, _rewrite(case.paths["checkpoint"], tmp_path / LTX2_FILE, edit), *names)


def test_truncated_and_foreign_files(cases, tmp_path):
    case = cases("2.0")
    data = case.paths["checkpoint"].read_bytes()
    cut = tmp_path / LTX2_FILE
    cut.write_bytes(data[: len(data) // 2])
    _assert_fails(case, tmp_path, cut, str(cut), "truncated")
    # a LoRA key that is no layer of this transformer, an upsampler without its config
    lora = tmp_path / "lora.safetensors"
    w = mx.load(str(case.paths["lora"]))
    w["diffusion_model.transformer_blocks.7.attn1.to_q.lora_A.weight"] = mx.zeros((4, 32))
    w["diffusion_model.transformer_blocks.7.attn1.to_q.lora_B.weight"] = mx.zeros((32, 4))
    mx.save_safetensors(str(lora), w)
    _assert_fails(case, tmp_path, case.paths["checkpoint"], "transformer_blocks.7.attn1.to_q", distilled_lora=lora)
    ups = tmp_path / "ups.safetensors"
    mx.save_safetensors(str(ups), mx.load(str(case.paths["upsampler"])))
    _assert_fails(case, tmp_path, case.paths["checkpoint"], str(ups), "config", upsamplers=[ups])


@pytest.mark.parametrize("missing", ["checkpoint", "distilled_lora", "upsampler"])
def test_missing_source_files_are_weights_errors(cases, tmp_path, missing):
    """A source file that does not exist is a WeightsError naming it (the documented error, one line in the CLI),
    not a FileNotFoundError from the progress report's sizes; nothing is written."""
    case = cases("2.0")
    nope = tmp_path / "nope.safetensors"
    ckpt = nope if missing == "checkpoint" else case.paths["checkpoint"]
    kw = {"distilled_lora": nope} if missing == "distilled_lora" else {}
    if missing == "upsampler":
        kw["upsamplers"] = [nope]
    _assert_fails(case, tmp_path, ckpt, str(nope), **kw)


def test_v2_connectors_need_the_gemma_width(cases, tmp_path):
    """LTX-2.3's projections do not reveal Gemma's width: without the Gemma folder the 12B default
    (3840) is assumed, which this tiny checkpoint does not match."""
    case = cases("2.3")
    with pytest.raises(WeightsError, match="Gemma"):
        convert_ltx2(case.paths["checkpoint"], tmp_path / "out", dtype="float32")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- quantization, fp8


def test_quantized_conversion_stays_close(cases, tmp_path):
    case = cases("2.0")
    out = convert_ltx2(
        case.paths["checkpoint"], tmp_path / "q8", dtype="float32", quantize=8, group_size=32, gemma=case.paths["gemma"]
    )
    cfg = L.read_config(out)
    assert cfg["quantization"]["transformer"] == {"bits": 8, "group_size": 32, "scope": "transformer_blocks."}
    model = L.load_transformer(out, cfg)
    quantized = [p for p, m in model.named_modules() if isinstance(m, nn.QuantizedLinear)]
    assert quantized and all(p.startswith("transformer_blocks.") for p in quantized)
    assert not isinstance(model.patchify_proj, nn.QuantizedLinear)
    x = _av_inputs(case)
    rv, ra = _run_transformer_ref(case, x)
    ov, oa = _run_transformer(model, x)
    assert rel_err(ov, rv) < 2e-2 and rel_err(oa, ra) < 2e-2, (rel_err(ov, rv), rel_err(oa, ra))
    enc = L.load_text_encoder(out, cfg, max_length=16)
    assert any(isinstance(m, nn.QuantizedLinear) for _, m in enc.gemma.named_modules())
    full = L.load_text_encoder(case.dir, case.cfg, max_length=16)
    assert rel_err(enc("a cat on the beach")[0], full("a cat on the beach")[0]) < 2e-2


def test_fp8_checkpoint_is_dequantized(cases, tmp_path):
    """float8_e4m3fn Linear weights with per-tensor weight_scale (+ input_scale) as Lightricks' fp8 files."""
    from safetensors.torch import load_file, save_file

    case = cases("2.0")
    sd = load_file(str(case.paths["checkpoint"]))
    meta = {"config": json.dumps(case.mods["config"]), "model_version": "2.0.0-tiny"}
    key = "model.diffusion_model.transformer_blocks.0.attn1.to_q.weight"
    w = sd[key].float()
    scale = w.abs().max() / 448.0
    sd[key] = (w / scale).to(torch.float8_e4m3fn)
    sd[key + "_scale"] = scale.reshape(())
    sd[key.replace(".weight", ".input_scale")] = torch.tensor(0.5)
    save_file(sd, str(tmp_path / "fp8.safetensors"), metadata=meta)
    out = convert_ltx2(tmp_path / "fp8.safetensors", tmp_path / "mlx", dtype="float32")
    got = L.load_transformer(out, L.read_config(out)).transformer_blocks[0].attn1.to_q.weight
    want = sd[key].float() * scale
    assert np.allclose(np.array(got), want.numpy(), rtol=1e-6, atol=1e-7)
    assert rel_err(got, w) < 0.1  # e4m3 keeps ~3 mantissa bits
    sd[key] = (w / scale).to(torch.float8_e5m2)
    save_file(sd, str(tmp_path / "e5m2.safetensors"), metadata=meta)
    with pytest.raises(WeightsError, match="F8_E5M2"):
        convert_ltx2(tmp_path / "e5m2.safetensors", tmp_path / "mlx2", dtype="float32")


# ----------------------------------------------------------------------------- resolver, committed asset


def test_resolver_converts_once_and_reuses_the_cache(cases, tmp_path, monkeypatch):
    import mlx_video.ltx2.checkpoint as conv

    case = cases("2.0")
    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "LTX-2"
    shutil.copytree(case.paths["checkpoint"].parent, src)
    dst = L.resolve_ltx2_model(str(src))
    assert dst.is_relative_to(tmp_path / "cache")
    cfg = L.read_config(dst)
    assert cfg["gemma"] and cfg["distilled_lora"] and list(cfg["upsamplers"]) == ["ltx-2-tiny-spatial-upscaler-x2"]

    def no_conversion(*a, **k):
        raise AssertionError("converted again")

    monkeypatch.setattr(conv, "convert_ltx2", no_conversion)
    assert L.resolve_ltx2_model(str(src)) == dst  # the folder again: cached
    assert L.resolve_ltx2_model(str(src / LTX2_FILE)) == dst  # the file itself: same conversion
    assert L.resolve_ltx2_model(str(dst)) == dst  # a converted folder: as is
    with pytest.raises(ValueError, match="variant"):
        L.resolve_ltx2_model(str(src), variant="fast")


def test_resolver_downloads_only_what_the_variant_needs(monkeypatch, tmp_path):
    calls = []

    def offline(repo, patterns, *args, **kw):  # Gemma is fetched first (a gated refusal before the checkpoint)
        calls.append((repo, list(patterns)))
        if repo == L.GEMMA_REPO:
            return tmp_path / "gemma"
        raise hub.DownloadError(f"cannot download {repo}: no network connection to the Hugging Face Hub")

    monkeypatch.setattr(hub, "download", offline)
    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path))
    with pytest.raises(hub.DownloadError, match="no network") as e:
        L.resolve_ltx2_model("Lightricks/LTX-2", variant="dev")
    assert calls == [
        (L.GEMMA_REPO, L.GEMMA_FILES),
        (
            "Lightricks/LTX-2",
            [
                "ltx-2-19b-dev.safetensors",
                "ltx-2-spatial-upscaler-x2-1.0.safetensors",
                "ltx-2-19b-distilled-lora-384.safetensors",
            ],
        ),
    ]
    assert "Lightricks/LTX-2" in str(e.value)
    calls.clear()
    with pytest.raises(hub.DownloadError):
        L.resolve_ltx2_model("Lightricks/LTX-2.3", variant="distilled")
    assert calls[1][1] == ["ltx-2.3-22b-distilled-1.1.safetensors", "ltx-2.3-spatial-upscaler-x2-1.1.safetensors"]
    with pytest.raises(ValueError, match="unknown LTX-2 repo"):
        L.resolve_ltx2_model("someone/LTX-3")


def test_committed_asset_is_the_script_output_and_converts(cases, tmp_path, monkeypatch):
    case = cases("2.0")
    asset = ROOT / "assets" / "tiny-LTX-2"
    got = mx.load(str(asset / LTX2_FILE))
    want = mx.load(str(case.paths["checkpoint"]))
    assert got.keys() == want.keys() and all(mx.array_equal(got[k], want[k]).item() for k in got)
    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path))
    cfg = L.read_config(L.resolve_ltx2_model(str(asset)))
    assert cfg["model_version"] == "2.0.0-tiny" and cfg["gemma"] and cfg["upsamplers"] and cfg["distilled_lora"]
