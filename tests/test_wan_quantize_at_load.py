"""Weights quantized at load from a float folder (the memory plan's "quantize weights at load" step): the DiT's
linears become 8-bit as it loads, the run stays close to the float one, the plan is recorded, a budget between
the float and the 8-bit peaks chooses it, and `mlx_video generate --quantize_bits 8` carries it out."""

from __future__ import annotations

from dataclasses import replace

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from typer.testing import CliRunner

from mlx_video import memory
from mlx_video.cli import _expand_multi, app
from mlx_video.wan import pipeline as P
from mlx_video.wan.checkpoint import convert_wan
from tests.oracles import rel_err
from tests.wan_tiny import TINY, contexts

SETTINGS = dict(task="t2v-5B", prompt="a cat", size="64*64", frame_num=5, sample_steps=2, seed=1)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return convert_wan(TINY, tmp_path_factory.mktemp("conv") / "tiny", dtype="float32")


def _quantized(module) -> list[str]:
    return [n for n, m in module.named_modules() if isinstance(m, nn.QuantizedLinear)]


def test_plan_quantizes_a_float_folder_at_load(converted):
    pipe = P.WanPipeline(converted, dtype=mx.float32, offload=False)
    s, ctx = P.WanSettings(**SETTINGS), contexts(pipe.cfg["dit"]["text_dim"], (5, 7))
    ref = pipe.generate(s, context=ctx)
    assert not _quantized(pipe._dits["dit"])
    pipe.free("dit")
    mp = pipe.fit_memory(pipe.plan(s), 1e15, quantize_bits=8, offload=False)
    assert mp.quantize_bits == 8 and pipe.quantize_bits == 8
    res = pipe.generate(replace(s, batch_cfg=mp.batch_cfg), context=ctx)
    q = _quantized(pipe._dits["dit"])
    assert "blocks.0.ffn.fc1" in q and "blocks.1.self_attn.q" in q, q
    assert pipe._dits["dit"].blocks[0].ffn.fc1.bits == 8
    assert res.params["memory_plan"]["quantize_bits"] == 8
    err = rel_err(res.latents, ref.latents)
    print(f"8-bit at load vs float32: rel err {err:.2e}")
    assert 1e-5 < err < 5e-2, err  # measured 4.2e-3: quantized, and close


def test_budget_between_float_and_8bit_peaks_chooses_8bit():
    """TI2V-5B 121x704x1280 (the tiny model's peak is its VAE's, which quantizing leaves alone): with the other
    settings fixed, a budget between the bf16 and the 8-bit peaks takes exactly the 8-bit step."""
    from benchmarks.random_models import wan_config

    sizes = memory.wan_sizes(wan_config("ti2v-5B"))
    fixed = dict(offload=True, batch_cfg=False, vae_dtype="bfloat16", vae_tile=(256, 256), vae_overlap=64)
    peak = {
        b: memory.plan(sizes, 121, 704, 1280, 1e15, backend_name="metal", quantize_bits=b, **fixed).peak_gib
        for b in (None, 8)
    }
    assert peak[8] < peak[None]
    mp = memory.plan(sizes, 121, 704, 1280, (peak[8] + peak[None]) / 2 * memory.GIB, backend_name="metal", **fixed)
    assert mp.quantize_bits == 8 and mp.steps == ["quantize weights at load (8-bit)"], mp.steps


def test_cli_quantize_bits_runs_quantized(tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "v.mp4"
    args = ["generate", "--task", "t2v-5B", "--ckpt_dir", str(TINY), "--prompt", "a cat", "--sample_steps", "1"]
    args += ["--size", "64*64", "--frame_num", "5", "--quantize_bits", "8", "--save_file", str(out)]
    seen = []
    orig = P.WanPipeline._quantize

    def spy(self, m, name):
        seen.append((name, self.quantize_bits))
        return orig(self, m, name)

    monkeypatch.setattr(P.WanPipeline, "_quantize", spy)
    r = CliRunner().invoke(app, _expand_multi(args))
    assert r.exit_code == 0, r.output
    assert ("dit", 8) in seen and ("t5", 8) in seen
    assert "weights 8-bit" in r.output and out.stat().st_size > 0
    from mlx_video.io.video import read_metadata

    plan = read_metadata(out)["memory_plan"]
    assert plan["quantize_bits"] == 8 and np.isfinite(plan["peak_gib"])
