"""Few-step distillation LoRAs: the published lightx2v / Lightning / musubi key formats (diff, diff_b, diff_m, alpha)
merge to the weights an independent numpy merge gives; ``--preset`` recipes; guide scale 1 runs one DiT pass a
step (counted); lightx2v's step-distill samplers."""

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlx_video.io.weights import WeightsError
from mlx_video.nn.lora import merge_loras
from mlx_video.wan import denoise as D
from mlx_video.wan import pipeline as P
from mlx_video.wan.checkpoint import convert_wan
from mlx_video.wan.transformer import lora_key_map as wan_key_map
from mlx_video.wan.transformer import sanitize
from tests.wan_tiny import TINY, contexts, run_cli, spy_on

RANK, STRENGTH = 4, 0.7
LINEARS = [f"blocks.{i}.{a}.{p}" for i in range(2) for a in ("self_attn", "cross_attn") for p in "qkvo"] + [
    f"blocks.{i}.ffn.{j}" for i in range(2) for j in (0, 2)
]
NORMS = [f"blocks.{i}.{a}.{n}" for i in range(2) for a in ("self_attn", "cross_attn") for n in ("norm_q", "norm_k")]
EMBED = ["text_embedding.0", "text_embedding.2", "time_embedding.0", "time_embedding.2", "time_projection.1"]


@pytest.fixture(scope="module")
def conv(tmp_path_factory):
    return convert_wan(TINY, tmp_path_factory.mktemp("conv") / "tiny", dtype="float32")


@pytest.fixture(scope="module")
def official():
    """The tiny checkpoint's official state dict as float32 numpy (the names the LoRA formats use)."""
    sd = mx.load(str(TINY / "diffusion_pytorch_model.safetensors"))
    return {k: np.array(v.astype(mx.float32)) for k, v in sd.items()}


def _lora_pair(g, sd, name, out, down, up, alpha=None):
    o, i = sd[name + ".weight"].shape
    out[down] = g.normal(0, 0.1, (RANK, i)).astype(np.float32)
    out[up] = g.normal(0, 0.1, (o, RANK)).astype(np.float32)
    if alpha is not None:
        out[alpha] = np.array(8.0, np.float32)


def lightx2v_wan21(sd, g):
    """Wan2.1 lightx2v distill LoRA as extracted for ComfyUI (Kijai): ``diffusion_model.`` + official names,
    lora_down / lora_up / alpha per linear, ``diff_b`` per linear bias, ``diff`` on the q/k RMSNorm scales and on
    ``norm3`` (with its ``diff_b``), LoRAs on the embeddings, time projection and ``head.head``."""
    out = {}
    for m in LINEARS + EMBED + ["head.head"]:
        p = "diffusion_model." + m
        _lora_pair(g, sd, m, out, p + ".lora_down.weight", p + ".lora_up.weight", p + ".alpha")
        out[p + ".diff_b"] = g.normal(0, 0.1, sd[m + ".bias"].shape).astype(np.float32)
    for m in NORMS + [f"blocks.{i}.norm3" for i in range(2)]:
        out[f"diffusion_model.{m}.diff"] = g.normal(0, 0.1, sd[m + ".weight"].shape).astype(np.float32)
    for i in range(2):
        out[f"diffusion_model.blocks.{i}.norm3.diff_b"] = g.normal(0, 0.1, (sd["blocks.0.norm3.bias"].shape)).astype(
            np.float32
        )
    return out


def lightx2v_wan22(sd, g):
    """Wan2.2 lightx2v Distill-Loras / Lightning (lightx2v ``lora_loader.py``): lora_A / lora_B without alpha,
    ``diff_b``, norm ``diff``, ``diff_m`` on every block's and the head's modulation, and ``head.head`` as a
    full ``diff`` + ``diff_b`` (no LoRA pair there, as diffusers' converter notes for Wan2.2-Distill-Loras)."""
    out = {}
    for m in LINEARS + EMBED:
        p = "diffusion_model." + m
        _lora_pair(g, sd, m, out, p + ".lora_A.weight", p + ".lora_B.weight")
        out[p + ".diff_b"] = g.normal(0, 0.1, sd[m + ".bias"].shape).astype(np.float32)
    for m in NORMS:
        out[f"diffusion_model.{m}.diff"] = g.normal(0, 0.1, sd[m + ".weight"].shape).astype(np.float32)
    for m in ["blocks.0", "blocks.1", "head"]:
        out[f"diffusion_model.{m}.diff_m"] = g.normal(0, 0.1, sd[m + ".modulation"].shape).astype(np.float32)
    out["diffusion_model.head.head.diff"] = g.normal(0, 0.1, sd["head.head.weight"].shape).astype(np.float32)
    out["diffusion_model.head.head.diff_b"] = g.normal(0, 0.1, sd["head.head.bias"].shape).astype(np.float32)
    return out


def musubi(sd, g):
    """musubi-tuner (kohya names): ``lora_unet_blocks_0_self_attn_q`` + lora_down / lora_up / alpha, linears only."""
    out = {}
    for m in LINEARS:
        p = "lora_unet_" + m.replace(".", "_")
        _lora_pair(g, sd, m, out, p + ".lora_down.weight", p + ".lora_up.weight", p + ".alpha")
    return out


def numpy_merge(sd: dict, lora: dict, strength: float, touched: set | None = None) -> dict:
    """An independent merge on the official state dict: W += s·(alpha/rank)·B@A, bias += s·diff_b,
    weight += s·diff, modulation += s·diff_m (the official keys changed go into ``touched``)."""
    touched = set() if touched is None else touched
    kohya = {k[: -len(".weight")].replace(".", "_"): k[: -len(".weight")] for k in sd if k.endswith(".weight")}
    out = {k: v.copy() for k, v in sd.items()}
    for key, v in lora.items():
        k = key.removeprefix("diffusion_model.")
        for down, up in ((".lora_down.weight", ".lora_up.weight"), (".lora_A.weight", ".lora_B.weight")):
            if k.endswith(down):
                m = k[: -len(down)]
                a = lora.get(key[: -len(down)] + ".alpha")
                scale = float(a) / v.shape[0] if a is not None else 1.0
                m = kohya[m.removeprefix("lora_unet_")] if m.startswith("lora_unet_") else m
                out[m + ".weight"] += strength * scale * (lora[key[: -len(down)] + up] @ v)
                touched.add(m + ".weight")
        for suffix, leaf in ((".diff_b", ".bias"), (".diff_m", ".modulation"), (".diff", ".weight")):
            if k.endswith(suffix):
                out[k[: -len(suffix)] + leaf] += strength * v
                touched.add(k[: -len(suffix)] + leaf)
                break
    return out


def _ours(model) -> dict:
    return {k: np.array(v) for k, v in tree_flatten(model.parameters())}


@pytest.mark.parametrize("fmt", [lightx2v_wan21, lightx2v_wan22, musubi])
def test_published_formats_merge_like_an_independent_merge(conv, official, fmt, tmp_path):
    lora = fmt(official, np.random.default_rng(3))
    touched = set()
    want = sanitize({k: mx.array(v) for k, v in numpy_merge(official, lora, STRENGTH, touched).items()}, "official")
    want = {k: np.array(v) for k, v in want.items()}
    path = tmp_path / "lora.safetensors"
    mx.save_safetensors(str(path), {k: mx.array(v) for k, v in lora.items()})
    pipe = P.WanPipeline(conv, dtype=mx.float32, offload=False, loras=[f"{path}:{STRENGTH}"])
    got = _ours(pipe.dit)
    base = _ours(P.load_dit(conv, pipe.cfg))
    assert set(got) == set(want)
    changed = 0
    for k in got:
        np.testing.assert_allclose(got[k], want[k].reshape(got[k].shape), rtol=1e-5, atol=1e-5, err_msg=k)
        changed += not np.array_equal(got[k], base[k])
    assert changed == len(touched)  # every tensor the file targets moved, nothing else


def test_diff_errors_name_the_key(conv):
    model = P.load_dit(conv, P.read_config(conv))
    with pytest.raises(WeightsError, match="blocks.9.norm3.diff"):
        merge_loras(model, [({"diffusion_model.blocks.9.norm3.diff": mx.zeros((64,))}, 1.0)], wan_key_map())
    with pytest.raises(WeightsError, match=r"blocks.0.norm3.diff_b has shape \(3,\)"):
        merge_loras(model, [({"diffusion_model.blocks.0.norm3.diff_b": mx.zeros((3,))}, 1.0)], wan_key_map())


def test_presets_fill_the_documented_recipe():
    s = P.WanSettings(task="t2v-5B", recipe="lightx2v-4step", size="64*64", frame_num=5).validate()
    assert (s.sample_steps, s.guide_scale, s.sample_shift, s.solver) == (4, 1.0, 5.0, "lightx2v")
    s = P.WanSettings(task="t2v-5B", recipe="lightx2v-a14b-4step", sample_steps=8, size="64*64", frame_num=5)
    assert s.validate().sample_steps == 8 and s.validate().solver == "lightx2v-euler"
    with pytest.raises(ValueError, match="unknown preset 'fast'"):
        P.WanSettings(task="t2v-5B", recipe="fast").validate()


def test_step_distill_grid_and_samplers():
    ts, sig = D.step_distill_grid(4, 5.0)
    base = np.array([1.0, 0.75, 0.5, 0.25])
    np.testing.assert_allclose(sig, np.append(5 * base / (1 + 4 * base), 0), rtol=1e-6)
    np.testing.assert_allclose(ts, [1000.0, 937.5, 833.3333, 625.0], rtol=1e-5)
    x, v = mx.random.normal((1, 2, 3), key=mx.random.key(0)), mx.random.normal((1, 2, 3), key=mx.random.key(1))
    key = mx.random.key(5)
    s = D.StepDistillSolver(ts, sig, renoise=True, key=key)
    eps = mx.random.normal(x.shape, key=mx.random.split(key, 2)[1])
    x0 = x - sig[1] * v
    np.testing.assert_allclose(np.array(s.step(v, 1, x)), np.array((1 - sig[2]) * x0 + sig[2] * eps), atol=1e-6)
    np.testing.assert_allclose(np.array(s.step(v, 3, x)), np.array(x - sig[3] * v), atol=1e-6)
    e = D.StepDistillSolver(ts, sig, renoise=False)
    np.testing.assert_allclose(np.array(e.step(v, 1, x)), np.array(x + (sig[2] - sig[1]) * v), atol=1e-6)


@pytest.mark.parametrize("batch_cfg", [True, False])
def test_guide_scale_one_runs_one_dit_pass_per_step(conv, monkeypatch, batch_cfg):
    pipe = P.WanPipeline(conv, dtype=mx.float32, offload=False)
    spy = spy_on(pipe, monkeypatch, lambda x, t, ctx, rope, **kw: (x.shape[0], ctx.shape[0]))  # batch of x, of text
    dim = pipe.cfg["dit"]["text_dim"]
    kw = dict(
        task="t2v-5B",
        size="64*64",
        frame_num=5,
        batch_cfg=batch_cfg,
        noise=mx.random.normal((1, 2, 4, 4, 48), key=mx.random.key(2)),
        context=contexts(dim),
    )
    one = pipe.generate(recipe="lightx2v-4step", **kw)
    assert spy.calls == [(1, 1)] * 4  # 4 steps, one conditional pass each
    spy.calls.clear()
    two = pipe.generate(recipe="lightx2v-4step", guide_scale=1.0 + 1e-7, **kw)  # CFG with g ~ 1: 2 passes a step
    assert spy.calls == ([(2, 2)] * 4 if batch_cfg else [(1, 1)] * 8)
    np.testing.assert_allclose(np.array(one.latents), np.array(two.latents), rtol=1e-4, atol=1e-4)


def test_cli_preset_with_a_lightx2v_lora(conv, official, tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path / "cache"))
    lora = tmp_path / "lightx2v.safetensors"
    weights = lightx2v_wan21(official, np.random.default_rng(0))
    mx.save_safetensors(str(lora), {k: mx.array(v) for k, v in weights.items()})
    out = tmp_path / "fast.mp4"
    r = run_cli(
        *("--prompt", "x", "--size", "64*64", "--frame_num", 5),
        *("--preset", "lightx2v-4step", "--lora", lora, "--save_file", out),
    )
    assert r.exit_code == 0, r.output
    meta = out.read_bytes().decode("latin1")
    assert '"preset": "lightx2v-4step"' in meta and '"sample_steps": 4' in meta
    assert '"sample_guide_scale": 1.0' in meta
