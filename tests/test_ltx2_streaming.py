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
