"""Just-in-time DiT block weights in Wan generation (WanPipeline ``stream_blocks`` / ``dequantize_blocks``, the
memory plan's streaming step, ``--stream_blocks`` / ``--dequantize_blocks``) on the tiny official checkpoint."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from typer.testing import CliRunner

from mlx_video.cli import _expand_multi, app
from mlx_video.nn.blockwise import SafetensorsBlocks
from mlx_video.wan import pipeline as P
from mlx_video.wan.checkpoint import convert_wan
from tests.wan_tiny import TINY

SETTINGS = dict(task="t2v-5B", prompt="a cat", size="96*64", frame_num=9, sample_steps=2, seed=3)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return convert_wan(TINY, tmp_path_factory.mktemp("conv") / "tiny", dtype="bfloat16")


@pytest.fixture(scope="module")
def reference(converted):
    return P.WanPipeline(converted, offload=False).generate(P.WanSettings(**SETTINGS))


def test_streamed_generation_equals_resident(converted, reference):
    pipe = P.WanPipeline(converted, offload=False, stream_blocks=1)
    res = pipe.generate(P.WanSettings(**SETTINGS))
    bw = pipe.dit.block_weights
    assert isinstance(bw.source, SafetensorsBlocks) and bw.resident == 1
    np.testing.assert_array_equal(res.latents, reference.latents)
    np.testing.assert_array_equal(res.frames, reference.frames)


def test_quantized_dit_dequantized_per_block(converted, reference):
    s = P.WanSettings(**SETTINGS)
    runs = {}
    for deq in (None, True, False):
        pipe = P.WanPipeline(converted, offload=False, dequantize_blocks=deq)
        pipe.quantize_bits = 8  # as the memory plan sets it
        runs[deq] = pipe.generate(s).latents
        assert isinstance(pipe.dit.blocks[0].ffn.fc1, nn.QuantizedLinear)
        assert (pipe.dit.block_weights is None) == (deq is False)
    np.testing.assert_array_equal(runs[None], runs[True])  # the CPU policy: always dequantize

    def rel(a, b):
        return float(np.linalg.norm(a - b) / np.linalg.norm(b))

    e_qmm, e_bf16 = rel(runs[True], runs[False]), rel(runs[True], reference.latents)
    print(f"8-bit DiT + T5, 2 steps: dequantize-per-block vs quantized_matmul {e_qmm:.2e}, vs bf16 {e_bf16:.2e}")
    assert e_qmm < 3e-2 and e_bf16 < 3e-2  # measured 1.8e-2 and 9.4e-3


def test_plan_streams_when_asked_and_records_it(converted, reference):
    pipe = P.WanPipeline(converted, offload=False)
    s = P.WanSettings(**SETTINGS)
    mp = pipe.fit_memory(pipe.plan(s), 1e15, offload=False, stream_blocks=1)
    assert mp.stream_blocks == 1 and pipe.stream_blocks == 1
    res = pipe.generate(s)
    assert res.params["memory_plan"]["stream_blocks"] == 1
    np.testing.assert_array_equal(res.latents, reference.latents)
    # a plain plan on a large budget streams nothing
    assert pipe.fit_memory(pipe.plan(s), 1e15).stream_blocks is None and pipe.stream_blocks is None


def test_streaming_refused_with_loras(converted, tmp_path):
    from mlx.utils import tree_flatten

    from mlx_video.io.weights import save_safetensors
    from mlx_video.wan.transformer import WanModel, WanModelArgs

    args = WanModelArgs(**P.read_config(converted)["dit"])
    w = dict(tree_flatten(WanModel(args).blocks[0].self_attn.q.parameters()))
    lora = tmp_path / "l.safetensors"
    d = w["weight"].shape[0]
    save_safetensors(
        lora,
        {
            "diffusion_model.blocks.0.self_attn.q.lora_A.weight": mx.zeros((4, d)),
            "diffusion_model.blocks.0.self_attn.q.lora_B.weight": mx.zeros((d, 4)),
        },
    )
    pipe = P.WanPipeline(converted, loras=[str(lora)])
    s = P.WanSettings(**SETTINGS)
    with pytest.raises(ValueError, match="LoRAs"):
        pipe.fit_memory(pipe.plan(s), 1e15, stream_blocks=2)


def test_cli_flags(converted, tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path / "cache"))
    base = ["generate", "--task", "t2v-5B", "--ckpt_dir", str(TINY), "--prompt", "a cat", "--sample_steps", "2"]
    base += ["--size", "96*64", "--frame_num", "9"]
    r = CliRunner().invoke(app, _expand_multi(base + ["--stream_blocks", "1", "--dry_run"]))
    assert r.exit_code == 0, r.output
    assert "DiT blocks streamed (1 resident)" in r.stdout
    for bad in (["--stream_blocks", "-1"], ["--dequantize_blocks", "maybe"]):
        r = CliRunner().invoke(app, _expand_multi(base + ["--dry_run", *bad]))
        assert r.exit_code == 2 and "Traceback" not in r.output, (bad, r.output)
