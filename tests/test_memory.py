"""The memory planner (mlx_video/memory.py): its estimates against MLX's measured peak on this CPU, the
H100 numbers it was calibrated with, the documented order of choices, and the error before loading."""

from __future__ import annotations

import gc
import json

import mlx.core as mx
import pytest

from mlx_video import memory as M
from mlx_video.backend import backend
from mlx_video.nn.conv import MAX_UNFOLD_BYTES
from mlx_video.wan import vae21, vae22
from mlx_video.wan.t5 import UMT5Args
from mlx_video.wan.transformer import WanModel, WanModelArgs
from tests.helpers import ROOT

TI2V_5B = WanModelArgs(model_type="ti2v", dim=3072, ffn_dim=14336, num_heads=24, num_layers=30, in_dim=48, out_dim=48)


def _sizes_5b(**kw):
    return M.WanSizes(dit=TI2V_5B, vae=vae22.Wan22VAEArgs(), t5=UMT5Args(), images=1, **kw)


def _baseline() -> int:
    """MLX memory held before a test builds anything (arrays other tests keep alive), to subtract."""
    gc.collect()
    mx.clear_cache()
    return mx.get_active_memory()


def _measure(base: int, fn, *resident) -> int:
    """Peak bytes of ``fn()`` with ``resident`` (weights, inputs) included, above ``base``."""
    mx.eval(*resident)
    mx.clear_cache()
    mx.reset_peak_memory()
    mx.eval(fn())
    return mx.get_peak_memory() - base


@pytest.mark.skipif(backend() != "cpu", reason="the test sizes are calibrated for MLX's CPU backend")
def test_dit_forward_estimate_within_25_percent():
    """One DiT forward at 600 tokens, width 192 (not a calibration point): estimate vs mx.get_peak_memory."""
    base = _baseline()
    a = WanModelArgs(
        model_type="ti2v", dim=192, ffn_dim=768, num_heads=3, num_layers=2, in_dim=48, out_dim=48, text_dim=256
    )
    m = WanModel(a)
    x = mx.random.normal((1, 3, 20, 40, 48), key=mx.random.key(0))
    ctx = m.embed_text([mx.random.normal((20, 256), key=mx.random.key(1))])
    rope = m.rope_tables((3, 10, 20))
    peak = _measure(base, lambda: m(x, mx.array([500.0]), ctx, rope), m.parameters(), x, ctx, rope.even, rope.odd)
    sizes = M.WanSizes(dit=a, vae=vae22.Wan22VAEArgs())
    est = M.weight_bytes(sizes.dit_params, "float32") + M.dit_activation_bytes(a, 600, 1, "float32", "cpu")
    print(f"DiT forward: estimated {est / 2**20:.1f} MB, measured {peak / 2**20:.1f} MB")
    assert abs(est / peak - 1) < 0.25


@pytest.mark.skipif(backend() != "cpu", reason="the test sizes are calibrated for MLX's CPU backend")
@pytest.mark.parametrize("version,latent", [("2.2", (2, 6, 10)), ("2.1", (2, 10, 12))])
def test_vae_decode_estimate_within_25_percent(version, latent):
    base = _baseline()
    args = vae22.Wan22VAEArgs(dim=8, dec_dim=8) if version == "2.2" else vae21.Wan21VAEArgs(dim=8)
    vae = (vae22.Wan22VAE if version == "2.2" else vae21.Wan21VAE)(args)
    z = mx.random.normal((1, *latent, args.z_dim), key=mx.random.key(2))
    peak = _measure(base, lambda: vae.decode(z), vae.parameters(), z)
    T, h, w = latent
    st, s, _ = vae.stride
    sizes = M.WanSizes(dit=TI2V_5B, vae=args)
    est = M.weight_bytes(sizes.vae_params, "float32") + M.vae_activation_bytes(
        args, 1 + st * (T - 1), h * s, w * s, "float32", backend_name="cpu", float_out=True
    )
    print(f"Wan{version} VAE decode: estimated {est / 2**20:.1f} MB, measured {peak / 2**20:.1f} MB")
    assert abs(est / peak - 1) < 0.25


def test_gpu_estimates_match_the_h100_measurements():
    """The "cuda" constants reproduce what they were calibrated on (benchmarks/README.md, issue 11)."""
    sizes = _sizes_5b()
    L = M.tokens(sizes, 121, 704, 1280)
    assert L == 27280
    w = M.weight_bytes(sizes.dit_params, "bfloat16")
    for batch, measured in ((1, 16.0), (2, 21.7)):
        est = (w + M.dit_activation_bytes(TI2V_5B, L, batch, "bfloat16", "cuda")) / M.GIB
        assert abs(est / measured - 1) < 0.1, (batch, est)
    # not a calibration point: one A14B expert at 480x832x81 (32,760 tokens), batch 1, measured 38.2 GiB
    a14b = WanModelArgs(model_type="i2v", dim=5120, ffn_dim=13824, num_heads=40, num_layers=40, in_dim=36, out_dim=16)
    s14 = M.WanSizes(dit=a14b, vae=vae21.Wan21VAEArgs())
    est = (
        M.weight_bytes(s14.dit_params, "bfloat16")
        + M.dit_activation_bytes(a14b, M.tokens(s14, 81, 480, 832), 1, "bfloat16", "cuda")
    ) / M.GIB
    assert abs(est / 38.2 - 1) < 0.1, est
    # the Wan2.2 VAE decode of 121x704x1280 in bf16, to float32 pixels (vae.decode) and to uint8 chunk by chunk
    # (decode_chunks, WanPipeline.decode): benchmarks/results/wan_vae_lean_full.json
    rows = json.loads((ROOT / "benchmarks" / "results" / "wan_vae_lean_full.json").read_text())["rows"]
    for row in rows:
        if row["frames_per_chunk"] == 4 and row["unfold_gb"] is None:
            est = (
                M.weight_bytes(sizes.vae_params, "bfloat16")
                + M.vae_activation_bytes(
                    sizes.vae, 121, 704, 1280, "bfloat16", backend_name="cuda", float_out=row["pixels"] == "f32"
                )
            ) / M.GIB
            assert abs(est / row["peak_gib"] - 1) < 0.1, (row, est)
    # Metal counts the conv unfold buffer on top (capped by nn/conv.py): never below CUDA's estimate
    for dt in ("float32", "bfloat16"):
        cuda, metal = (M.vae_activation_bytes(sizes.vae, 121, 704, 1280, dt, backend_name=b) for b in ("cuda", "metal"))
        assert cuda < metal <= cuda + MAX_UNFOLD_BYTES


def test_plan_follows_the_order_and_fits():
    sizes = _sizes_5b()
    roomy = M.plan(sizes, 121, 704, 1280, budget=200 * M.GIB, backend_name="metal")
    assert roomy.steps == [] and roomy.batch_cfg and roomy.vae_tile is None
    prev = roomy.peak_gib
    for gib in (32, 24, 16, 12, 10):
        p = M.plan(sizes, 121, 704, 1280, budget=gib * M.GIB, backend_name="metal")
        assert p.peak_gib <= gib and p.peak_gib <= prev + 1e-9
        prev = p.peak_gib
    assert "sequential CFG" in p.steps and any(s.startswith("quantize") for s in p.steps)
    assert p.tiling is not None
    json.dumps(p.to_dict())
    # a user-fixed setting is kept
    q = M.plan(sizes, 121, 704, 1280, budget=16 * M.GIB, backend_name="metal", vae_dtype="float32")
    assert q.vae_dtype == "float32" and q.peak_gib <= 16


def test_budget_below_minimum_raises_before_loading():
    sizes = _sizes_5b()
    before = mx.get_active_memory()
    with pytest.raises(M.MemoryBudgetError, match=r"no memory plan fits 2\.00 GiB.*needs \d+\.\d+ GiB"):
        M.plan(sizes, 121, 704, 1280, budget=2 * M.GIB, backend_name="metal")
    assert mx.get_active_memory() - before < 1 << 20  # nothing was materialised
    with pytest.raises(ValueError, match="unknown plan settings"):
        M.plan(sizes, 121, 704, 1280, budget=2 * M.GIB, not_a_setting=1)


def test_default_budget_is_positive():
    assert M.default_budget() > 1 << 30


E2E_CASES = {  # case -> (model, task, images, (frames, height, width)) of benchmarks/results/e2e_<case>_full.json
    "ti2v-budget20": ("ti2v-5B", "ti2v-5B", 1, (121, 928, 960)),
    "i2v-14B": ("i2v-14B", "i2v-14B", 1, (81, 624, 624)),
    "i2v-A14B_one-expert": ("i2v-A14B", "i2v-A14B", 1, (81, 624, 624)),
    "i2v-A14B-720p": ("i2v-A14B", "i2v-A14B", 1, (81, 960, 960)),
    # measured before the lean VAE (conv windows, uint8 decode) and the VAE drawn in its dtype: text and DiT only
    "t2v": ("ti2v-5B", "t2v-5B", 0, (121, 704, 1280)),
    "mi2v": ("ti2v-5B", "mi2v-5B", 3, (121, 928, 960)),
}
OLD = {"t2v", "mi2v"}


@pytest.mark.parametrize("case", list(E2E_CASES))
def test_gpu_estimates_match_the_h100_whole_runs(case):
    """The "cuda" constants against the whole-run H100 peaks per phase (benchmarks/e2e.py --size full): within
    10% (the VAE phases only of the runs made with today's VAE code and harness)."""
    from benchmarks.e2e_cases import wan_config
    from mlx_video.wan.config import TASKS

    model, task, images, (F, H, W) = E2E_CASES[case]
    r = json.loads((ROOT / "benchmarks" / "results" / f"e2e_{case}_full.json").read_text())
    sizes = M.wan_sizes(wan_config(model), TASKS[task], images=images)
    assert M.tokens(sizes, F, H, W) == r["tokens"] and r["video"] == f"{F}x{H}x{W}"
    p = M.MemoryPlan(
        batch_cfg=r["batch_cfg"], vae_dtype=r["vae_dtype"], offload=r["offload"], dtype=r["dtype"], swap_experts=True
    )
    est = {k: v / M.GIB for k, v in M.phase_peaks(sizes, F, H, W, p, "cuda").items()}
    phases = {"text": "text", "denoise": "denoise"} if case in OLD else {"image": "encode", "decode": "decode"}
    phases = {"text": "text", "denoise": "denoise", **phases}
    for key, phase in phases.items():
        measured = r["phases"][phase]["mlx_peak_gib"]
        if measured:
            assert abs(est[key] / measured - 1) < 0.1, (key, est[key], measured)
    if model == "i2v-A14B":
        expert = M.weight_bytes(sizes.dit_params, "bfloat16") / M.GIB
        assert 26 < expert < 27 and expert < est["denoise"] < 2.2 * expert
