"""LTX-2 generation with the transformer blocks streamed from ``transformer.safetensors`` (``load_components(...,
stream_blocks=N)``, docs/streaming.md) on the bundled tiny LTX-2 (assets/tiny-LTX-2, random weights, converted
float32 and 8-bit): bit-identical to the resident run for a whole distilled generation and for the two-stage
pipelines, whose distilled LoRA is merged into stage 2 (with streaming: a hook adding each block's LoRA delta as
it is read, nn/lora.py). Also a LoRA touching non-block layers and full-tensor diffs, and the planted bug the
tests exist for: a LoRA delta not applied when a block is read again."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from mlx_video.ltx2 import loading
from mlx_video.ltx2 import pipelines as P
from mlx_video.ltx2.checkpoint import convert_ltx2
from mlx_video.ltx2.denoise import TextContext
from mlx_video.nn.blockwise import BlockWeights
from mlx_video.nn.lora import merge_loras
from tests.helpers import ASSETS

TINY = ASSETS / "tiny-LTX-2"
SIZE = dict(height=128, width=128, num_frames=9, seed=3)
GUIDED = dict(steps=2, video_guidance={"stg_blocks": (1,)}, audio_guidance={"stg_blocks": (1,)})  # 2 blocks


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The tiny LTX-2 dev checkpoint converted float32 and 8-bit (bf16, group 32), each with its upsampler and
    distilled LoRA."""
    parts = loading.find_parts(TINY, "dev")
    root = tmp_path_factory.mktemp("ltxstream")
    kw = dict(upsamplers=parts["upsamplers"], distilled_lora=parts["distilled_lora"])
    return {
        "f32": convert_ltx2(parts["checkpoint"], root / "f32", dtype="float32", **kw),
        "q8": convert_ltx2(parts["checkpoint"], root / "q8", dtype="bfloat16", quantize=8, group_size=32, **kw),
    }


def _contexts(cfg):
    g = np.random.default_rng(5)
    t = cfg["transformer"]
    widths = (t["caption_channels"],) * 2 if t["caption_projection"] else (t["cross_attention_dim"],) * 2
    make = lambda: TextContext(*(mx.array(g.standard_normal((1, 16, d)).astype(np.float32)) for d in widths))  # noqa: E731
    return make(), make()


def _generate(folder, pipeline, stream=None, lora=None, prepare=None, **kw):
    cfg = loading.read_config(folder)
    s = P.LTXSettings(pipeline, **SIZE, **({} if pipeline == "distilled" else GUIDED), lora_strength_stage_2=lora)
    comps = loading.load_components(folder, cfg, pipeline, s.lora_strengths, False, stream_blocks=stream, **kw)
    bw = comps.transformer.block_weights
    assert (bw is not None and bw.streaming) == bool(stream)
    if prepare is not None:
        prepare(comps)
    pos, neg = _contexts(cfg)
    return P.generate(comps, s, pos, neg if s.guided else None)


def _same(a, b) -> bool:
    pairs = [(a.latents, b.latents), (a.audio_latents, b.audio_latents)]
    return all(mx.array_equal(x, y) for x, y in pairs) and np.array_equal(a.frames, b.frames)


def _diff(a, b) -> float:
    return float(mx.abs(a.latents - b.latents).max())


@pytest.mark.parametrize("folder", ["f32", "q8"])
def test_distilled_generation_streamed_equals_resident(folders, folder):
    resident = _generate(folders[folder], "distilled")
    for n in (1, 2):
        assert _same(_generate(folders[folder], "distilled", stream=n), resident), n


@pytest.mark.parametrize("folder,pipeline", [("f32", "dev-two-stage"), ("q8", "dev-two-stage-hq")])
def test_two_stage_with_the_distilled_lora_streamed_equals_resident(folders, folder, pipeline):
    """Stage 2 (HQ: both stages) runs dev + the distilled LoRA: merged in place when resident, added to each block
    as it is read when streamed; the outputs are identical, and the LoRA does move them."""
    resident = _generate(folders[folder], pipeline)
    streamed = _generate(folders[folder], pipeline, stream=1)
    assert _same(streamed, resident)
    unmerged = _generate(folders[folder], pipeline, stream=1, lora=0.0)
    print(f"{pipeline} {folder}: LoRA at 0 vs default, max |latent diff| {_diff(unmerged, resident):.3e}")
    assert _diff(unmerged, resident) > 1e-3


def test_lora_lost_on_reread_is_caught(folders, monkeypatch):
    """The planted bug: the merged weights only in the read made at the merge (a block read again at the next
    forward loses its LoRA delta)."""
    resident = _generate(folders["f32"], "dev-two-stage")
    set_hook = BlockWeights.set_hook

    def once(self, hook):
        set_hook(self, hook)
        self.hook = None

    monkeypatch.setattr(BlockWeights, "set_hook", once)
    bad = _generate(folders["f32"], "dev-two-stage", stream=1)
    print(f"LoRA delta dropped on re-read: max |latent diff| {_diff(bad, resident):.3e}")
    assert not _same(bad, resident)


# ----------------------------------------------------------------------------- merge_loras on streamed blocks


def _module(model, name):
    for part in name.split("."):
        model = model[int(part)] if part.isdigit() else model[part]
    return model


def _extra_lora(model, seed=0) -> dict:
    """A LoRA in our own names on a non-block linear (patchify_proj) and two block linears, plus full-tensor
    diffs on a block bias and a non-block bias."""
    g = np.random.default_rng(seed)
    r = lambda *s: mx.array(g.standard_normal(s).astype(np.float32) * 0.1)  # noqa: E731
    out = {}
    for name in ("patchify_proj", "transformer_blocks.0.attn1.to_q", "transformer_blocks.1.ff.proj_out"):
        layer = _module(model, name)
        o, i = layer.weight.shape[0], layer.weight.shape[1] * (32 // layer.bits if hasattr(layer, "bits") else 1)
        out[f"{name}.lora_A"], out[f"{name}.lora_B"] = r(4, i), r(o, 4)
    for name in ("transformer_blocks.1.attn1.to_k", "proj_out"):
        out[f"{name}.diff_b"] = r(*_module(model, name).bias.shape)
    return out


@pytest.mark.parametrize("folder", ["f32", "q8"])
def test_merge_into_streamed_blocks_equals_resident_merge(folders, folder):
    """merge_loras on a streamed transformer: block layers through the hook (on every re-read), the non-block
    layer and bias in place; bit-identical to the resident merge over a whole generation; strengths 0 then put
    the stored weights back and drop the hook."""
    d = folders[folder]
    stored = lambda: loading.load_safetensors(d / "transformer.safetensors")  # noqa: E731
    runs = {}

    def merge(strength):
        def prepare(comps):
            m = comps.transformer
            lora = _extra_lora(m)
            merge_loras(m, [(lora, strength)], base=stored)
            if m.block_weights is not None and m.block_weights.streaming:
                assert (m.block_weights.hook is None) == (strength == 0.0)
                for k in ("patchify_proj.weight", "proj_out.bias"):  # merged in place
                    assert mx.array_equal(_module(m, k), mx.load(str(d / "transformer.safetensors"))[k]) == (
                        strength == 0.0
                    )

        return prepare

    for stream in (None, 1):
        runs[stream, "base"] = _generate(d, "distilled", stream)
        runs[stream, 0.7] = _generate(d, "distilled", stream, prepare=merge(0.7))
        runs[stream, 0.0] = _generate(d, "distilled", stream, prepare=merge(0.0))
    assert _diff(runs[None, 0.7], runs[None, "base"]) > 1e-3
    for key in ("base", 0.7, 0.0):
        assert _same(runs[1, key], runs[None, key]), key
    assert _same(runs[1, 0.0], runs[None, "base"])


# ----------------------------------------------------------------------------- CLI and memory estimate


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    """The tiny LTX-2 distilled checkpoint converted (float32) with its Gemma and upsampler."""
    parts = loading.find_parts(TINY, "distilled")
    return convert_ltx2(
        parts["checkpoint"],
        tmp_path_factory.mktemp("ltxcli") / "tiny",
        dtype="float32",
        gemma=parts["gemma"],
        upsamplers=parts["upsamplers"],
    )


def _cli(model, *args):
    from typer.testing import CliRunner

    from mlx_video.cli import app

    small = ["--height", "128", "--width", "128", "--num-frames", "9", "--prompt", "a cat"]
    return CliRunner().invoke(app, ["generate", "--model", str(model), *small, *args])


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (
            ["--stream_blocks", "-1"],
            "--stream_blocks must be 0 (all resident) or the number of resident blocks, got -1",
        ),
        (["--stream-blocks", "two"], "Invalid value"),
        (["--dequantize_blocks", "False"], "Got unexpected extra argument"),  # a flag: --no-dequantize_blocks
    ],
)
def test_cli_refuses_bad_stream_blocks(cli_model, tmp_path, argv, fragment):
    out = tmp_path / "o.mp4"
    r = _cli(cli_model, *argv, "-o", str(out))
    assert r.exit_code == 2, r.output
    assert fragment in " ".join(r.output.split()) and "Traceback" not in r.output and not out.exists()
    if argv[1] == "-1":
        assert len(r.stderr.strip().splitlines()) == 1


def test_cli_streams_the_blocks(cli_model, tmp_path, monkeypatch):
    from mlx_video.cli import ltx2 as cli_ltx2

    seen = {}

    def spy(*a, **kw):
        comps = loading.load_components(*a, **kw)
        seen.update(
            kw, streaming=comps.transformer.block_weights.streaming, resident=comps.transformer.block_weights.resident
        )
        return comps

    monkeypatch.setattr(cli_ltx2, "load_components", spy)
    out = tmp_path / "s.mp4"
    r = _cli(cli_model, "--stream_blocks", "1", "--no-dequantize_blocks", "-o", str(out))
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 0
    assert seen["stream_blocks"] == 1 and seen["dequantize_blocks"] is False
    assert seen["streaming"] and seen["resident"] == 1
    r = _cli(cli_model, "--stream_blocks", "1", "--dry-run", "-o", str(tmp_path / "d.mp4"))
    assert r.exit_code == 0 and "(distilled, transformer blocks streamed (1 resident))" in r.stdout, r.output


def _fake_folder(path, blocks=8, bits=None):
    """config.json + a transformer.safetensors of ``blocks`` blocks (one [64, 64] linear each, 8-bit packed when
    ``bits``) and one non-block weight: what the estimate reads."""
    import json

    from mlx_video.io.weights import save_safetensors

    path.mkdir()
    w = {"proj_out.weight": mx.zeros((64, 64), mx.bfloat16)}
    for i in range(blocks):
        if bits:
            w[f"transformer_blocks.{i}.attn1.to_q.weight"] = mx.zeros((64, 64 * bits // 32), mx.uint32)
            w[f"transformer_blocks.{i}.attn1.to_q.scales"] = mx.zeros((64, 2), mx.bfloat16)
            w[f"transformer_blocks.{i}.attn1.to_q.biases"] = mx.zeros((64, 2), mx.bfloat16)
        else:
            w[f"transformer_blocks.{i}.attn1.to_q.weight"] = mx.zeros((64, 64), mx.bfloat16)
    save_safetensors(path / "transformer.safetensors", w)
    q = {"transformer": {"bits": bits, "group_size": 32}} if bits else {}
    (path / "config.json").write_text(json.dumps({"dtype": "bfloat16", "quantization": q}))
    return path


def test_estimate_counts_resident_blocks_and_dequantized_copy(tmp_path):
    from mlx_video.ltx2 import memory

    d = _fake_folder(tmp_path / "bf16")
    block = 64 * 64 * 2
    est = {n: memory.ltx_phase_peaks(d, "dev", 9, 128, 128, False, n)["generate"] for n in (None, 1, 4, 8)}
    assert est[None] - est[1] == pytest.approx(6 * block)  # 1 resident + the one in flight of 8
    assert est[None] - est[4] == pytest.approx(3 * block) and est[8] == est[None]
    q = _fake_folder(tmp_path / "q8", bits=8)
    qblock = 64 * 64 + 2 * 64 * 2 * 2  # uint8-packed weight + bf16 scales and biases
    assert memory.ltx_block_bytes(q, 8) == {"blocks": [qblock] * 8, "dense": block, "linear": 64 * 64}
    on, off = (memory.ltx_phase_peaks(q, "dev", 9, 128, 128, False, 1, dq)["generate"] for dq in (True, False))
    assert on - off == pytest.approx(block)  # one block's linears dequantized to bf16
    assert off == pytest.approx(
        memory.ltx_phase_peaks(q, "dev", 9, 128, 128, False, None, False)["generate"] - 6 * qblock
    )


def test_ic_lora_merge_and_unmerge_streamed_equals_resident(folders):
    """with_ic_loras on a streamed transformer (stage 1 merged through the hook, stage 2 unmerged: the hook
    dropped), over a whole two-stage distilled generation: identical to the resident merge / un-merge. The
    IC-LoRA here is the tiny distilled LoRA file (ltx-core key format)."""
    ic = [(TINY / "ltx-2-tiny-distilled-lora.safetensors", 0.8)]
    runs = {}
    for stream in (None, 1):
        seen = []

        def prepare(comps, seen=seen):
            loading.with_ic_loras(comps, ic)
            bw = comps.transformer.block_weights
            for stage in (comps.stage2_transformer, comps.stage1_transformer):  # unmerge, merge again
                stage()
                seen.append(None if bw is None else bw.hook is not None)

        runs[stream] = _generate(folders["f32"], "distilled", stream, prepare=prepare)
        assert seen == ([None, None] if stream is None else [False, True])
    assert _same(runs[1], runs[None])
    assert _diff(runs[None], _generate(folders["f32"], "distilled")) > 1e-3  # the IC-LoRA moved stage 1


def test_dry_run_without_a_size_uses_the_pipelines(cli_model, tmp_path):
    """No --height / --width: the estimate is for the pipeline's default size (it raised a TypeError before)."""
    from typer.testing import CliRunner

    from mlx_video.cli import app

    argv = ["generate", "--model", str(cli_model), "--prompt", "a cat", "--pipeline", "dev", "--dry-run"]
    r = CliRunner().invoke(app, [*argv, "--memory-budget", "1000", "-o", str(tmp_path / "o.mp4")])
    assert r.exit_code == 0, r.output
    assert "memory estimate for 121x512x768 (dev): peak about" in r.stdout


def test_lora_read_with_each_block_is_not_resident(folders, tmp_path):
    """A LoRA given as a callable (re-reading its file, as the pipelines pass the distilled LoRA and IC-LoRAs) is
    read again with each streamed block and holds no memory after the run; given as a dict it stays resident once
    read. Same outputs either way."""
    import gc

    import mlx.nn as nn

    from mlx_video.io.weights import save_safetensors

    d = folders["f32"]
    model = loading.load_transformer(d, loading.read_config(d))
    g = np.random.default_rng(1)
    lora = {}
    for i, block in enumerate(model.transformer_blocks):
        for name, layer in block.named_modules():
            if isinstance(layer, nn.Linear):
                o, n = layer.weight.shape
                key = f"transformer_blocks.{i}.{name}"
                lora[f"{key}.lora_A"] = mx.array(g.standard_normal((128, n)).astype(np.float32) * 0.01)
                lora[f"{key}.lora_B"] = mx.array(g.standard_normal((o, 128)).astype(np.float32) * 0.01)
    path = tmp_path / "big_lora.safetensors"
    save_safetensors(path, lora)
    size = sum(v.nbytes for v in lora.values())
    del lora, model
    reads, kept, out, active = [], [], {}, {}

    def from_file():
        reads.append(1)
        return loading.load_safetensors(path)

    def prepare(comps, kind):
        merge_loras(comps.transformer, [(from_file() if kind == "dict" else from_file, 1.0)])
        kept.append(comps)  # alive after the run: what it still holds is measured

    for kind in ("dict", "callable"):
        reads.clear()
        out[kind] = _generate(d, "distilled", 1, prepare=lambda c, k=kind: prepare(c, k))
        gc.collect()
        active[kind] = mx.get_active_memory()
        kept.clear()
        gc.collect()
    assert _same(out["dict"], out["callable"])
    print(f"LoRA {size} bytes; active after the run: dict {active['dict']}, callable {active['callable']}")
    assert active["dict"] - active["callable"] > 0.8 * size
    assert len(reads) >= 1 + 11  # callable: at the merge, then once per forward (8 + 3 steps)


def test_estimate_counts_a_streamed_lora_per_kept_block(tmp_path):
    from mlx_video.ltx2 import memory

    d = _fake_folder(tmp_path / "dev")
    (d / "distilled_lora.safetensors").write_bytes(b"\0" * 8000)  # only its size is read
    two = {n: memory.ltx_phase_peaks(d, "dev-two-stage", 9, 128, 128, False, n)["generate"] for n in (None, 1)}
    merge = 3 * 64 * 64 * 4  # the largest block linear in float32, three times
    assert two[None] - two[1] == pytest.approx(6 * 64 * 64 * 2 + 8000 * 6 / 8 - merge)
