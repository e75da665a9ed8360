"""Two generations in one process, from one load and the same inputs, give identical output, for every
pipeline: nothing a generation does (LoRA merges, caches, offloading, anchors) leaks into the next.
The two-stage LTX pipelines, where the distilled LoRA is merged per stage, are also covered with their
weights checked in tests/test_lora.py."""

import mlx.core as mx
import numpy as np
import pytest

from mlx_video.wan import pipeline as P
from mlx_video.wan.checkpoint import convert_wan
from tests.helpers import ASSETS, IMAGES


def _same(a, b):
    np.testing.assert_array_equal(np.array(a.latents), np.array(b.latents))
    np.testing.assert_array_equal(a.frames, b.frames)


def _ctx(dim):
    return [mx.random.normal((5, dim), key=mx.random.key(0)), mx.random.normal((6, dim), key=mx.random.key(1))]


@pytest.mark.parametrize(
    "folder, task, images",
    [
        ("tiny-Wan2.2-TI2V-5B", "t2v-5B", None),
        ("tiny-Wan2.2-TI2V-5B", "mi2v-5B", ["astronaut.png", "rocket.png@-1:0.5"]),
        ("tiny-Wan2.2-I2V-A14B", "i2v-A14B", ["astronaut.png"]),
    ],
)
def test_wan_generations_repeat(folder, task, images, tmp_path):
    conv = convert_wan(ASSETS / folder, tmp_path / "conv", dtype="float32")
    pipe = P.WanPipeline(conv, dtype=mx.float32, offload=True)
    kw = dict(task=task, size="64*64", frame_num=9, sample_steps=2, seed=7, guide_scale=3.0)
    if images:
        kw["images"] = [str(IMAGES / i) for i in images]
    ctx = _ctx(pipe.cfg["dit"]["text_dim"])
    first = pipe.generate(context=ctx, **kw)
    _same(first, pipe.generate(context=ctx, **kw))


@pytest.mark.parametrize("pipeline", ["distilled", "dev"])
def test_ltx_generations_repeat(pipeline, tmp_path, monkeypatch):
    from mlx_video.ltx2 import loading as L
    from mlx_video.ltx2.pipelines import LTXSettings, generate

    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path))
    model_dir = L.resolve_ltx2_model(str(ASSETS / "tiny-LTX-2"))
    cfg = L.read_config(model_dir)
    pos, neg = L.encode_text(model_dir, cfg, "a cat", "blurry")
    comps = L.load_components(model_dir, cfg, pipeline, (0.0, 1.0), need_encoder=False)
    extra = {"steps": 2, "video_guidance": {"stg_blocks": (1,)}, "audio_guidance": {"stg_blocks": (1,)}}
    s = LTXSettings(pipeline, height=64, width=128, num_frames=9, seed=3, **(extra if pipeline == "dev" else {}))
    runs = [generate(comps, s, pos, neg, decode=True) for _ in range(2)]
    _same(runs[0], runs[1])
    np.testing.assert_array_equal(np.array(runs[0].audio), np.array(runs[1].audio))
